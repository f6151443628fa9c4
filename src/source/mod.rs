//! Sources: how events get in. Push (HTTP POST to us), SSE (we hold a
//! stream open) and poll (we ask on an interval) all end in the same
//! [`ingest`] path, so verification, normalization, dedup and the
//! ack-after-commit rule are written once.

pub mod ingest;
pub mod pull;
pub mod push;
pub mod transport;
