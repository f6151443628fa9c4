//! The queue between the callers of the store and its writer thread.
//!
//! A job may be patient: its caller needs the result a little later (an
//! exec slot's attempt record, which it reads after the next run), and the
//! writer may hold the commit back for company (see [`JobQueue::take`]). A
//! channel would wake the writer for every job, patient or not, only for it
//! to see there is still time and go back to sleep: two context switches
//! per job, on the two cores the handlers need. This queue knows what the
//! writer waits for and wakes it only then: for a first job, an eager one,
//! one due before the writer's wake-up, enough company, or a caller that
//! cannot wait any longer ([`JobQueue::hurry`]).

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Why a job was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refused {
    Full,
    Closed,
}

/// What the writer is doing, as senders need to know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Writer {
    /// Working, or about to look at the queue again: nobody need wake it.
    Busy,
    /// Asleep with nothing in hand: any job wakes it.
    Idle,
    /// Asleep with a patient batch until `until`; woken early by a job due
    /// before then, or when `room` more jobs have come.
    Lingering { until: Instant, room: usize },
}

struct Item<T> {
    item: T,
    due: Instant,
}

struct State<T> {
    items: VecDeque<Item<T>>,
    writer: Writer,
    /// What is queued or in the writer's hand is due now.
    hurried: bool,
    closed: bool,
}

pub(super) struct JobQueue<T> {
    state: Mutex<State<T>>,
    wake: Condvar,
    capacity: usize,
}

impl<T> JobQueue<T> {
    pub fn new(capacity: usize) -> JobQueue<T> {
        JobQueue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                writer: Writer::Busy,
                hurried: false,
                closed: false,
            }),
            wake: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding this lock leaves the queue consistent
        // (each change is one push or pop): keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `item`, to be committed within `patience`; true when this
    /// woke the writer.
    pub fn push(&self, item: T, patience: Duration) -> Result<bool, Refused> {
        let mut st = self.lock();
        if st.closed {
            return Err(Refused::Closed);
        }
        if st.items.len() >= self.capacity {
            return Err(Refused::Full);
        }
        let due = Instant::now() + patience;
        st.items.push_back(Item { item, due });
        let wake = match st.writer {
            Writer::Busy => false,
            Writer::Idle => true,
            Writer::Lingering { until, room } => due < until || st.items.len() >= room,
        };
        if wake {
            st.writer = Writer::Busy;
            drop(st);
            self.wake.notify_one();
        }
        Ok(wake)
    }

    /// Makes every job queued so far, and the batch the writer lingers
    /// over, due now: for a caller about to block on one of them.
    pub fn hurry(&self) {
        let mut st = self.lock();
        let lingering = matches!(st.writer, Writer::Lingering { .. });
        if st.items.is_empty() && !lingering {
            // Nothing waits for company: the jobs are committing or done.
            return;
        }
        st.hurried = true;
        if lingering {
            st.writer = Writer::Busy;
            drop(st);
            self.wake.notify_one();
        }
    }

    /// Ends the queue: later pushes are refused, and the writer, once it
    /// has taken what is left, hears `None`.
    pub fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }

    /// Ends the queue for a writer that is gone: what is still queued is
    /// dropped, so its callers hear at once that it never ran.
    pub fn abandon(&self) {
        let left = {
            let mut st = self.lock();
            st.closed = true;
            std::mem::take(&mut st.items)
        };
        drop(left);
    }

    /// Waits for a first job, then takes every job queued (up to `max`).
    /// While the batch is smaller than `enough` and none of it is due, it
    /// waits for more, until the earliest due time. `None` once the queue
    /// is closed and empty.
    pub fn take(&self, max: usize, enough: usize) -> Option<Vec<T>> {
        let mut st = self.lock();
        while st.items.is_empty() {
            if st.closed {
                return None;
            }
            st.writer = Writer::Idle;
            st = self.wake.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        let mut items = Vec::new();
        let mut until = None::<Instant>;
        loop {
            while items.len() < max {
                let Some(next) = st.items.pop_front() else {
                    break;
                };
                until = Some(until.map_or(next.due, |u| u.min(next.due)));
                items.push(next.item);
            }
            let now = Instant::now();
            let until = until.unwrap_or(now);
            if items.len() >= max.min(enough) || now >= until || st.hurried || st.closed {
                break;
            }
            st.writer = Writer::Lingering {
                until,
                room: enough - items.len(),
            };
            st = self
                .wake
                .wait_timeout(st, until - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        st.writer = Writer::Busy;
        // Jobs left queued (beyond `max`) stay hurried for the next batch.
        st.hurried &= !st.items.is_empty();
        Some(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOON: Duration = Duration::from_millis(2);
    const LATER: Duration = Duration::from_secs(60);

    #[test]
    fn a_lone_patient_job_waits_its_patience_and_an_eager_one_does_not() {
        let q = JobQueue::new(8);
        q.push(1, SOON).unwrap();
        let t = Instant::now();
        assert_eq!(q.take(64, 16).unwrap(), vec![1]);
        assert!(
            t.elapsed() >= Duration::from_millis(1),
            "it waited for company"
        );

        q.push(2, LATER).unwrap();
        q.push(3, Duration::ZERO).unwrap();
        assert_eq!(
            q.take(64, 16).unwrap(),
            vec![2, 3],
            "the eager job ends the wait"
        );
    }

    #[test]
    fn enough_company_or_the_batch_cap_commit_at_once() {
        let q = JobQueue::new(64);
        (0..5).for_each(|i| drop(q.push(i, LATER)));
        assert_eq!(q.take(64, 5).unwrap().len(), 5);
        (0..5).for_each(|i| drop(q.push(i, LATER)));
        assert_eq!(q.take(3, 16).unwrap(), vec![0, 1, 2]);
        assert_eq!(q.take(3, 2).unwrap(), vec![3, 4]);
    }

    #[test]
    fn only_what_the_writer_waits_for_wakes_it() {
        let q = std::sync::Arc::new(JobQueue::new(64));
        let writer = {
            let q = q.clone();
            std::thread::spawn(move || q.take(64, 4).unwrap())
        };
        let idle = || q.lock().writer == Writer::Idle;
        let lingering = || matches!(q.lock().writer, Writer::Lingering { .. });
        while !idle() {
            std::thread::yield_now();
        }
        assert!(
            q.push(0, LATER).unwrap(),
            "the first job wakes the idle writer"
        );
        while !lingering() {
            std::thread::yield_now();
        }
        assert!(!q.push(1, LATER).unwrap(), "a patient job lets it sleep");
        assert!(!q.push(2, LATER).unwrap());
        assert!(q.push(3, LATER).unwrap(), "the fourth is company enough");
        assert_eq!(writer.join().unwrap(), vec![0, 1, 2, 3]);

        let writer = {
            let q = q.clone();
            std::thread::spawn(move || q.take(64, 16).unwrap())
        };
        while !idle() {
            std::thread::yield_now();
        }
        q.push(0, LATER).unwrap();
        while !lingering() {
            std::thread::yield_now();
        }
        assert!(q.push(1, SOON).unwrap(), "due before the wake-up");
        assert_eq!(writer.join().unwrap(), vec![0, 1]);
    }

    #[test]
    fn a_hurried_batch_commits_at_once() {
        let q = std::sync::Arc::new(JobQueue::new(64));
        q.hurry();
        q.push(1, LATER).unwrap();
        let t = Instant::now();
        q.hurry();
        assert_eq!(q.take(64, 16).unwrap(), vec![1], "queued before the take");
        q.push(2, LATER).unwrap();
        let writer = {
            let q = q.clone();
            std::thread::spawn(move || q.take(64, 16).unwrap())
        };
        while !matches!(q.lock().writer, Writer::Lingering { .. }) {
            std::thread::yield_now();
        }
        q.hurry();
        assert_eq!(writer.join().unwrap(), vec![2], "in the writer's hand");
        assert!(t.elapsed() < LATER);
        assert!(!q.lock().hurried, "a hurry ends with its batch");
    }

    #[test]
    fn a_full_queue_refuses_and_a_closed_one_drains_then_ends() {
        let q = JobQueue::new(2);
        q.push(1, LATER).unwrap();
        q.push(2, LATER).unwrap();
        assert_eq!(q.push(3, LATER), Err(Refused::Full));
        q.close();
        assert_eq!(q.push(4, LATER), Err(Refused::Closed));
        assert_eq!(q.take(64, 16).unwrap(), vec![1, 2], "no wait once closed");
        assert!(q.take(64, 16).is_none());

        let q = JobQueue::new(2);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        q.push(tx, LATER).unwrap();
        q.abandon();
        assert!(rx.recv().is_err(), "the queued job was dropped");
        assert_eq!(
            q.push(std::sync::mpsc::channel().0, LATER),
            Err(Refused::Closed)
        );
    }
}
