//! What the provider verbs (`register`, `unregister`, `subscriptions`,
//! `pause`/`resume`, `recover`, `send-test --remote`) share: choosing the
//! sources, one async runtime, the state store (SQLite in the state
//! directory, or the PostgreSQL of `[store] url`), and reporting one line
//! per source so that one provider failing does not hide the others'
//! results.

use std::future::Future;
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::config::{Config, SourceConfig, StoreConfig};
use crate::provider::manage::{ManageError, Manager};
use crate::store::pg::PgStore;
use crate::store::{Backend, Store, StoreOptions};

/// The sources named, or (none named) every source with a management API
/// that `wanted` accepts.
pub fn pick<'a>(
    cfg: &'a Config,
    names: &[String],
    wanted: impl Fn(&SourceConfig) -> bool,
) -> anyhow::Result<Vec<&'a SourceConfig>> {
    if names.is_empty() {
        let all: Vec<&SourceConfig> = cfg
            .sources
            .iter()
            .filter(|s| s.provider.has_management_api() && wanted(s))
            .collect();
        if all.is_empty() {
            bail!("no source fits: name one, or configure a linkup, linq or linkedapi source");
        }
        return Ok(all);
    }
    names
        .iter()
        .map(|n| {
            cfg.source(n)
                .with_context(|| format!("no [[source]] is named {n:?}"))
        })
        .collect()
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// The daemon's store: SQLite in the state directory (created if this is
/// its first use), or the PostgreSQL database of `[store] url` (migrated
/// if it is new). Needs a runtime: PostgreSQL is reached asynchronously.
pub async fn store(cfg: &Config) -> anyhow::Result<Backend> {
    match &cfg.store {
        StoreConfig::Sqlite => Ok(Backend::Sqlite(
            Store::open(&cfg.daemon.state_dir, StoreOptions::default())
                .map_err(anyhow::Error::msg)?,
        )),
        StoreConfig::Postgres(pg) => {
            let url = std::str::from_utf8(pg.url.expose())
                .map_err(|_| anyhow::anyhow!("store.url: {} is not UTF-8 text", pg.url_ref))?;
            // A command's handle: no ingest batcher, leases or LISTEN.
            let p = PgStore::open_client(url, pg.ca_certs.clone())
                .await
                .map_err(|e| anyhow::anyhow!("store.url: {e}"))?;
            Ok(Backend::Postgres(p))
        }
    }
}

/// Runs `op` with the state store for each of `sources` (see [`each`]) on
/// a runtime of its own.
pub fn each_with_store<'a, F, Fut>(
    cfg: &'a Config,
    sources: &[&'a SourceConfig],
    mut op: F,
) -> anyhow::Result<ExitCode>
where
    F: FnMut(Manager, Backend) -> Fut,
    Fut: Future<Output = Result<Vec<String>, ManageError>>,
{
    let rt = runtime()?;
    rt.block_on(async {
        let store = store(cfg).await?;
        Ok(each(cfg, sources, |m, _| op(m, store.clone())).await)
    })
}

/// Runs `op` for each source in turn; prints what it returns on stdout and
/// each failure as `hookd: source NAME: …` on stderr. Exit 1 if any failed.
pub async fn each<'a, F, Fut>(cfg: &'a Config, sources: &[&'a SourceConfig], mut op: F) -> ExitCode
where
    F: FnMut(Manager, &'a SourceConfig) -> Fut,
    Fut: Future<Output = Result<Vec<String>, ManageError>>,
{
    let mut failed = false;
    for src in sources {
        let out = match Manager::for_source(cfg, src) {
            Ok(m) => op(m, src).await,
            Err(e) => Err(e),
        };
        match out {
            Ok(lines) => {
                for l in lines {
                    println!("{}: {l}", src.name);
                }
            }
            Err(e) => {
                failed = true;
                eprintln!("hookd: source {}: {}", src.name, one_line(&e.to_string()));
            }
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
