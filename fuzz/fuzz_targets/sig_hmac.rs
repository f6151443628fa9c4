//! `hmac`: every option comes from the input (`@header`, `@prefix`,
//! `@encoding`, `@algo`, `@signed`, `@timestamp_header`, `@id_header`), so
//! the `signed` template parser and the config checks are fuzzed too.
//! See the harness in `src/lib.rs`.
#![no_main]

use hookd::verify::{Scheme, Segment};
use hookd_fuzz::{Case, Covers, build, check_scheme, sig_config};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let case = Case::parse(data);
    let mut cfg = sig_config("hmac");
    cfg.header = case.text("header");
    cfg.prefix = case.text("prefix");
    cfg.encoding = case.text("encoding");
    cfg.algo = case.text("algo");
    cfg.signed = case.text("signed");
    cfg.timestamp_header = case.text("timestamp_header");
    cfg.id_header = case.text("id_header");
    let Some(scheme) = build(&cfg) else { return };
    let Scheme::Hmac(h) = &scheme else {
        panic!("scheme hmac built {scheme:?}")
    };
    let covers = Covers {
        body: true,
        timestamp: h.signed.uses(&Segment::Timestamp),
    };
    check_scheme(&scheme, &case, covers);
});
