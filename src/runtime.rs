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
use crate::provider::Mode;
use crate::verify::Key;

pub struct Runtime {
    pub config: Arc<Config>,
    by_path: HashMap<String, usize>,
    keys: Vec<Vec<Key>>,
}

pub type SharedRuntime = Arc<ArcSwap<Runtime>>;

impl Runtime {
    /// `issued` maps a source name to secrets its provider issued (newest last).
    pub fn new(config: Config, issued: &HashMap<String, Vec<Vec<u8>>>) -> Runtime {
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
            config: Arc::new(config),
            by_path,
            keys,
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

    /// Every key a source accepts: configured secrets first, then issued ones.
    pub fn keys(&self, source: usize) -> &[Key] {
        self.keys.get(source).map(Vec::as_slice).unwrap_or(&[])
    }
}
