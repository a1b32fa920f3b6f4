//! How a store calls its L2: one deadline per call, one more try on fresh connections when the server dropped them,
//! the circuit breaker's skip, and failures absorbed into the call's [`Outcome`].

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::{Inner, Outcome};
use crate::bus::BusOp;
use crate::error::{CacheError, ErrorKind, Result};
use crate::key::namespaced;
use crate::l2::{L2Read, ServerTime, Write, L2};
use crate::stats::bump;

/// The least time between two replacements of the L2's connections, in ms.
const RECONNECT_INTERVAL_MS: u64 = 100;

impl Inner {
    /// When a call that starts now must have its L2 answers: all of a call's round trips share one `l2Timeout`.
    pub(super) fn deadline(&self) -> Instant {
        Instant::now() + self.config.l2_timeout()
    }

    /// Bounds an L2 call by `deadline`; past it, the call fails with `ERR_CACHE_L2_TIMEOUT`. A call that finds its
    /// connection gone at once (the server restarted, or reset it) is made once more, on fresh connections, within
    /// the same deadline: a server that is back must not count as down because of the connections it dropped. While the
    /// circuit breaker is open the call is not made: it fails at once as skipped, which [`Self::absorb`] does not
    /// report.
    pub(super) async fn l2_call<T, F>(&self, deadline: Instant, call: impl Fn() -> F) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        if self.breaker.is_open() {
            return Err(CacheError::skipped());
        }
        let timed_out = || Err(CacheError::l2_timeout(self.config.l2_timeout_ms));
        let started = Instant::now();
        let mut result = tokio::time::timeout_at(deadline, call()).await.unwrap_or_else(|_| timed_out());
        // A dropped connection fails at once; a failure that took most of `l2Timeout` (a connect attempt that timed
        // out) is a timeout by another name, and trying again would only double the wait.
        let failed_fast = started.elapsed() < self.config.l2_timeout() / 2;
        if failed_fast && result.as_ref().is_err_and(|e| e.kind == ErrorKind::L2Unavailable) {
            self.reconnect_l2();
            result = tokio::time::timeout_at(deadline, call()).await.unwrap_or_else(|_| timed_out());
        }
        if let Some(me) = self.me.upgrade() {
            me.record_l2_call(result.as_ref().err());
        }
        result
    }

    /// Replaces the L2's command connections, at most once per [`RECONNECT_INTERVAL_MS`]: when a burst of calls
    /// all find their connections dead, one replacement serves them all.
    pub(super) fn reconnect_l2(&self) {
        let Some(l2) = &self.l2 else { return };
        let mut last = self.last_reconnect.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|at| at.elapsed() >= Duration::from_millis(RECONNECT_INTERVAL_MS)) {
            *last = Some(Instant::now());
            l2.reconnect();
        }
    }

    /// Writes one key to the L2 (the write's bus message is filled in here: its announcement, in the same round
    /// trip); the write's time, or `Ok(None)` when its condition refused it.
    pub(super) async fn write_to_l2(
        &self,
        l2: &L2,
        key: &str,
        json: &str,
        write: Write<'_>,
        deadline: Instant,
    ) -> Result<Option<ServerTime>> {
        let full = namespaced(&self.config.namespace, key);
        let announce = self.bus_payloads(BusOp::Keys { keys: vec![key.to_owned()] });
        let message = announce.first().map(|(_, payload)| payload.as_str());
        let write = Write { bus_message: message, ..write };
        let written = self.l2_call(deadline, || l2.set(&full, &self.config.namespace, json, write)).await;
        if written.as_ref().is_ok_and(Option::is_some) && message.is_some() {
            bump(&self.stats.bus_published);
        }
        written
    }

    /// Reads one namespaced key from the L2, its entry judged by its tags' invalidations (see
    /// [`Inner::judged`]).
    pub(super) async fn l2_get(&self, l2: &L2, full: &str, deadline: Instant) -> Result<L2Read> {
        self.l2_call(deadline, || l2.get(full)).await.map(|read| self.judged(read))
    }

    /// Counts a failure and degrades to `fallback`; a call the open breaker skipped is counted as skipped, and not
    /// reported (the breaker reported the outage when it opened).
    pub(super) fn absorb<T>(&self, result: Result<T>, fallback: T) -> Outcome<T> {
        match result {
            Ok(value) => Outcome::ok(value),
            Err(error) if error.is_skipped() => {
                bump(&self.stats.l2_skipped);
                Outcome { value: fallback, error: None }
            }
            Err(error) => self.failed(error, fallback),
        }
    }

    /// Counts a failure and reports it, degrading to `fallback`, whether or not the breaker skipped the call.
    pub(super) fn failed<T>(&self, error: CacheError, fallback: T) -> Outcome<T> {
        bump(&self.stats.errors);
        Outcome { value: fallback, error: Some(error) }
    }
}
