//! The process's life: serve `app` with the background tasks (Redis upkeep, spend flush, health
//! probes, job workers) until SIGTERM/SIGINT, reload on SIGHUP meanwhile, then drain.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::api::context::SharedState;
use crate::app::HttpService;

/// The signals the process answers (SIGTERM, SIGINT: drain and stop; SIGHUP: reload), taken over
/// from their default actions. Installed before the gateway says it is ready: until then a
/// SIGHUP would end the process (its default action) and a SIGTERM would skip the drain.
pub struct StopSignals {
    #[cfg(unix)]
    streams: Option<[tokio::signal::unix::Signal; 3]>,
}

impl StopSignals {
    /// Take the signals over now (within the runtime).
    pub fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let streams = match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
                signal(SignalKind::hangup()),
            ) {
                (Ok(term), Ok(int), Ok(hup)) => Some([term, int, hup]),
                _ => {
                    tracing::error!("cannot install signal handlers");
                    None
                }
            };
            Self { streams }
        }
        #[cfg(not(unix))]
        Self {}
    }
}

/// Serve until SIGTERM/SIGINT, then drain for at most `shutdown_grace`.
pub async fn serve(
    state: SharedState,
    listener: TcpListener,
    signals: StopSignals,
) -> std::io::Result<()> {
    let app = HttpService::new(state.clone());
    serve_app(state, listener, app, signals).await
}

/// Serve `app` and run this process's job workers until SIGTERM/SIGINT, then drain both for at
/// most `shutdown_grace` (read at the signal): the listener stays open, `/ready` answers 503
/// and new model calls 503 with `retry-after`, connections are shut down gracefully as their
/// requests finish (see [`crate::server`]); the drain ends when no connection is left. Workers
/// take no new jobs; running ones finish or, shortly before the grace ends, are released to
/// the queue.
pub async fn serve_app<S>(
    state: SharedState,
    listener: TcpListener,
    app: S,
    signals: StopSignals,
) -> std::io::Result<()>
where
    S: crate::server::App,
{
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Set with the signal: the grace in force then.
    let grace_at_stop = Arc::new(std::sync::OnceLock::new());
    let signals_state = state.clone();
    let grace_set = grace_at_stop.clone();
    crate::tasks::service(async move {
        wait_for_stop(&signals_state, signals).await;
        let grace = signals_state
            .runtime
            .load()
            .config
            .server
            .shutdown_grace
            .get();
        let _ = grace_set.set(grace);
        signals_state.connections.drain();
        tracing::info!(
            grace_ms = grace.as_millis() as u64,
            open_connections = signals_state.connections.count(),
            "shutting down: draining in-flight requests (new model calls are refused with 503)"
        );
        let _ = stop_tx.send(true);
    });
    if let Some(redis) = state.redis.clone() {
        redis.maintain().await;
        let mut stop = stop_rx.clone();
        crate::tasks::service(async move {
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => redis.maintain().await,
                }
            }
        });
    }
    {
        let ledger = state.services.ledger.clone();
        ledger.spend.load().await;
        let mut stop = stop_rx.clone();
        crate::tasks::service(async move {
            loop {
                tokio::select! {
                    _ = stop.changed() => {
                        ledger.spend.flush().await;
                        return;
                    }
                    () = tokio::time::sleep(Duration::from_secs(1)) => ledger.spend.flush().await,
                }
            }
        });
    }
    let probe_state = state.clone();
    let mut probe_stop = stop_rx.clone();
    crate::tasks::service(async move {
        loop {
            let interval = probe_state
                .runtime
                .load()
                .config
                .resilience
                .health_check_interval
                .get();
            let wait = if interval.is_zero() {
                Duration::from_secs(1)
            } else {
                interval
            };
            tokio::select! {
                _ = probe_stop.changed() => return,
                () = tokio::time::sleep(wait) => {}
            }
            if !interval.is_zero() {
                let rt = probe_state.runtime.load_full();
                crate::router::probe_open_deployments(&rt).await;
            }
        }
    });
    let grace_of = |g: &std::sync::OnceLock<Duration>| g.get().copied().unwrap_or_default();
    let (hard_tx, hard_rx) = tokio::sync::watch::channel(false);
    let jobs_task = state
        .jobs
        .get()
        .map(|j| j.run(state.clone(), stop_rx.clone(), hard_rx));
    let mut hard_stop_rx = stop_rx.clone();
    let hard_grace = grace_at_stop.clone();
    crate::tasks::service(async move {
        let _ = hard_stop_rx.wait_for(|v| *v).await;
        let grace = grace_of(&hard_grace);
        // Leave time to release running jobs before the process exits.
        let margin = (grace / 5).min(Duration::from_secs(2));
        tokio::time::sleep(grace.saturating_sub(margin)).await;
        let _ = hard_tx.send(true);
    });
    let mut drain_rx = stop_rx.clone();
    let conns = state.connections.clone();
    let drain_grace = grace_at_stop.clone();
    let drained = async move {
        let _ = drain_rx.wait_for(|v| *v).await;
        tokio::select! {
            () = conns.all_closed() => {}
            () = tokio::time::sleep(grace_of(&drain_grace)) => {
                tracing::warn!(
                    open_connections = conns.count(),
                    "shutdown grace passed with requests still in flight; exiting"
                );
            }
        }
    };
    let timeouts = {
        let state = state.clone();
        move || {
            let rt = state.runtime.load();
            let s = &rt.config.server;
            crate::server::Timeouts {
                header_read: s.header_read_timeout.get(),
                idle: s.idle_timeout.get(),
            }
        }
    };
    crate::server::serve(state.connections.clone(), timeouts, listener, app, drained).await;
    if let Some(task) = jobs_task
        && tokio::time::timeout(grace_of(&grace_at_stop) + Duration::from_secs(2), task)
            .await
            .is_err()
    {
        tracing::warn!("job workers did not stop within the shutdown grace; exiting");
    }
    // Writes still on their way (stored responses, spend, cache entries) finish first.
    crate::tasks::drain(Duration::from_secs(5)).await;
    Ok(())
}

/// Wait for SIGTERM or SIGINT; reload on SIGHUP meanwhile.
async fn wait_for_stop(state: &SharedState, signals: StopSignals) {
    #[cfg(unix)]
    {
        let Some([mut term, mut int, mut hup]) = signals.streams else {
            std::future::pending::<()>().await;
            return;
        };
        loop {
            tokio::select! {
                _ = term.recv() => return,
                _ = int.recv() => return,
                _ = hup.recv() => {
                    // The outcome, restart-only keys included, is logged by the reload.
                    if let Err(errors) = crate::api::context::reload(state).await {
                        for e in errors {
                            tracing::error!(error = %e, "reload refused; the running configuration stays");
                        }
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = signals;
        let _ = tokio::signal::ctrl_c().await;
    }
}
