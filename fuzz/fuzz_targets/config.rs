//! Config loading (`hookd::config::parse`) from arbitrary TOML text.
//!
//! Checked: it never panics, and every error names a key and a line inside
//! the text, as `hookd check` promises ("file:line: key: message").
//!
//! Inputs mentioning `file:` or `credential:` are skipped: those secret
//! references read the filesystem (a fuzzer that finds `file:/dev/stdin`
//! would only be fuzzing the machine). `env:` references stay in; they
//! read only this process's environment.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.contains("file:") || text.contains("credential:") {
        return;
    }
    let file = Path::new("/nonexistent/hookd-fuzz/receiver.toml");
    match hookd::config::parse(text, file) {
        Ok(cfg) => {
            assert!(!cfg.daemon.state_dir.as_os_str().is_empty());
            for s in &cfg.sources {
                assert_eq!(s.keys.len(), s.secrets.len());
            }
        }
        Err(e) => {
            assert_eq!(e.file, file);
            assert!(!e.key.is_empty(), "error without a key: {e:?}");
            assert!(!e.message.is_empty(), "error without a message: {e:?}");
            let line = e
                .line
                .unwrap_or_else(|| panic!("error without a line: {e:?}"));
            let lines = text.split('\n').count();
            assert!(
                (1..=lines).contains(&line),
                "line {line} outside the {lines}-line text: {e:?}"
            );
            let shown = e.to_string();
            assert!(shown.contains(&format!(":{line}: ")), "{shown}");
        }
    }
});
