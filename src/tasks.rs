//! The process's background tasks. Every task is started here (clippy's `disallowed-methods`
//! refuses `tokio::spawn` and `Handle::spawn` elsewhere), in one of two kinds:
//!
//! - [`spawn`] / [`spawn_on`]: work that must finish (a write to Redis or a store, a settled
//!   answer's spend, a shadow request, a cache entry). It is tracked, and shutdown waits for it
//!   ([`drain`], bounded) before the process exits.
//! - [`service`] / [`service_on`]: a task that lives as long as what it serves (a connection, a
//!   pool's reaper, a maintenance loop that stops with the stop signal, a claim's renewal). Not
//!   waited for: it ends with its owner or with the process.

use std::future::Future;
use std::sync::LazyLock;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

static TRACKER: LazyLock<TaskTracker> = LazyLock::new(TaskTracker::new);

/// Start work that must finish before the process exits.
pub fn spawn<F>(work: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    TRACKER.spawn(work)
}

/// [`spawn`] on a given runtime (from code that may run outside one, e.g. a `Drop`).
pub fn spawn_on<F>(rt: &Handle, work: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    TRACKER.spawn_on(work, rt)
}

/// Start a task that lives as long as what it serves; shutdown does not wait for it.
#[expect(clippy::disallowed_methods, reason = "the one place tasks are started")]
pub fn service<F>(task: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(task)
}

/// [`service`] on a given runtime.
#[expect(clippy::disallowed_methods, reason = "the one place tasks are started")]
pub fn service_on<F>(rt: &Handle, task: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    rt.spawn(task)
}

/// At shutdown: wait (at most `max`) for the tracked work still running; false when some was
/// left unfinished.
pub async fn drain(max: Duration) -> bool {
    TRACKER.close();
    let done = tokio::time::timeout(max, TRACKER.wait()).await.is_ok();
    if !done {
        tracing::warn!(
            tasks = TRACKER.len(),
            "background work still running at exit (writes may be lost)"
        );
    }
    done
}
