//! The claim round: which handlers get due work, in what order, and how the
//! global cap is shared. Free global slots go first to the handlers with
//! the fewest runs going; a handler waiting for the cap is a *rival* that a
//! finishing run of another handler hands its slot back to. Also starts a
//! slot for each claimed delivery (exec on a blocking thread, stream and
//! http as a task) and counts it out when it ends.
//!
//! Owns the running counts and the global permits; it must not record
//! attempts or run handlers itself.

use std::sync::Arc;

use super::Dispatcher;
use crate::config::{HandlerConfig, HandlerKind};
use crate::store::deliveries::Claimed;
use crate::timefmt;

impl Dispatcher {
    /// Claims due work for every handler with free slots. True when some
    /// handler filled all its free slots (there may be more to claim).
    pub(super) async fn claim_round(&self) -> bool {
        let now = timefmt::now_micros();
        let rt = self.inner.runtime.load_full();
        // Only handlers with a free slot of their own are worth a look. An
        // exec handler waiting for the global cap is looked at too: it is
        // first in line when a global slot frees up.
        let names: Vec<String> = rt
            .config
            .handlers
            .iter()
            .filter(|h| self.own_free_slots(h) > 0)
            .map(|h| h.name.clone())
            .collect();
        if names.is_empty() {
            return false;
        }
        let due: Vec<String> = match self.inner.store.handlers_with_due_work(names, now).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("cannot read the delivery queue: {e}");
                return false;
            }
        };
        let mut again = false;
        for h in self.fair_order(&rt.config.handlers, &due) {
            let free = self.own_free_slots(h);
            if free == 0 {
                continue;
            }
            // Exec and http runs hold a global slot; take them before
            // claiming so a claimed delivery always has one.
            let global = h.kind.takes_global_slot();
            let mut permits: Vec<_> = if global {
                (0..free)
                    .map_while(|_| self.inner.global.clone().try_acquire_owned().ok())
                    .collect()
            } else {
                Vec::new()
            };
            let free = if global { permits.len() } else { free };
            if free == 0 {
                continue;
            }
            let claimed = match self.inner.store.claim(&h.name, now, free).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(handler = %h.name, "cannot claim deliveries: {e}");
                    continue;
                }
            };
            again |= claimed.len() == free;
            let h = Arc::new(h.clone());
            for c in claimed {
                self.start(h.clone(), c, permits.pop());
            }
        }
        again
    }

    /// The handlers named in `due`, those with the fewest runs going first
    /// (config order among equals): a handler with nothing running gets a
    /// freed global slot before one that already holds several.
    pub(super) fn fair_order<'a>(
        &self,
        handlers: &'a [HandlerConfig],
        due: &[String],
    ) -> Vec<&'a HandlerConfig> {
        let mut order: Vec<(usize, &HandlerConfig)> = handlers
            .iter()
            .filter(|h| due.contains(&h.name))
            .map(|h| (self.running_of(&h.name), h))
            .collect();
        order.sort_by_key(|(running, _)| *running);
        order.into_iter().map(|(_, h)| h).collect()
    }

    pub(super) fn running_of(&self, handler: &str) -> usize {
        self.inner
            .state
            .lock()
            .map(|s| s.running.get(handler).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Slots left under the handler's own `concurrency`.
    pub(super) fn own_free_slots(&self, h: &HandlerConfig) -> usize {
        h.concurrency.saturating_sub(self.running_of(&h.name))
    }

    /// When the global cap is all taken: the other exec and http handlers
    /// that could run more. If one of them has due work, a finishing run of
    /// `h` hands its global slot back instead of keeping it for `h`'s backlog.
    pub(super) fn rivals_for_the_cap(&self, h: &HandlerConfig) -> Vec<String> {
        if !h.kind.takes_global_slot() || self.inner.global.available_permits() > 0 {
            return Vec::new();
        }
        self.inner
            .runtime
            .load()
            .config
            .handlers
            .iter()
            .filter(|o| o.kind.takes_global_slot() && o.name != h.name)
            .filter(|o| self.own_free_slots(o) > 0)
            .map(|o| o.name.clone())
            .collect()
    }

    pub(super) fn start(
        &self,
        h: Arc<HandlerConfig>,
        c: Claimed,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ) {
        if let Ok(mut s) = self.inner.state.lock() {
            *s.running.entry(h.name.clone()).or_default() += 1;
            s.total += 1;
        }
        let this = self.clone();
        // Either way, the global slot goes back before the loop is woken, so
        // the round that wake-up starts can hand it out.
        match h.kind {
            HandlerKind::Exec => {
                tokio::task::spawn_blocking(move || {
                    let h = this.run_exec_slot(h, c);
                    drop(permit);
                    this.finished(&h.name);
                });
            }
            HandlerKind::Stream | HandlerKind::Http => {
                tokio::spawn(async move {
                    let h = this.run_slot(h, c).await;
                    drop(permit);
                    this.finished(&h.name);
                });
            }
        }
    }

    pub(super) fn finished(&self, handler: &str) {
        if let Ok(mut s) = self.inner.state.lock() {
            if let Some(n) = s.running.get_mut(handler) {
                *n = n.saturating_sub(1);
            }
            s.total = s.total.saturating_sub(1);
        }
        self.inner.wake.notify_one();
        self.inner.idle.notify_waiters();
    }
}
