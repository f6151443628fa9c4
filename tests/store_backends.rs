//! The store interface, run against both backends: SQLite in a temporary
//! state directory and PostgreSQL on a throwaway cluster. Each test gets
//! two handles, `a` and `b`: for PostgreSQL two replicas (their own pools,
//! leases and names) on one database, for SQLite two clones of one store.

mod pg_support;

use std::collections::HashSet;

use hookd::store::deliveries::{AttemptRecord, DeliveryFilter, FAILED, Next, PENDING};
use hookd::store::events::{Ingested, NewEvent};
use hookd::store::pg::{PgOptions, PgStore};
use hookd::store::rejected::{BODY_KEEP, NewRejection};
use hookd::store::subscriptions::Registration;
use hookd::store::{Backend, Store, StoreOptions};

/// Declares each test once per backend.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let s = super::Store::open(dir.path(), super::StoreOptions::default()).unwrap();
                    super::$name(super::Backend::Sqlite(s.clone()), super::Backend::Sqlite(s)).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = super::pg_support::database() else { return };
                    let open = || super::PgStore::open(&db.url, super::PgOptions::default());
                    let (a, b) = tokio::join!(open(), open());
                    super::$name(super::Backend::Postgres(a.unwrap()), super::Backend::Postgres(b.unwrap())).await;
                }
            )*
        }
    };
}

on_both_backends!(
    dedups_by_source_and_event_id,
    a_batch_keeps_input_order_and_dedups,
    one_event_pushed_to_both_at_once_is_stored_once,
    claim_retry_and_die,
    unclaimed_deliveries_are_as_they_were,
    two_claimers_run_each_delivery_once,
    refused_requests_keep_the_newest_truncated,
    prune_keeps_unfinished_work_and_frees_the_key,
    a_saved_registration_keeps_its_issued_secret,
);

fn event(source: &str, id: &str, handlers: &[&str]) -> NewEvent {
    NewEvent {
        source: source.into(),
        provider: "generic".into(),
        event_id: id.into(),
        id_synthetic: false,
        event_type: "message.received".into(),
        type_raw: "message.received".into(),
        occurred_at: None,
        received_at: 1_000,
        headers_json: r#"[["content-type","application/json"]]"#.into(),
        body: bytes::Bytes::from_static(b"{}"),
        verified: "hmac".into(),
        handlers: handlers.iter().map(|s| s.to_string()).collect(),
    }
}

fn fail(attempt: u32) -> AttemptRecord {
    AttemptRecord {
        attempt,
        outcome: "exit".into(),
        exit_code: Some(1),
        summary: "exit 1".into(),
        ..Default::default()
    }
}

fn ok(attempt: u32) -> AttemptRecord {
    AttemptRecord {
        attempt,
        outcome: "ok".into(),
        ..Default::default()
    }
}

async fn deliveries_of(s: &Backend, handler: &str) -> Vec<(String, u32)> {
    let f = DeliveryFilter {
        handler: Some(handler.into()),
        ..Default::default()
    };
    let mut rows = s.list_deliveries(f).await.unwrap();
    rows.sort_by_key(|r| r.id);
    rows.into_iter().map(|r| (r.status, r.attempts)).collect()
}

async fn dedups_by_source_and_event_id(a: Backend, _: Backend) {
    let first = a.insert_event(event("s", "e1", &["h"])).await.unwrap();
    let Ingested::Accepted { id, deliveries: 1 } = first else {
        panic!("{first:?}")
    };
    let again = a.insert_event(event("s", "e1", &["h"])).await.unwrap();
    assert_eq!(again, Ingested::Duplicate { id });
    let other = a.insert_event(event("other", "e1", &[])).await.unwrap();
    assert!(
        matches!(other, Ingested::Accepted { id: o, .. } if o != id),
        "{other:?}"
    );
    assert_eq!(
        deliveries_of(&a, "h").await,
        [(PENDING.to_string(), 0)],
        "a duplicate creates no delivery"
    );
}

async fn a_batch_keeps_input_order_and_dedups(a: Backend, _: Backend) {
    let old = a.insert_event(event("s", "old", &["h"])).await.unwrap();
    let Ingested::Accepted { id: old, .. } = old else {
        panic!("{old:?}")
    };
    let got = a
        .insert_events(vec![
            event("s", "zz", &["h"]),
            event("s", "old", &["h"]),
            event("s", "aa", &["h"]),
            event("s", "zz", &["h"]),
        ])
        .await
        .unwrap();
    let Ingested::Accepted { id: zz, .. } = got[0] else {
        panic!("{got:?}")
    };
    assert_eq!(got[1], Ingested::Duplicate { id: old });
    assert!(matches!(got[2], Ingested::Accepted { .. }), "{got:?}");
    assert_eq!(
        got[3],
        Ingested::Duplicate { id: zz },
        "a key twice in one batch"
    );
    assert_eq!(deliveries_of(&a, "h").await.len(), 3);
}

async fn one_event_pushed_to_both_at_once_is_stored_once(a: Backend, b: Backend) {
    let pushes = (0..20).map(|i| {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tokio::spawn(async move { s.insert_event(event("s", "same", &["h"])).await })
    });
    let mut accepted = Vec::new();
    let mut duplicate = Vec::new();
    for p in pushes.collect::<Vec<_>>() {
        match p.await.unwrap().unwrap() {
            Ingested::Accepted { id, .. } => accepted.push(id),
            Ingested::Duplicate { id } => duplicate.push(id),
        }
    }
    assert_eq!(accepted.len(), 1, "stored once: {accepted:?}");
    assert_eq!(duplicate.len(), 19);
    assert!(duplicate.iter().all(|&d| d == accepted[0]));
    assert_eq!(deliveries_of(&a, "h").await.len(), 1, "one delivery");
}

async fn claim_retry_and_die(a: Backend, _: Backend) {
    let Ingested::Accepted { id: ev, .. } = a
        .insert_event(event("s", "e1", &["h", "other"]))
        .await
        .unwrap()
    else {
        panic!()
    };
    let got = a.claim("h", 2_000, 10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].attempt, got[0].event, got[0].event_id.as_str()),
        (1, ev, "e1")
    );
    assert!(
        a.claim("h", 2_000, 10).await.unwrap().is_empty(),
        "running is not claimed twice"
    );
    assert!(
        a.finish(got[0].delivery, fail(1), Next::RetryAt(5_000), 2_100)
            .await
            .unwrap()
    );
    assert!(
        a.claim("h", 4_999, 10).await.unwrap().is_empty(),
        "not due yet"
    );
    assert_eq!(
        a.next_due().await.unwrap(),
        Some(1_000),
        "the other handler's is due"
    );
    let again = a.claim("h", 5_000, 10).await.unwrap();
    assert_eq!(again[0].attempt, 2);
    // The second attempt is an http handler's: its answer's status is kept.
    let answered = AttemptRecord {
        outcome: "http".into(),
        http_status: Some(503),
        ..fail(2)
    };
    assert!(
        a.finish(again[0].delivery, answered, Next::Dead, 5_100)
            .await
            .unwrap()
    );
    assert_eq!(deliveries_of(&a, "h").await, [("dead".to_string(), 2)]);
    let attempts = a.attempts_for_event(ev).await.unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!((attempts[1].attempt, attempts[1].exit_code), (2, Some(1)));
    assert_eq!(
        (attempts[0].http_status, attempts[1].http_status),
        (None, Some(503))
    );
    assert_eq!(
        a.queue_depth(6_000).await.unwrap().0,
        1,
        "only `other` is queued"
    );
}

async fn unclaimed_deliveries_are_as_they_were(a: Backend, _: Backend) {
    a.insert_event(event("s", "e1", &["h"])).await.unwrap();
    let first = a.claim("h", 2_000, 1).await.unwrap();
    a.unclaim(vec![first[0].delivery]).await.unwrap();
    assert_eq!(deliveries_of(&a, "h").await, [(PENDING.to_string(), 0)]);
    let got = a.claim("h", 2_000, 1).await.unwrap();
    assert_eq!(got[0].attempt, 1, "the next claim is still attempt 1");
    a.finish(got[0].delivery, fail(1), Next::RetryAt(3_000), 2_100)
        .await
        .unwrap();
    let again = a.claim("h", 3_000, 1).await.unwrap();
    a.unclaim(vec![again[0].delivery]).await.unwrap();
    assert_eq!(
        deliveries_of(&a, "h").await,
        [(FAILED.to_string(), 1)],
        "a retry goes back to failed"
    );
}

async fn two_claimers_run_each_delivery_once(a: Backend, b: Backend) {
    let events: Vec<NewEvent> = (0..60)
        .map(|i| event("s", &format!("e{i}"), &["h"]))
        .collect();
    a.insert_events(events).await.unwrap();
    let drain = |s: Backend| {
        tokio::spawn(async move {
            let mut ran = Vec::new();
            loop {
                let got = s.claim("h", 2_000, 3).await.unwrap();
                if got.is_empty() {
                    return ran;
                }
                for c in got {
                    assert!(
                        s.finish(c.delivery, ok(c.attempt), Next::Succeeded, 2_001)
                            .await
                            .unwrap()
                    );
                    ran.push(c.delivery);
                }
            }
        })
    };
    let (ra, rb) = (drain(a.clone()), drain(b));
    let (ra, rb) = (ra.await.unwrap(), rb.await.unwrap());
    let all: HashSet<i64> = ra.iter().chain(&rb).copied().collect();
    assert_eq!(
        ra.len() + rb.len(),
        60,
        "each ran once: {} + {}",
        ra.len(),
        rb.len()
    );
    assert_eq!(all.len(), 60);
    let rows = deliveries_of(&a, "h").await;
    assert!(
        rows.iter().all(|(s, n)| s == "succeeded" && *n == 1),
        "{rows:?}"
    );
}

async fn refused_requests_keep_the_newest_truncated(a: Backend, _: Backend) {
    for i in 0..10 {
        let r = NewRejection {
            source: Some(if i % 2 == 0 { "s" } else { "t" }.into()),
            path: "/hooks/s".into(),
            status: 401,
            reason: format!("bad {i}"),
            code: "bad_signature".into(),
            received_at: i,
            remote: None,
            headers: vec![],
            body: vec![b'x'; 5000],
        };
        a.insert_rejected(r, 4).await.unwrap();
    }
    let rows = a.list_rejected(None, 100).await.unwrap();
    let reasons: Vec<&str> = rows.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(reasons, ["bad 9", "bad 8", "bad 7", "bad 6"]);
    assert_eq!((rows[0].status, rows[0].body_len), (401, 5000));
    assert!(rows[0].body_preview.len() < BODY_KEEP);
    let of_s = a.list_rejected(Some("s".into()), 1).await.unwrap();
    assert_eq!(of_s[0].reason, "bad 8");
}

async fn prune_keeps_unfinished_work_and_frees_the_key(a: Backend, _: Backend) {
    a.insert_event(event("s", "done", &[])).await.unwrap();
    a.insert_event(event("s", "busy", &["h"])).await.unwrap();
    let mut late = event("s", "late", &[]);
    late.received_at = 5_000;
    a.insert_event(late).await.unwrap();
    assert_eq!(a.prune_events(2_000, 100).await.unwrap(), 1, "only `done`");
    assert!(
        matches!(
            a.insert_event(event("s", "done", &[])).await.unwrap(),
            Ingested::Accepted { .. }
        ),
        "after pruning, the same id is new again"
    );
    assert!(matches!(
        a.insert_event(event("s", "busy", &["h"])).await.unwrap(),
        Ingested::Duplicate { .. }
    ));
}

async fn a_saved_registration_keeps_its_issued_secret(a: Backend, b: Backend) {
    let mut r = Registration {
        source: "lu".into(),
        provider: "linkup".into(),
        remote_id: Some("w1".into()),
        secret: Some(b"issued once".to_vec()),
        info: serde_json::json!({"mode": "custom"}),
        updated_at: 1,
    };
    a.save_registration(r.clone()).await.unwrap();
    assert_eq!(b.registration("lu").await.unwrap().as_ref(), Some(&r));
    // A later save without a secret (a reuse) keeps the one issued.
    r.secret = None;
    r.remote_id = Some("w2".into());
    r.updated_at = 2;
    b.save_registration(r.clone()).await.unwrap();
    let saved = a.registration("lu").await.unwrap().unwrap();
    assert_eq!(saved.remote_id.as_deref(), Some("w2"));
    assert_eq!(saved.secret.as_deref(), Some(&b"issued once"[..]));
    assert_eq!(
        b.issued_secrets().await.unwrap()["lu"],
        vec![b"issued once".to_vec()]
    );
    assert!(a.registration("other").await.unwrap().is_none());
    assert!(a.delete_registration("lu").await.unwrap());
    assert!(!b.delete_registration("lu").await.unwrap());
    assert!(b.issued_secrets().await.unwrap().is_empty());
}
