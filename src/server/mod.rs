//! Serving HTTP: the accept loop and the client connections (HTTP/1.1 and h2c on one port, by
//! hyper-util's auto builder).
//!
//! - `server.max_connections`: the loop takes a slot before it accepts, so beyond the limit new
//!   connections wait in the kernel's listen backlog until one closes.
//! - `server.header_read_timeout` and `server.idle_timeout`: in each connection's socket
//!   ([`conn::ConnIo`]).
//! - Out of descriptors (`EMFILE`/`ENFILE` on accept): the loop closes the oldest connections
//!   that have no request in flight (idle, or still sending a head), waits a moment and goes on;
//!   it never spins on the error nor stops serving.
//! - Draining ([`Connections::drain`]): the listener stays open; every connection is shut down
//!   gracefully (HTTP/1: the answer in flight finishes with `connection: close`, an idle one
//!   closes; HTTP/2: `GOAWAY`, open streams finish), those accepted meanwhile too once their
//!   protocol is known. The drain ends when no connection is left.

pub mod conn;
mod h1;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::time::Instant;

use crate::slots::Slots;
pub use conn::Timeouts;
use conn::{Conn, ConnIo, ConnService, DRAIN, SHED, Signals};

/// How long the loop waits after running out of descriptors.
const EXHAUSTED_BACKOFF: Duration = Duration::from_millis(50);
/// Interval of HTTP/2 keep-alive pings (a peer that does not answer within the same time is
/// gone; its streams end).
const H2_KEEP_ALIVE: Duration = Duration::from_secs(20);

/// The open client connections: their slots, and each one's signals, oldest first.
pub struct Connections {
    pub slots: Slots,
    open: Mutex<BTreeMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    draining: Arc<AtomicBool>,
    closed: Notify,
}

impl Connections {
    pub fn new(max: u32) -> Self {
        Self {
            slots: Slots::new(usize::try_from(max).unwrap_or(usize::MAX)),
            open: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(0),
            draining: Arc::new(AtomicBool::new(false)),
            closed: Notify::new(),
        }
    }

    /// Whether the gateway is draining (SIGTERM): `/ready` answers 503, new model calls 503.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Open connections now.
    pub fn count(&self) -> usize {
        self.open.lock().map_or(0, |m| m.len())
    }

    fn register(self: &Arc<Self>) -> Registered {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn::new(self.draining.clone()));
        if let Ok(mut m) = self.open.lock() {
            m.insert(id, conn.clone());
        }
        if self.draining.load(Ordering::SeqCst) {
            conn.signal(DRAIN);
        }
        Registered {
            id,
            conn,
            all: self.clone(),
        }
    }

    /// Tell every connection, and each one accepted from now on, to shut down gracefully.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        if let Ok(m) = self.open.lock() {
            for c in m.values() {
                c.signal(DRAIN);
            }
        }
    }

    /// Wait until no connection is open.
    pub async fn all_closed(&self) {
        loop {
            let closed = self.closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            closed.await;
        }
    }

    /// Close up to `n` of the oldest connections with no request in flight; how many.
    fn shed_idle(&self, n: usize) -> usize {
        let Ok(m) = self.open.lock() else { return 0 };
        let mut shed = 0;
        for c in m.values() {
            if shed == n {
                break;
            }
            if c.is_idle() {
                c.signal(SHED);
                shed += 1;
            }
        }
        shed
    }
}

/// A connection in [`Connections`] until dropped.
struct Registered {
    id: u64,
    conn: Arc<Conn>,
    all: Arc<Connections>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let empty = self.all.open.lock().map_or(true, |mut m| {
            m.remove(&self.id);
            m.is_empty()
        });
        if empty {
            self.all.closed.notify_waiters();
        }
    }
}

/// The application a connection serves (`app::HttpService`, or the worker's router).
pub trait App:
    tower::Service<
        Request,
        Response = Response,
        Error = std::convert::Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S> App for S
where
    S: tower::Service<Request, Response = Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
}

/// Accept and serve connections until `stop` resolves (the end of the drain); the listener is
/// closed when this returns. Connections still open then are dropped with the runtime.
pub async fn serve<S>(
    conns: Arc<Connections>,
    timeouts: impl Fn() -> Timeouts,
    listener: TcpListener,
    app: S,
    stop: impl Future<Output = ()>,
) where
    S: App,
{
    let builder = Arc::new(builder());
    tokio::pin!(stop);
    let mut permit: Option<OwnedSemaphorePermit> = None;
    let mut warned: Option<Instant> = None;
    loop {
        let slot = match permit.take() {
            Some(p) => p,
            None => tokio::select! {
                p = conns.slots.acquire() => p,
                () = &mut stop => return,
            },
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = &mut stop => return,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                permit = Some(slot);
                if is_connection_error(&e) {
                    continue;
                }
                let shed = if is_exhaustion(&e) {
                    conns.shed_idle((conns.count() / 8).clamp(4, 256))
                } else {
                    0
                };
                if warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
                    warned = Some(Instant::now());
                    tracing::warn!(
                        error = %e, open_connections = conns.count(), closed_idle = shed,
                        "accept failed; closing the oldest idle connections and accepting again shortly"
                    );
                }
                tokio::select! {
                    () = tokio::time::sleep(EXHAUSTED_BACKOFF) => {}
                    () = &mut stop => return,
                }
                continue;
            }
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let timeouts = timeouts();
        let registered = conns.register();
        let service = ConnService {
            app: app.clone(),
            conn: registered.conn.clone(),
            peer,
        };
        crate::tasks::service(serve_conn(
            builder.clone(),
            tcp,
            service,
            timeouts,
            registered,
            slot,
        ));
    }
}

fn builder() -> Builder<TokioExecutor> {
    let mut b = Builder::new(TokioExecutor::new());
    // Our socket times the head (hyper's own timer would also close idle keep-alive
    // connections after the head timeout, and needs a timer hyper otherwise does without).
    b.http1().header_read_timeout(None);
    b.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(H2_KEEP_ALIVE))
        .keep_alive_timeout(H2_KEEP_ALIVE);
    b
}

async fn serve_conn<S>(
    builder: Arc<Builder<TokioExecutor>>,
    tcp: TcpStream,
    service: ConnService<S>,
    timeouts: Timeouts,
    registered: Registered,
    _slot: OwnedSemaphorePermit,
) where
    S: App,
{
    let conn = registered.conn.clone();
    let io = ConnIo::new(tcp, conn.clone(), timeouts);
    let mut heard = h1::Heard::default();
    let (io, service) = match h1::serve(io, service, &conn, &mut heard).await {
        h1::Outcome::Closed => return,
        h1::Outcome::HandOff(io, service) => (io, service),
    };
    let io = TokioIo::new(io);
    let serving = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(serving);
    let mut seen = heard.seen;
    let mut waker_registered = heard.registered;
    let mut graceful = false;
    if seen & DRAIN != 0 && conn::can_shut_down(&conn) {
        // Told to drain while this path still served the connection.
        graceful = true;
        serving.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            biased;
            r = serving.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %crate::error::error_chain(&*e), "client connection ended");
                }
                break;
            }
            signals = Signals { conn: &conn, seen, registered: &mut waker_registered } => {
                seen = signals;
                if signals & SHED != 0 {
                    tracing::debug!("closing an idle client connection: out of descriptors");
                    break;
                }
                if signals & DRAIN != 0 && !graceful && conn::can_shut_down(&conn) {
                    graceful = true;
                    serving.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// An accept error about one connection (it went away before we took it): take the next.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Out of descriptors or kernel memory: connections must close before accepting works again.
fn is_exhaustion(e: &std::io::Error) -> bool {
    e.raw_os_error()
        .is_some_and(|n| [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM].contains(&n))
}
