//! `linkedapi`: a fixed preset of the hmac scheme over `{timestamp}.{body}`.
//! See the harness in `src/lib.rs`.
#![no_main]

use hookd_fuzz::{Case, Covers, build, check_scheme, sig_config};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let case = Case::parse(data);
    let scheme = build(&sig_config("linkedapi")).expect("valid scheme");
    let covers = Covers {
        body: true,
        timestamp: true,
    };
    check_scheme(&scheme, &case, covers);
});
