//! The store interface, run against both backends: SQLite in a temporary
//! state directory and PostgreSQL on a throwaway cluster. Each test gets
//! two handles, `a` and `b`: for PostgreSQL two replicas (their own pools,
//! leases and names) on one database, for SQLite two clones of one store.

mod pg_support;

use std::collections::HashSet;

use hookd::store::deliveries::{AttemptRecord, DEAD, DeliveryFilter, FAILED, Next, PENDING};
use hookd::store::events::{EventFilter, Ingested, NewEvent};
use hookd::store::pg::{PgOptions, PgStore};
use hookd::store::rejected::{BODY_KEEP, NewRejection};
use hookd::store::replay::Requeued;
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
    events_are_listed_filtered_paged_and_shown,
    replay_starts_over_creates_and_leaves_running_runs_alone,
    the_tail_reads_attempts_after_a_cursor,
    refused_requests_page_by_id,
    deliveries_page_by_id_and_prune_counts_what_it_keeps,
    no_pull_source_recorded_yet,
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

/// Stores an event of `source` and `type`, received at `at`, routed to
/// `handlers`; returns its id.
async fn stored(
    s: &Backend,
    id: &str,
    (source, ty): (&str, &str),
    at: i64,
    handlers: &[&str],
) -> i64 {
    let mut e = event(source, id, handlers);
    e.event_type = ty.into();
    e.received_at = at;
    match s.insert_event(e).await.unwrap() {
        Ingested::Accepted { id, .. } => id,
        other => panic!("{other:?}"),
    }
}

async fn event_ids(s: &Backend, f: EventFilter) -> Vec<String> {
    let rows = s.list_events(f).await.unwrap();
    rows.into_iter().map(|r| r.event_id).collect()
}

async fn events_are_listed_filtered_paged_and_shown(a: Backend, _: Backend) {
    let e0 = stored(&a, "e0", ("a", "message.sent"), 1_000, &["h"]).await;
    stored(&a, "e1", ("a", "call.completed"), 2_000, &[]).await;
    let e2 = stored(&a, "e2", ("b", "message.read"), 3_000, &["h"]).await;
    let by = |f: EventFilter| event_ids(&a, f);
    let source = EventFilter {
        source: Some("a".into()),
        ..Default::default()
    };
    assert_eq!(by(source).await, ["e1", "e0"], "newest first");
    let glob = EventFilter {
        type_glob: Some("message.*".into()),
        ..Default::default()
    };
    assert_eq!(by(glob).await, ["e2", "e0"]);
    let set = EventFilter {
        type_glob: Some("[cm]*.?ent".into()),
        ..Default::default()
    };
    assert_eq!(by(set).await, ["e0"], "a glob's set and ? as SQLite's GLOB");
    let dot = EventFilter {
        type_glob: Some("message?sent".into()),
        ..Default::default()
    };
    assert_eq!(by(dot).await, ["e0"]);
    let literal_dot = EventFilter {
        type_glob: Some("messageXsent".into()),
        ..Default::default()
    };
    assert!(by(literal_dot).await.is_empty(), "only ? and * are wild");
    let window = EventFilter {
        since: Some(2_000),
        until: Some(3_000),
        ..Default::default()
    };
    assert_eq!(by(window).await, ["e1"]);
    let unrouted = EventFilter {
        status: Some("unrouted".into()),
        ..Default::default()
    };
    assert_eq!(by(unrouted).await, ["e1"]);
    let pending = EventFilter {
        status: Some("pending".into()),
        limit: Some(1),
        ..Default::default()
    };
    assert_eq!(by(pending).await, ["e2"], "limited to the newest");
    let page = EventFilter {
        before: Some(e2),
        ..Default::default()
    };
    assert_eq!(by(page).await, ["e1", "e0"]);
    let after = a.events_after(EventFilter::default(), e0).await.unwrap();
    let after: Vec<&str> = after.iter().map(|r| r.event_id.as_str()).collect();
    assert_eq!(after, ["e1", "e2"], "oldest first, above the cursor");
    assert_eq!(a.newest_event_id().await.unwrap(), e2);
    let shown = a.event(e0).await.unwrap().unwrap();
    assert_eq!(
        (shown.row.source.as_str(), shown.row.status.as_str()),
        ("a", "pending")
    );
    assert_eq!(
        shown.headers,
        [("content-type".to_string(), "application/json".to_string())]
    );
    assert_eq!(
        (shown.body.as_slice(), shown.received_at_us),
        (&b"{}"[..], 1_000)
    );
    assert!(a.event(e2 + 100).await.unwrap().is_none());
}

async fn replay_starts_over_creates_and_leaves_running_runs_alone(a: Backend, _: Backend) {
    let ev = stored(&a, "e1", ("s", "t"), 1_000, &["h", "busy"]).await;
    let h = a.claim("h", 2_000, 1).await.unwrap().remove(0);
    a.finish(h.delivery, fail(1), Next::Dead, 2_100)
        .await
        .unwrap();
    a.claim("busy", 2_000, 1).await.unwrap();
    assert_eq!(
        a.pairs_with_status(DEAD, None).await.unwrap(),
        [(ev, "h".to_string())]
    );
    let pairs = vec![
        (ev, "h".to_string()),
        (ev, "busy".to_string()),
        (ev, "new".to_string()),
    ];
    let got = a.requeue(pairs, 3_000).await.unwrap();
    assert_eq!(
        got,
        [Requeued::Queued, Requeued::AlreadyRunning, Requeued::Queued]
    );
    assert_eq!(deliveries_of(&a, "h").await, [(PENDING.to_string(), 0)]);
    assert_eq!(
        deliveries_of(&a, "busy").await,
        [("running".to_string(), 1)]
    );
    assert_eq!(deliveries_of(&a, "new").await, [(PENDING.to_string(), 0)]);
    let again = a.claim("h", 3_000, 1).await.unwrap().remove(0);
    assert!(again.replay, "the run knows it is a replay");
    assert_eq!(again.attempt, 1, "a fresh attempt budget");
    let new = a.claim("new", 3_000, 1).await.unwrap();
    assert!(new[0].replay);
    assert!(a.pairs_with_status(DEAD, None).await.unwrap().is_empty());
    assert_eq!(
        a.pairs_with_status("running", Some("busy".into()))
            .await
            .unwrap(),
        [(ev, "busy".to_string())]
    );
}

async fn the_tail_reads_attempts_after_a_cursor(a: Backend, _: Backend) {
    assert_eq!(a.newest_attempt_id().await.unwrap(), 0);
    stored(&a, "e1", ("s", "message.sent"), 1_000, &["h"]).await;
    stored(&a, "e2", ("t", "call.ended"), 1_000, &["h"]).await;
    for c in a.claim("h", 2_000, 2).await.unwrap() {
        a.finish(c.delivery, fail(1), Next::Dead, 2_100)
            .await
            .unwrap();
    }
    let all = a.attempts_after(0, None, None, 10).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(
        (all[0].event_id.as_str(), all[0].status.as_str()),
        ("e1", DEAD)
    );
    assert_eq!(all[0].attempt.exit_code, Some(1));
    let newest = a.newest_attempt_id().await.unwrap();
    assert_eq!(all[1].seq, newest);
    let later = a.attempts_after(all[0].seq, None, None, 10).await.unwrap();
    assert_eq!(later.len(), 1, "only above the cursor");
    let of_t = a
        .attempts_after(0, Some("t".into()), None, 10)
        .await
        .unwrap();
    assert_eq!(of_t[0].event_id, "e2");
    let calls = a
        .attempts_after(0, None, Some("call.*".into()), 10)
        .await
        .unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].event_type, "call.ended");
    assert_eq!(a.attempts_after(0, None, None, 1).await.unwrap().len(), 1);
}

async fn refused_requests_page_by_id(a: Backend, _: Backend) {
    for i in 0..5 {
        let r = NewRejection {
            source: None,
            path: "/hooks/x".into(),
            status: 422,
            reason: format!("r{i}"),
            code: "unparseable".into(),
            received_at: i,
            remote: Some("127.0.0.1".into()),
            headers: vec![],
            body: b"not json".to_vec(),
        };
        a.insert_rejected(r, 100).await.unwrap();
    }
    let first = a.rejected_page(None, None, 2).await.unwrap();
    let reasons: Vec<&str> = first.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(reasons, ["r4", "r3"]);
    assert_eq!(first[0].body_preview, "not json");
    let next = a.rejected_page(None, Some(first[1].id), 2).await.unwrap();
    let reasons: Vec<&str> = next.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(reasons, ["r2", "r1"]);
}

async fn deliveries_page_by_id_and_prune_counts_what_it_keeps(a: Backend, _: Backend) {
    for i in 0..3 {
        stored(&a, &format!("e{i}"), ("s", "t"), 1_000, &["h"]).await;
    }
    stored(&a, "done", ("s", "t"), 1_000, &[]).await;
    let all = a.list_deliveries(DeliveryFilter::default()).await.unwrap();
    assert_eq!(all.len(), 3);
    let page = DeliveryFilter {
        before: Some(all[0].id),
        limit: Some(1),
        ..Default::default()
    };
    let page = a.list_deliveries(page).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].id, all[1].id, "the next page starts below the id");
    assert_eq!(a.unfinished_before(2_000).await.unwrap(), 3);
    assert_eq!(
        a.unfinished_before(1_000).await.unwrap(),
        0,
        "received before"
    );
    assert_eq!(a.prune_events(2_000, 100).await.unwrap(), 1);
}

async fn no_pull_source_recorded_yet(a: Backend, _: Backend) {
    assert!(a.pull_statuses().await.unwrap().is_empty());
    assert_eq!(hookd::admin::stopped_sources(&a).await, None);
}
