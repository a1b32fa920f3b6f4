//! The store's background tasks: L1 housekeeping and, for an L2 that does not expire entries itself, the sweep.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::task::AbortHandle;

use super::Inner;

/// How often idle L1s apply their expirations and evictions.
const L1_HOUSEKEEPING_INTERVAL_MS: u64 = 1_000;

pub(super) fn start(inner: &Arc<Inner>) -> Vec<AbortHandle> {
    let mut tasks = Vec::new();
    if inner.l1.is_some() {
        tasks.push(crate::runtime::spawn(l1_housekeeping(Arc::downgrade(inner))).abort_handle());
    }
    if inner.l2.as_ref().is_some_and(|l2| l2.may_extend()) {
        tasks.push(crate::runtime::spawn(extension_watch(Arc::downgrade(inner))).abort_handle());
    }
    if let Some(period) = inner.l2.as_ref().and_then(|l2| l2.sweep_interval(&inner.config)) {
        tasks.push(crate::runtime::spawn(expiry_sweeps(Arc::downgrade(inner), period)).abort_handle());
    }
    tasks
}

/// A ticker that skips what it missed rather than bursting to catch up.
fn ticker(period: Duration) -> tokio::time::Interval {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks
}

/// moka applies expirations only when the cache is used; this makes an idle L1 shrink too.
async fn l1_housekeeping(inner: Weak<Inner>) {
    let mut ticks = ticker(Duration::from_millis(L1_HOUSEKEEPING_INTERVAL_MS));
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        if let Some(l1) = &inner.l1 {
            l1.run_pending_tasks();
        }
    }
}

/// Until the L2 keeps tags, entries are read without them; once another instance starts tagging, what this store's
/// L1 took in before may carry tags it never saw, so it goes, with every load in progress.
async fn extension_watch(inner: Weak<Inner>) {
    let mut ticks = ticker(Duration::from_millis(crate::l2::EXTENSION_WATCH_MS));
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let Some(l2) = inner.l2.clone() else { return };
        match l2.newly_extended().await {
            Ok(true) => {
                inner.forget_matching(&crate::pattern::Pattern::everything());
                return;
            }
            // Known already (this store extended it), or not yet.
            Ok(false) if l2.keeps_tags() => return,
            _ => {}
        }
    }
}

async fn expiry_sweeps(inner: Weak<Inner>, period: Duration) {
    let mut ticks = ticker(period);
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let Some(l2) = inner.l2.clone() else { return };
        // The sweep deletes in bounded batches; it gets more time than a call, being off every call's path.
        let swept = tokio::time::timeout(period.max(Duration::from_secs(10)), l2.sweep_expired()).await;
        if let Ok(Err(error)) = swept {
            inner.report_background(&error);
        }
    }
}
