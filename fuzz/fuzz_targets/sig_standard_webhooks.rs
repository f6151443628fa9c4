//! `standard-webhooks` (and its `svix-*` aliases): `v1,<base64>` lists,
//! `webhook-id`, `webhook-timestamp`. See the harness in `src/lib.rs`.
#![no_main]

use hookd_fuzz::{Case, Covers, build, check_scheme, sig_config};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let case = Case::parse(data);
    let scheme = build(&sig_config("standard-webhooks")).expect("valid scheme");
    let covers = Covers {
        body: true,
        timestamp: true,
    };
    check_scheme(&scheme, &case, covers);
});
