//! `linkedapi`: a fixed preset of the hmac scheme over `{timestamp}.{body}`.
//! See the harness in `src/lib.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hookd_fuzz::check_preset(data, "linkedapi"));
