//! The daemon's current view of its config, swapped whole on reload.
//!
//! A request or a dispatch loop takes one snapshot (`load()`) and uses it to
//! the end, so a SIGHUP never mixes two configs in one decision. Besides the
//! config it holds what is derived from it: the push path index and each
//! source's MAC keys, including secrets a provider issued at registration
//! (persisted in the store, not in the config).

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::{Config, SourceConfig};
use crate::preset::Mode;
use crate::store::{Backend, StoreError};
use crate::verify::Key;

pub struct Runtime {
    pub config: Arc<Config>,
    by_path: HashMap<String, usize>,
    keys: Vec<Vec<Key>>,
    /// Fingerprint of the issued secrets the keys were built from.
    issued: [u8; 32],
}

pub type SharedRuntime = Arc<ArcSwap<Runtime>>;

impl Runtime {
    /// `issued` maps a source name to secrets its provider issued (newest last).
    pub fn new(config: Config, issued: &HashMap<String, Vec<Vec<u8>>>) -> Runtime {
        Self::build(Arc::new(config), issued)
    }

    /// The same config with another set of issued secrets.
    fn build(config: Arc<Config>, issued: &HashMap<String, Vec<Vec<u8>>>) -> Runtime {
        let by_path = config
            .sources
            .iter()
            .enumerate()
            .filter(|(_, s)| s.mode == Mode::Push)
            .map(|(i, s)| (s.path.clone(), i))
            .collect();
        let keys = config
            .sources
            .iter()
            .map(|s| {
                let mut k = s.keys.clone();
                for secret in issued.get(&s.name).into_iter().flatten() {
                    match s.scheme.derive_key(secret) {
                        Ok(key) => k.push(key),
                        Err(e) => tracing::warn!(source = %s.name, "ignoring a stored provider secret: {e}"),
                    }
                }
                k
            })
            .collect();
        Runtime {
            config,
            by_path,
            keys,
            issued: fingerprint(issued),
        }
    }

    pub fn shared(self) -> SharedRuntime {
        Arc::new(ArcSwap::from_pointee(self))
    }

    /// The push source listening on `path`.
    pub fn push_source(&self, path: &str) -> Option<(usize, &SourceConfig)> {
        let i = *self.by_path.get(path)?;
        Some((i, &self.config.sources[i]))
    }

    pub fn source_index(&self, name: &str) -> Option<usize> {
        self.config.sources.iter().position(|s| s.name == name)
    }

    /// Were both built from the same provider-issued secrets?
    pub fn same_issued(&self, other: &Runtime) -> bool {
        self.issued == other.issued
    }

    /// Every key a source accepts: configured secrets first, then issued ones.
    pub fn keys(&self, source: usize) -> &[Key] {
        self.keys.get(source).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// A digest of the issued secrets (never shown; only compared).
fn fingerprint(issued: &HashMap<String, Vec<Vec<u8>>>) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut names: Vec<&String> = issued.keys().collect();
    names.sort();
    let mut h = Sha256::new();
    for n in names {
        h.update((n.len() as u64).to_be_bytes());
        h.update(n.as_bytes());
        for s in &issued[n] {
            h.update((s.len() as u64).to_be_bytes());
            h.update(s);
        }
    }
    h.finalize().into()
}

/// Loads secrets providers issued since the runtime was built (by `hookd
/// register` in another process, another replica, or the daemon's own
/// auto-registration) and, if there are new ones, swaps in a runtime that
/// accepts them. Returns the runtime in effect afterwards.
pub async fn refresh_issued(
    shared: &SharedRuntime,
    store: &Backend,
) -> Result<Arc<Runtime>, StoreError> {
    let issued = store.issued_secrets().await?;
    let current = shared.load_full();
    if current.issued == fingerprint(&issued) {
        return Ok(current);
    }
    let fresh = Arc::new(Runtime::build(current.config.clone(), &issued));
    let prev = shared.compare_and_swap(&current, fresh.clone());
    if Arc::ptr_eq(&prev, &current) {
        tracing::info!("loaded new provider-issued secrets");
        Ok(fresh)
    } else {
        // Someone else swapped first (a reload, or another refresh).
        Ok(shared.load_full())
    }
}
