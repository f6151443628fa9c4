//! `linq`: Standard Webhooks, then the legacy `X-Webhook-Signature`
//! variants (timestamp + body, body, and with `@canonical` the canonical
//! JSON body). See the harness in `src/lib.rs`.
#![no_main]

use hookd_fuzz::{Case, Covers, build, check_scheme, sig_config};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let case = Case::parse(data);
    let mut cfg = sig_config("linq");
    cfg.canonical_json = Some(case.flag("canonical"));
    let scheme = build(&cfg).expect("valid scheme");
    // What `sign` produces always carries a timestamp; the body-only legacy
    // variant cannot match it, so a stale clock is refused too.
    check_scheme(&scheme, &case, Covers::BODY_AND_TIME);
});
