//! Provider registration on a PostgreSQL store: the saved registration and
//! the secret LinkUp issued live in the shared database, several replicas
//! starting together register a source once, and the provider verbs of the
//! real binary (`register`, `subscriptions`, `send-test`, `unregister`)
//! work with `[store] url`. Each test gets a database of the throwaway
//! cluster (tests/pg_support) and the provider simulator (tests/simulator),
//! or is skipped with one line.

mod pg_support;
mod simulator;
mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::routing::post;
use hookd::provider::manage::auto::register_auto;
use hookd::runtime::Runtime;
use hookd::store::Backend;
use hookd::store::pg::{PgOptions, PgStore};
use http::Method;
use serde_json::Value;
use simulator::{LINKUP_ACCOUNT, LINKUP_KEY, Simulator};
use tokio::sync::watch;

const PUBLIC: &str = "https://hooks.example.com";
const LONG: Duration = Duration::from_secs(20);
const URL_VAR: &str = "HOOKD_TEST_STORE_URL";

/// A LinkUp push source whose config has no secret: LinkUp issues one.
fn config(dir: &Path, sim: &Simulator, store_url: &str) -> PathBuf {
    let text = format!(
        "{}[store]\nurl = \"{store_url}\"\n\n[[source]]\nname = \"lu\"\nprovider = \"linkup\"\naccount_id = \"{LINKUP_ACCOUNT}\"\napi_key = \"{LINKUP_KEY}\"\napi_base = \"{}\"\nevents = [\"message_received\"]\nregister = \"auto\"\n",
        support::base_config(dir).replace(
            "[server]\n",
            &format!("[server]\npublic_url = \"{PUBLIC}\"\n")
        ),
        sim.base
    );
    let p = dir.join("receiver.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Holds LinkUp's create calls until opened; counts them as they arrive.
#[derive(Clone)]
struct CreateGate {
    arrived: Arc<watch::Sender<usize>>,
    open: Arc<watch::Sender<bool>>,
}

impl CreateGate {
    fn new() -> CreateGate {
        CreateGate {
            arrived: Arc::new(watch::channel(0).0),
            open: Arc::new(watch::channel(false).0),
        }
    }

    /// A simulator whose `POST /v2/webhooks` waits for [`CreateGate::open`],
    /// and which answers 200 to anything posted under `/capture/`.
    fn simulator(&self) -> Simulator {
        let gate = self.clone();
        Simulator::start_with(move |r| {
            r.route("/capture/{*rest}", post(|| async { "ok" }))
                .layer(middleware::from_fn(move |req: Request, next: Next| {
                    let gate = gate.clone();
                    async move {
                        if req.method() == Method::POST && req.uri().path() == "/v2/webhooks" {
                            gate.arrived.send_modify(|n| *n += 1);
                            let mut open = gate.open.subscribe();
                            let _ = open.wait_for(|o| *o).await;
                        }
                        next.run(req).await
                    }
                }))
        })
    }

    async fn wait_arrived(&self, n: usize) {
        let mut rx = self.arrived.subscribe();
        tokio::time::timeout(LONG, rx.wait_for(|got| *got >= n))
            .await
            .expect("no create call reached the provider")
            .unwrap();
    }
}

/// Waits until a session on `url`'s database waits for an advisory lock
/// it cannot have (tests on other databases of the cluster do not count).
async fn wait_for_lock_waiter(url: &str) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let deadline = Instant::now() + LONG;
    loop {
        let waiting: i64 = client
            .query_one(
                "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
                   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the second replica never waited for the registration lock (it went to the provider instead)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two replicas on one database start together with `register = "auto"`:
/// the provider sees one create, the second replica waits for the first
/// and reuses its webhook, and both verify with the one secret LinkUp
/// issued (no rotation, which would invalidate the first one's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_register_once_and_share_the_secret() {
    let Some(db) = pg_support::database() else {
        return;
    };
    let gate = CreateGate::new();
    let sim = gate.simulator();
    let dir = tempfile::tempdir().unwrap();
    let cfg = hookd::config::load(&config(dir.path(), &sim, &db.url)).unwrap();
    let open = || PgStore::open(&db.url, PgOptions::default());
    let (a, b) = tokio::join!(open(), open());
    let (a, b) = (Backend::Postgres(a.unwrap()), Backend::Postgres(b.unwrap()));
    let runtime = || Runtime::new(cfg.clone(), &HashMap::new()).shared();
    let (ra, rb) = (runtime(), runtime());

    let control = async {
        // One replica is inside its create; the other must be waiting
        // for the lock, not talking to LinkUp.
        gate.wait_arrived(1).await;
        wait_for_lock_waiter(&db.url).await;
        gate.open.send_replace(true);
    };
    let (na, nb, ()) = tokio::join!(
        register_auto(&cfg, &a, &ra),
        register_auto(&cfg, &b, &rb),
        control
    );
    assert_eq!(
        (na, nb),
        (1, 1),
        "both replicas count the source registered"
    );

    assert_eq!(sim.calls(Method::POST, "/v2/webhooks").len(), 1);
    assert!(sim.requests("/rotate-secret").is_empty());
    let hooks = sim.linkup_webhooks();
    assert_eq!(hooks.len(), 1);
    let issued = hooks[0].secret.clone().unwrap();
    for store in [&a, &b] {
        let r = store.registration("lu").await.unwrap().unwrap();
        assert_eq!(r.remote_id.as_deref(), Some(hooks[0].id.as_str()));
        assert_eq!(r.secret.as_deref(), Some(issued.as_bytes()));
    }
    let (ra, rb) = (ra.load(), rb.load());
    let idx = ra.source_index("lu").unwrap();
    assert_eq!(
        ra.keys(idx).len(),
        1,
        "replica a verifies with the issued secret"
    );
    assert_eq!(
        rb.keys(idx).len(),
        1,
        "replica b verifies with the issued secret"
    );
    assert!(ra.same_issued(&rb));
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn hookd(cfg: &Path, store_url: &str, args: &[&str]) -> Out {
    let out = assert_cmd::Command::new(support::bin())
        .arg("-c")
        .arg(cfg)
        .args(args)
        .env(URL_VAR, store_url)
        .env("RUST_BACKTRACE", "0")
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ok(cfg: &Path, store_url: &str, args: &[&str]) -> String {
    let o = hookd(cfg, store_url, args);
    assert_eq!(o.code, 0, "hookd {args:?}: {}{}", o.stdout, o.stderr);
    o.stdout
}

/// The provider verbs of the binary on `[store] url = "env:…"`, with no
/// daemon running: the secret LinkUp issued is saved in PostgreSQL (not in
/// a state directory), `subscriptions` and a second `register` find the
/// saved id, `send-test` signs with the saved secret, and `unregister`
/// forgets it.
#[test]
fn the_provider_verbs_run_on_postgresql() {
    let Some(db) = pg_support::database() else {
        return;
    };
    let gate = CreateGate::new();
    gate.open.send_replace(true);
    let sim = gate.simulator();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &sim, &format!("env:{URL_VAR}"));
    let url = db.url.as_str();

    let first = ok(&cfg, url, &["register", "lu"]);
    assert!(
        first.starts_with("lu: created LinkUp subscription "),
        "{first}"
    );
    assert!(
        first.contains("signing secret saved in the PostgreSQL store"),
        "{first}"
    );
    let hook = sim.linkup_webhooks().pop().unwrap();
    let secret = hook.secret.clone().unwrap();
    assert!(
        !dir.path().join("state/hookd.db").exists(),
        "nothing may be written to a SQLite store"
    );

    let listed = ok(&cfg, url, &["subscriptions", "lu", "--json"]);
    let rows: Vec<Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{listed}");
    assert_eq!(rows[0]["status"], "ours", "{listed}");
    assert_eq!(rows[0]["registered_id"], hook.id.as_str(), "{listed}");

    let second = ok(&cfg, url, &["register", "lu"]);
    assert!(
        second.starts_with("lu: reused LinkUp subscription "),
        "{second}"
    );
    assert_eq!(sim.calls(Method::POST, "/v2/webhooks").len(), 1);

    // send-test signs with the secret saved in PostgreSQL; the simulator
    // stands in for the daemon and records what arrives.
    let target = format!("{}/capture/lu", sim.base);
    let sent = hookd(&cfg, url, &["send-test", "lu", "--url", &target]);
    assert!(
        sent.stdout.contains(&format!("POST {target}")),
        "{}{}",
        sent.stdout,
        sent.stderr
    );
    let got = sim.requests("/capture/lu").pop().expect("send-test posted");
    let ts = got.header("x-linkup-timestamp").unwrap().to_string();
    let mut msg = format!("{ts}.").into_bytes();
    msg.extend_from_slice(&got.body);
    assert_eq!(
        got.header("x-linkup-signature"),
        Some(format!("v1={}", simulator::hmac_hex(secret.as_bytes(), &msg)).as_str()),
        "signed with the issued secret"
    );

    let gone = ok(&cfg, url, &["unregister", "lu"]);
    assert!(
        gone.contains(&format!("removed LinkUp subscription {}", hook.id)),
        "{gone}"
    );
    assert!(sim.linkup_webhooks().is_empty());
    let listed = ok(&cfg, url, &["subscriptions", "lu", "--json"]);
    let row: Value = serde_json::from_str(listed.lines().next().unwrap()).unwrap();
    assert_eq!(row["status"], "missing", "{listed}");
    assert_eq!(
        row["registered_id"],
        Value::Null,
        "the saved id is forgotten"
    );
}

/// A store URL that does not answer is one line naming the database, and
/// never the password.
#[test]
fn an_unreachable_store_is_one_line_without_the_password() {
    let sim = Simulator::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &sim, &format!("env:{URL_VAR}"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://hookd:hunter2@127.0.0.1:{port}/hooks?sslmode=disable");
    let o = hookd(&cfg, &url, &["register", "lu"]);
    assert_eq!(o.code, 1, "{}{}", o.stdout, o.stderr);
    assert_eq!(o.stderr.lines().count(), 1, "{}", o.stderr);
    assert!(
        o.stderr.contains("database hooks on 127.0.0.1"),
        "{}",
        o.stderr
    );
    assert!(!o.stderr.contains("hunter2"), "{}", o.stderr);
    assert!(sim.requests("/v2/").is_empty());
}

/// The registration lock is per source, and a holder dropped without
/// being released (a registration cancelled at shutdown or reload) ends it
/// with its connection instead of returning a locked session to the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_registration_lock_ends_with_its_connection() {
    let Some(db) = pg_support::database() else {
        return;
    };
    let open = || {
        PgStore::open(
            &db.url,
            PgOptions {
                pool_size: 2,
                ..PgOptions::default()
            },
        )
    };
    let (a, b) = tokio::join!(open(), open());
    let (a, b) = (Backend::Postgres(a.unwrap()), Backend::Postgres(b.unwrap()));
    let held = a.lock_registration("lu").await.unwrap();
    let other = tokio::time::timeout(LONG, b.lock_registration("lq"))
        .await
        .expect("another source's lock must not wait")
        .unwrap();
    other.release().await.unwrap();

    let waiter = tokio::spawn(async move { b.lock_registration("lu").await.map(drop) });
    wait_for_lock_waiter(&db.url).await;
    assert!(!waiter.is_finished(), "the lock is held by a");
    drop(held);
    tokio::time::timeout(LONG, waiter)
        .await
        .expect("the lock outlived its dropped holder")
        .unwrap()
        .unwrap();
    // a's pool still works, on a fresh connection.
    a.lock_registration("lu")
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
}
