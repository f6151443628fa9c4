//! `stripe`: `t=<unix>,v1=<hex>[,v1=…]`, optionally under a custom header
//! (`@header Name`). See the harness in `src/lib.rs`.
#![no_main]

use hookd_fuzz::{Case, Covers, build, check_scheme, sig_config};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let case = Case::parse(data);
    let mut cfg = sig_config("stripe");
    cfg.header = case.text("header");
    let Some(scheme) = build(&cfg) else { return };
    check_scheme(&scheme, &case, Covers::BODY_AND_TIME);
});
