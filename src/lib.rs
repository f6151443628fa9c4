//! hookd — a consumer-side webhook receiver and event-processing daemon.
//!
//! The library holds all of the daemon so integration tests drive the real
//! code; `main.rs` only parses the command line and calls into `cli`.
//! Data flows source → verify → normalize (extract) → store → dispatch.

pub mod dispatch;
pub mod verify;
