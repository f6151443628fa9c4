//! A PostgreSQL handle for one-shot commands (the CLI verbs): connected and
//! migrated like a replica's, but with none of a replica's background work
//! (no ingest batcher, no lease renewal, no LISTEN connection). It claims
//! nothing, so it holds no lease; it reads, replays, prunes and saves
//! provider registrations.

use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::{Inner, PgOptions, PgStore, connect, pool_error, replica_name, schema};

/// Connections a command uses: one at a time, one spare (`register` holds
/// a source's registration lock on one while it reads and saves on the
/// other).
const CLIENT_POOL: usize = 2;

impl PgStore {
    /// Connects to `url` and migrates the schema (once across everything
    /// sharing the database), without starting a replica's background
    /// tasks. Events cannot be ingested through this handle.
    pub async fn open_client(
        url: &str,
        ca_certs: Arc<Vec<rustls::pki_types::CertificateDer<'static>>>,
    ) -> Result<PgStore, String> {
        let opts = PgOptions {
            pool_size: CLIENT_POOL,
            ca_certs,
            ..PgOptions::default()
        };
        let (pool, cfg) = pool_migrated(url, opts.pool_size, &opts.ca_certs).await?;
        // No batcher reads this channel: an ingest through it fails as closed.
        let (ingest, _) = mpsc::channel(1);
        Ok(PgStore {
            inner: Arc::new(Inner {
                pool,
                cfg,
                owner: super::owner::Owner::default(),
                name: replica_name(),
                opts,
                ingest,
                work: Arc::new(Notify::new()),
                stop: CancellationToken::new(),
            }),
        })
    }
}

/// A pool of `size` on `url`, with the schema brought up to date, and the
/// parsed URL.
pub(super) async fn pool_migrated(
    url: &str,
    size: usize,
    ca: &connect::ExtraRoots,
) -> Result<(Pool, tokio_postgres::Config), String> {
    let cfg = connect::parse_url(url)?;
    let target = connect::describe_target(&cfg);
    let pool = connect::pool(&cfg, size, ca)?;
    let mut client = pool
        .get()
        .await
        .map_err(|e| format!("cannot connect to {target}: {}", pool_error(&e)))?;
    let found = schema::migrate(&mut client)
        .await
        .map_err(|e| format!("{target}: {e}"))?;
    if found < schema::VERSION {
        tracing::info!(
            "migrated {target} from schema version {found} to {}",
            schema::VERSION
        );
    }
    Ok((pool, cfg))
}
