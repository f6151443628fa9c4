//! Dispatch: running the configured handler for a stored event.
//!
//! `exec` runs one process per attempt; `stream` keeps one long-lived
//! process per handler and talks NDJSON with it. Both start, stop and read
//! their processes through `child`, so process-group handling and output
//! capping behave the same for both kinds. `http` sends one request per
//! attempt. The `queue` claims, retries and records for all three.
//!
//! Imports form a tree: `exec` (async wrapper) → `supervise` (the blocking
//! run) → `attempt` (what a run is and how it ended) → `child`.

pub mod attempt;
pub mod child;
pub mod envelope;
pub mod exec;
pub mod http;
pub mod queue;
pub mod started;
pub mod stream;
pub mod supervise;

/// Retry timing moved to [`crate::retry`] (the store's delivery rules use it
/// too); the old path stays.
pub use crate::retry;
