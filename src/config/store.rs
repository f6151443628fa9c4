//! The `[store]` table: where hookd keeps its state.
//!
//! Without it, the store is SQLite in `daemon.state_dir`, as always. With
//! `url`, a secret reference (`env:`, `file:`, `credential:`, or a literal
//! with a warning when it carries a password) to a `postgres://` URL, the
//! store is PostgreSQL, shared by every replica with the same URL. The URL
//! is checked here, so a typo is a config error naming file, line and key;
//! whether the database answers is for start-up to find out.
//!
//! `lease` and `pool_size` tune a PostgreSQL store and are refused without
//! `url`. The daemon, every store verb (`events`, `deliveries`, `replay`,
//! `rejected`, `prune`, `tail`, `subscriptions`, …), `hookd store copy` and
//! the web console run on PostgreSQL; an entry point that does not yet
//! refuses it with a message saying so ([`Config::require_sqlite`]): the
//! key is never accepted and then ignored.

use serde::Deserialize;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::Config;
use super::locate::KeyPath;
use super::validate::{VResult, Validator, at, dur};
use crate::secret::{Secret, SecretRef};
use crate::store::pg::connect;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    url: Option<String>,
    lease: Option<String>,
    pool_size: Option<usize>,
    ca_file: Option<String>,
}

/// Which backend holds the state.
#[derive(Clone, Debug, Default)]
pub enum StoreConfig {
    /// SQLite in `daemon.state_dir`.
    #[default]
    Sqlite,
    Postgres(PostgresStore),
}

/// A PostgreSQL store. `Debug` shows where the URL comes from and the
/// database it names, never the URL itself (it may hold a password).
#[derive(Clone)]
pub struct PostgresStore {
    pub url_ref: SecretRef,
    pub url: Secret,
    /// "database D on host:port", for messages.
    pub target: String,
    /// How long a claimed run stays this replica's without renewal; after
    /// a replica dies, its runs wait this long before another takes them.
    pub lease: Duration,
    /// Connections this replica opens at most.
    pub pool_size: usize,
    /// A private CA trusted besides the system's roots, and its certificates.
    pub ca_file: Option<PathBuf>,
    pub ca_certs: Arc<Vec<CertificateDer<'static>>>,
}

/// `store.lease` by default.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// `store.pool_size` by default.
pub const DEFAULT_POOL_SIZE: usize = 16;

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgresStore({}, {})", self.url_ref, self.target)
    }
}

impl Validator {
    pub(super) fn store(&mut self, r: Option<RawStore>, p: &KeyPath) -> VResult<StoreConfig> {
        let Some(r) = r else {
            return Ok(StoreConfig::Sqlite);
        };
        let Some(url) = r.url else {
            if r.lease.is_some() || r.pool_size.is_some() || r.ca_file.is_some() {
                return at(
                    &p.key("url"),
                    Err("lease, pool_size and ca_file are for a PostgreSQL store: set url too, or remove them".into()),
                );
            }
            return Ok(StoreConfig::Sqlite);
        };
        let lease = dur(&p.key("lease"), r.lease.as_deref(), DEFAULT_LEASE)?;
        if lease < Duration::from_secs(1) {
            return at(&p.key("lease"), Err("must be at least 1s".into()));
        }
        let pool_size = r.pool_size.unwrap_or(DEFAULT_POOL_SIZE);
        if !(2..=1000).contains(&pool_size) {
            return at(
                &p.key("pool_size"),
                Err("must be between 2 and 1000".into()),
            );
        }
        let ca_file = r
            .ca_file
            .map(|f| super::validate::clean_path(&self.base.join(f)));
        let ca_certs = match &ca_file {
            Some(f) => at(&p.key("ca_file"), read_ca_file(f))?,
            None => Vec::new(),
        };
        let kp = p.key("url");
        let url_ref = SecretRef::parse(&url);
        let value = at(&kp, url_ref.resolve(&self.base))?;
        let text = at(
            &kp,
            std::str::from_utf8(value.expose()).map_err(|_| format!("{url_ref} is not UTF-8 text")),
        )?;
        let cfg = at(&kp, connect::parse_url(text))?;
        if url_ref.is_literal() && cfg.get_password().is_some() {
            self.warnings.push(format!(
                "{kp}: the URL's password is written literally in the config; prefer env:NAME, file:PATH or credential:NAME"
            ));
        }
        Ok(StoreConfig::Postgres(PostgresStore {
            target: connect::describe_target(&cfg),
            url_ref,
            url: value,
            lease,
            pool_size,
            ca_file,
            ca_certs: Arc::new(ca_certs),
        }))
    }
}

/// The PEM certificates of a private CA file.
fn read_ca_file(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

impl StoreConfig {
    /// True when both name the same store (for a reload, which cannot move it).
    pub fn same_as(&self, other: &StoreConfig) -> bool {
        match (self, other) {
            (StoreConfig::Sqlite, StoreConfig::Sqlite) => true,
            (StoreConfig::Postgres(a), StoreConfig::Postgres(b)) => {
                a.url.expose() == b.url.expose()
            }
            _ => false,
        }
    }
}

impl Config {
    /// Fails with a message an operator can act on when `[store]` names
    /// PostgreSQL, which `what` (a verb such as `hookd run`) cannot use yet.
    pub fn require_sqlite(&self, what: &str) -> Result<(), String> {
        match &self.store {
            StoreConfig::Sqlite => Ok(()),
            StoreConfig::Postgres(pg) => Err(format!(
                "{}: store.url: {what} does not run on a PostgreSQL store yet ({}); remove [store] to use SQLite in daemon.state_dir",
                self.file.display(),
                pg.target
            )),
        }
    }
}
