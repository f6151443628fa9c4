//! `standard-webhooks` (and its `svix-*` aliases): `v1,<base64>` lists,
//! `webhook-id`, `webhook-timestamp`. See the harness in `src/lib.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hookd_fuzz::check_preset(data, "standard-webhooks"));
