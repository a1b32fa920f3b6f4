//! The one tokio runtime of the process that runs every L2 call and background task.
//!
//! It belongs to this crate rather than to the binding so that connections, the bus and the sweeps outlive any one
//! JavaScript thread: worker threads come and go, the shared stores stay. Its threads never keep a Node process
//! alive.

use std::future::Future;
use std::sync::LazyLock;

use tokio::runtime::{Builder, Handle, Runtime};
use tokio::task::JoinHandle;

static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("tiered-cache")
        .enable_all()
        .build()
        .expect("tiered-cache could not start its tokio runtime")
});

/// The runtime's handle, to enter where a client (sqlx's pool, redis-rs's connection manager) must be built inside
/// a runtime. Starts the runtime on first use.
pub fn handle() -> &'static Handle {
    RUNTIME.handle()
}

/// Runs `future` on the runtime, from any thread, whether or not that thread has a runtime of its own.
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    RUNTIME.spawn(future)
}
