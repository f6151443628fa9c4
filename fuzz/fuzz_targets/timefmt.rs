//! Time and unit parsing: `timefmt::parse_lenient` (provider timestamps:
//! RFC 3339, `YYYY-MM-DD HH:MM:SS ±HHMM`, zone-less ISO, unix seconds or
//! milliseconds), `timefmt::parse_bound` (CLI `--since`), and the config's
//! `units::parse_duration` / `units::parse_size`.
//!
//! Checked: nothing panics (overflow checks are on with `-a`), and every
//! time `parse_lenient` accepts survives `format_micros` → `parse_lenient`
//! unchanged, so what hookd stores it can also show.
#![no_main]

use hookd::config::units;
use hookd::timefmt;
use libfuzzer_sys::fuzz_target;

const NOW_US: i64 = 1_700_000_000_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(us) = timefmt::parse_lenient(s) {
        let shown = timefmt::format_micros(us);
        assert_eq!(
            timefmt::parse_lenient(&shown),
            Some(us),
            "{s:?} parsed to {us} µs, shown as {shown}"
        );
        let _ = timefmt::format_short(us);
    }
    if let Ok(us) = timefmt::parse_bound(s, NOW_US) {
        let _ = timefmt::format_micros(us);
    }
    let _ = units::parse_duration(s);
    let _ = units::parse_size(s);
});
