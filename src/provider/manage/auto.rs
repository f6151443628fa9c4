//! `register = "auto"`: `hookd run` registers those sources when it starts
//! and again after each successful reload (SIGHUP).
//!
//! It runs once the listeners are up (so a provider that tests the URL at
//! once reaches us), never blocks readiness, and only logs failures: a
//! provider being down must not keep the daemon from taking events from
//! the others. Secrets the providers issued are loaded into the running
//! daemon's keys before this returns. On a PostgreSQL store each source is
//! registered under its registration lock, so replicas starting together
//! register it once and share the secret it issued.

use super::Manager;
use crate::config::{Config, RegisterMode};
use crate::runtime::{SharedRuntime, refresh_issued};
use crate::store::Backend;

/// Registers every `register = "auto"` source; returns how many succeeded.
pub async fn register_auto(cfg: &Config, store: &Backend, runtime: &SharedRuntime) -> usize {
    let mut ok = 0;
    for src in cfg
        .sources
        .iter()
        .filter(|s| s.register == RegisterMode::Auto)
    {
        let result = match Manager::for_source(cfg, src) {
            Ok(m) => m.register(store).await.map(|r| (m.name(), r)),
            Err(e) => Err(e),
        };
        match result {
            Ok((provider, r)) => {
                ok += 1;
                tracing::info!(
                    source = %src.name,
                    "{} {provider} subscription {}{}",
                    r.action.word(),
                    r.remote.id,
                    if r.secret_saved { "; signing secret saved" } else { "" }
                );
                for n in &r.notes {
                    tracing::warn!(source = %src.name, "{n}");
                }
            }
            Err(e) => tracing::error!(source = %src.name, "registration failed: {e}"),
        }
    }
    if let Err(e) = refresh_issued(runtime, store).await {
        tracing::error!("cannot load the provider secrets just saved: {e}");
    }
    ok
}
