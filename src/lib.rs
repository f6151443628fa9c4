//! hookd — a consumer-side webhook receiver and event-processing daemon.
//!
//! The library holds all of the daemon so integration tests drive the real
//! code; `main.rs` only parses the command line and calls into `cli`.
//! Data flows source → verify → normalize (extract) → store → dispatch.

pub mod admin;
pub mod cli;
pub mod config;
pub mod console;
pub mod daemon;
pub mod dispatch;
pub mod extract;
pub mod metrics;
pub mod preset;
pub mod provider;
pub mod retry;
pub mod runtime;
pub mod secret;
pub mod server;
pub mod source;
pub mod store;
pub mod timefmt;
pub mod verify;
