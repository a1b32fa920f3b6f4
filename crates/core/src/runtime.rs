//! The one tokio runtime of the process that runs every L2 call and background task.
//!
//! It belongs to this crate rather than to the binding so that connections, the bus and the sweeps outlive any one
//! JavaScript thread: worker threads come and go, the shared stores stay. Its threads never keep a Node process
//! alive.

use std::future::Future;
use std::sync::LazyLock;

use tokio::runtime::{Builder, EnterGuard, Handle, Runtime};
use tokio::task::JoinHandle;

static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("tiered-cache")
        .enable_all()
        .build()
        .expect("tiered-cache could not start its tokio runtime")
});

/// Enters the runtime where a client (sqlx's pool, redis-rs's connection manager) must be built inside one. Starts
/// the runtime on first use. The store's tests run in their own runtime (with tokio's paused clock): there it is
/// left as it is.
pub fn enter() -> Option<EnterGuard<'static>> {
    if cfg!(test) && Handle::try_current().is_ok() {
        return None;
    }
    Some(RUNTIME.handle().enter())
}

/// Runs `future` on the runtime, from any thread, whether or not that thread has a runtime of its own (in the
/// store's tests: on the test's runtime, so its clock is the test's).
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    #[cfg(test)]
    if let Ok(current) = Handle::try_current() {
        return current.spawn(future);
    }
    RUNTIME.spawn(future)
}
