//! Which ids of a table are final on PostgreSQL, for a reader that follows
//! a table by id (`hookd tail`).
//!
//! On SQLite one writer commits rows in id order, so a reader that saw id
//! N has seen every id below it. On PostgreSQL an id is numbered when the
//! row is inserted and seen when its transaction commits: replicas commit
//! in any order, so id N can be visible while N-1 is still on its way, and
//! a reader that moved past N-1 would never print it. Ids are final once
//! every transaction that could hold a smaller one has ended.
//!
//! Each look reads the table's last numbered id, then a snapshot: every
//! transaction that numbered an id up to that one had begun before the
//! snapshot, so once the oldest running transaction (the snapshot's xmin)
//! is past that snapshot's xmax, those ids are final. A look taken while
//! nothing else runs settles at once. A transaction that stays open (a bulk
//! copy, another application's long transaction on the same cluster) would
//! hold every reader back: after [`GIVE_UP`] the reader moves on anyway, and
//! a row that commits later than that may be missed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use deadpool_postgres::GenericClient;

use super::{PgStore, Result};
use crate::store::StoreError;

/// How long a reader waits for ids to become final before moving on.
pub const GIVE_UP: Duration = Duration::from_secs(10);

/// The tables followed by id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    Events,
    Attempts,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Events => "events",
            Table::Attempts => "attempts",
        }
    }
}

/// One look: the last id numbered, and the snapshot's xmax after it.
#[derive(Clone, Copy, Debug)]
struct Mark {
    last_id: i64,
    xmax: u64,
    at: Instant,
}

/// A reader's view of which ids of one table are final.
#[derive(Debug)]
pub struct Settled {
    table: Table,
    waiting: VecDeque<Mark>,
    horizon: i64,
}

impl Settled {
    pub fn new(table: Table) -> Settled {
        Settled {
            table,
            waiting: VecDeque::new(),
            horizon: 0,
        }
    }

    /// Takes a look; returns the id up to which rows are final.
    async fn look(&mut self, c: &impl GenericClient) -> Result<i64> {
        let last: i64 = c
            .query_one(
                "SELECT COALESCE(pg_sequence_last_value(pg_get_serial_sequence($1, 'id')::regclass), 0)",
                &[&self.table.name()],
            )
            .await?
            .get(0);
        // A statement of its own: its snapshot is taken after `last` was read.
        let snap = c
            .query_one(
                "SELECT pg_snapshot_xmin(s)::text, pg_snapshot_xmax(s)::text
                 FROM pg_current_snapshot() AS s",
                &[],
            )
            .await?;
        let (xmin, xmax) = (xid(snap.get(0))?, xid(snap.get(1))?);
        let now = Instant::now();
        self.waiting.push_back(Mark {
            last_id: last,
            xmax,
            at: now,
        });
        Ok(self.settle(xmin, now))
    }

    /// Moves the horizon past every look whose transactions have all ended
    /// (or that waited [`GIVE_UP`]). Looks settle in order: both their
    /// last id and their xmax only grow.
    fn settle(&mut self, xmin: u64, now: Instant) -> i64 {
        while let Some(m) = self.waiting.front().copied() {
            if m.xmax > xmin && now.duration_since(m.at) < GIVE_UP {
                break;
            }
            self.horizon = self.horizon.max(m.last_id);
            self.waiting.pop_front();
        }
        self.horizon
    }
}

fn xid(text: String) -> Result<u64> {
    text.parse()
        .map_err(|_| StoreError::Failed(format!("PostgreSQL sent {text:?} as a transaction id")))
}

impl PgStore {
    /// The id of `s`'s table up to which rows are final now.
    pub async fn settled(&self, s: &mut Settled) -> Result<i64> {
        s.look(&self.conn().await?).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_final_once_the_transactions_before_them_ended() {
        let mut s = Settled::new(Table::Events);
        let t0 = Instant::now();
        let mark = |last_id, xmax| Mark {
            last_id,
            xmax,
            at: t0,
        };
        s.waiting.extend([mark(5, 100), mark(9, 104)]);
        assert_eq!(s.settle(99, t0), 0, "a transaction from before 100 runs");
        assert_eq!(s.settle(100, t0), 5);
        assert_eq!(s.settle(103, t0), 5);
        assert_eq!(s.settle(104, t0), 9);
        s.waiting.push_back(mark(12, 110));
        assert_eq!(s.settle(105, t0), 9);
        assert_eq!(
            s.settle(105, t0 + GIVE_UP),
            12,
            "a stuck transaction is waited out"
        );
        assert!(s.waiting.is_empty());
    }
}
