//! `token`: the secret itself after an optional prefix (`@header`,
//! `@prefix`). It authenticates neither body nor time, so only the
//! never-panic and round-trip checks apply. See the harness in `src/lib.rs`.
#![no_main]

use hookd_fuzz::{Case, Covers, build, check_scheme, sig_config};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let case = Case::parse(data);
    let mut cfg = sig_config("token");
    cfg.header = Some(
        case.text("header")
            .unwrap_or_else(|| "Authorization".into()),
    );
    cfg.prefix = case.text("prefix");
    let Some(scheme) = build(&cfg) else { return };
    check_scheme(&scheme, &case, Covers::NEITHER);
});
