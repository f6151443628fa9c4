//! Polling and SSE backfill through bursts: many events sharing a
//! timestamp, or within a second or two of each other, more than a page of
//! them inside the re-read `overlap`, ties across page edges, cuts and
//! restarts between cycles, and stream reconnects that backfill a gap.
//!
//! The promise checked: every event the provider keeps is stored exactly
//! once, and a backlog costs about `events / limit` requests, not one
//! request per poll for ever (the stall these tests were written for).

mod pull_sim;
mod support;

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use pull_sim::{KEY, Sim, WEBHOOK_ID};
use support::*;

const LONG: Duration = Duration::from_secs(30);

/// A LinkUp hosted-mode source on the simulator.
fn linkup(sim: &Sim, mode: &str, limit: Option<u32>) -> String {
    let sse = if mode == "sse" {
        "[source.sse]\nidle_timeout = \"10s\"\nbackoff = { initial = \"20ms\", max = \"100ms\" }\n"
    } else {
        ""
    };
    let limit = limit.map(|l| format!("limit = {l}\n")).unwrap_or_default();
    format!(
        r#"[[source]]
name = "lu"
provider = "linkup"
mode = "{mode}"
api_key = "{KEY}"
api_base = "{}"
webhook_id = "{WEBHOOK_ID}"
{sse}[source.poll]
{limit}interval = "1h"
backoff = {{ initial = "20ms", max = "100ms" }}
"#,
        sim.url()
    )
}

fn count(db: &rusqlite::Connection, sql: &str) -> i64 {
    db.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Waits until `n` events are stored, then checks each is there once.
async fn wait_stored(dir: &Path, sim: &Sim, n: usize) {
    let db = state_db(dir);
    let sql = "SELECT COUNT(*) FROM events WHERE source = 'lu'";
    eventually(LONG, || (count(&db, sql) >= n as i64).then_some(())).await;
    assert_eq!(count(&db, sql), n as i64, "no event stored twice");
    let seqs = pull_sim::stored_seqs(&db, "lu");
    let want: HashSet<u64> = sim.events().iter().map(|e| e.seq).collect();
    assert_eq!(seqs.iter().copied().collect::<HashSet<_>>(), want);
}

/// Waits until the poll source's catch-up has ended (state `idle`).
async fn wait_idle(dir: &Path) {
    let db = state_db(dir);
    eventually(LONG, || {
        db.query_row(
            "SELECT 1 FROM pull_status WHERE source = 'lu' AND state = 'idle'",
            [],
            |_| Ok(()),
        )
        .ok()
    })
    .await;
}

/// `n` times within `span_us` of `start`, `tie` of them at each instant.
fn burst(start: i64, n: usize, span_us: i64, tie: usize) -> Vec<i64> {
    let instants = n.div_ceil(tie) as i64;
    (0..n)
        .map(|i| start + (i / tie) as i64 * span_us / instants.max(1))
        .collect()
}

#[tokio::test]
async fn a_burst_of_450_within_two_seconds_is_polled_in_full_then_new_events_too() {
    let sim = Sim::start().await;
    let base = hookd::timefmt::now_micros() - 3_600_000_000;
    sim.push_times(&burst(base, 450, 1_800_000, 3), true);
    let td = TestDaemon::start(&linkup(&sim, "poll", Some(50))).await;
    let dir = td.dir.path().to_path_buf();
    wait_stored(&dir, &sim, 450).await;
    wait_idle(&dir).await;
    let reqs = sim.requests("/events").len();
    // Each page of 50 re-reads the (up to 3) events of its predecessor's
    // last instant: 450 / 47 pages, and the short one that ends the cycle.
    assert!(reqs <= 450 / 47 + 2, "{reqs} requests for 450 events");
    let kept = td.stop().await;

    // Later events, stored within the overlap of the last position, are
    // read by the next cycle (a restart here).
    sim.push_times(&burst(base + 1_900_000, 30, 50_000, 1), true);
    let td = TestDaemon::start_in(kept, &linkup(&sim, "poll", Some(50))).await;
    wait_stored(td.dir.path(), &sim, 480).await;
    td.stop().await;
}

#[tokio::test]
async fn linkup_asks_for_pages_of_200_by_default() {
    let sim = Sim::start().await;
    let base = hookd::timefmt::now_micros() - 3_600_000_000;
    sim.push_times(&burst(base, 450, 1_000_000, 1), true);
    let td = TestDaemon::start(&linkup(&sim, "poll", None)).await;
    wait_stored(td.dir.path(), &sim, 450).await;
    wait_idle(td.dir.path()).await;
    let reqs = sim.requests("/events");
    assert!(
        reqs.iter()
            .all(|r| r.query.get("limit").map(String::as_str) == Some("200"))
    );
    assert_eq!(reqs.len(), 3, "200 + 200 + 50 (the short page ends it)");
    td.stop().await;
}

#[tokio::test]
async fn more_than_a_page_sharing_one_time_cannot_stall_polling() {
    let sim = Sim::start().await;
    let t = hookd::timefmt::now_micros() - 3_600_000_000;
    // Five events at one instant with pages of three, then two later ones.
    sim.push_times(&[t, t, t, t, t, t + 10, t + 20], true);
    let td = TestDaemon::start(&linkup(&sim, "poll", Some(3))).await;
    let db = td.db();
    let sql = "SELECT COUNT(*) FROM events WHERE source = 'lu'";
    eventually(LONG, || (count(&db, sql) == 5).then_some(())).await;
    wait_idle(td.dir.path()).await;
    let got = pull_sim::stored_seqs(&db, "lu");
    assert_eq!(
        got,
        [1, 2, 3, 6, 7],
        "the first page of the tie, then past it: the events after are read"
    );
    let since: Vec<_> = sim
        .requests("/events")
        .iter()
        .map(|r| r.query.get("since").cloned())
        .collect();
    let at = |us| Some(hookd::timefmt::format_micros(us));
    assert_eq!(since, [None, at(t - 1), at(t)], "one re-read, then past t");
    td.stop().await;
}

/// One poll cycle's input: groups of events sharing an instant, the gaps
/// between the instants, and how late (before the last stored position,
/// within the overlap) the segment starts.
#[derive(Clone, Debug)]
struct Segment {
    ties: Vec<usize>,
    gaps_us: Vec<i64>,
    late_us: i64,
}

fn segment(limit: usize) -> impl Strategy<Value = Segment> {
    (
        prop::collection::vec(1..limit, 1..=5 * limit),
        prop::collection::vec(
            prop_oneof![Just(1i64), 1..1_000i64, 1..400_000i64],
            5 * limit,
        ),
        0..1_000_000i64,
    )
        .prop_map(move |(mut ties, gaps_us, late_us)| {
            // At most 5 x limit events in one segment.
            while ties.iter().sum::<usize>() > 5 * limit {
                ties.pop();
            }
            Segment {
                ties,
                gaps_us,
                late_us,
            }
        })
}

impl Segment {
    /// The segment's times, starting `late_us` before `last`.
    fn times(&self, last: i64) -> Vec<i64> {
        let mut t = last - self.late_us;
        let mut out = Vec::new();
        for (i, &n) in self.ties.iter().enumerate() {
            t += self.gaps_us[i];
            out.extend(std::iter::repeat_n(t, n));
        }
        out
    }

    fn largest_tie(&self) -> usize {
        self.ties.iter().copied().max().unwrap_or(1)
    }
}

/// The largest tie in these segments: a cycle's overlap may re-read
/// earlier segments' events as well as its own.
fn largest_tie(segments: &[Segment]) -> usize {
    segments.iter().map(Segment::largest_tie).max().unwrap_or(1)
}

/// Pages a catch-up may take over `n` events when ties hold up to `tie`:
/// each full page moves on by at least `limit - tie` events.
fn page_bound(n: usize, limit: usize, tie: usize) -> usize {
    n.div_ceil(limit - tie) + 2
}

/// Poll cycles separated by restarts, each over a burst that may start
/// inside the previous cycle's overlap window.
async fn poll_cycles(limit: usize, segments: Vec<Segment>) {
    let sim = Sim::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut last = hookd::timefmt::now_micros() - 3_600_000_000;
    let mut kept = Some(dir);
    for (i, seg) in segments.iter().enumerate() {
        let times = seg.times(last);
        last = last.max(*times.iter().max().unwrap());
        sim.push_times(&times, true);
        let before = sim.requests("/events").len();
        let td = TestDaemon::start_in(
            kept.take().unwrap(),
            &linkup(&sim, "poll", Some(limit as u32)),
        )
        .await;
        let n = sim.events().len();
        wait_stored(td.dir.path(), &sim, n).await;
        wait_idle(td.dir.path()).await;
        kept = Some(td.stop().await);
        let asked = sim.requests("/events").len() - before;
        let bound = page_bound(n, limit, largest_tie(&segments[..=i]));
        assert!(
            asked <= bound,
            "{asked} requests for {n} events (bound {bound})"
        );
    }
}

/// An SSE source whose stream is cut after each burst emitted while it was
/// down: the backfill on reconnect must find every event of the gap.
async fn sse_gaps(limit: usize, segments: Vec<Segment>, streamed: usize) {
    let sim = Sim::start().await;
    let td = TestDaemon::start(&linkup(&sim, "sse", Some(limit as u32))).await;
    let dir = td.dir.path().to_path_buf();
    eventually(LONG, || (sim.connections() >= 1).then_some(())).await;
    let mut last = hookd::timefmt::now_micros() - 60_000_000;
    for (i, seg) in segments.iter().enumerate() {
        sim.push(streamed);
        wait_stored(&dir, &sim, sim.events().len()).await;
        if let Some(e) = sim.events().last() {
            last = last.max(e.created_at);
        }
        let times = seg.times(last);
        last = last.max(*times.iter().max().unwrap());
        let before = sim.requests("/events").len();
        let conns = sim.connections();
        sim.push_times(&times, false);
        sim.drop_streams();
        eventually(LONG, || (sim.connections() > conns).then_some(())).await;
        let n = sim.events().len();
        wait_stored(&dir, &sim, n).await;
        let asked = sim.requests("/events").len() - before;
        let bound = page_bound(n, limit, largest_tie(&segments[..=i]));
        assert!(
            asked <= bound,
            "{asked} backfill requests for {n} events (bound {bound})"
        );
    }
    td.stop().await;
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn cases() -> ProptestConfig {
    ProptestConfig {
        cases: 12,
        max_shrink_iters: 64,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn polling_stores_every_burst_once_in_bounded_requests(
        (limit, segments) in (2usize..=6).prop_flat_map(|l| (Just(l), prop::collection::vec(segment(l), 1..=3)))
    ) {
        runtime().block_on(poll_cycles(limit, segments));
    }

    #[test]
    fn sse_backfill_recovers_every_burst_sent_while_disconnected(
        (limit, segments, streamed) in (2usize..=6).prop_flat_map(|l| (Just(l), prop::collection::vec(segment(l), 1..=3), 0usize..4))
    ) {
        runtime().block_on(sse_gaps(limit, segments, streamed));
    }
}
