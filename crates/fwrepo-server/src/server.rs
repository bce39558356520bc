//! The listener and the connections: HTTP/1.1 and HTTP/2 (prior knowledge) on one port, or
//! both over TLS (ALPN `h2`, `http/1.1`), the connection cap, timeouts, and graceful shutdown.
//!
//! * **Connection cap**: a permit is taken *before* `accept`, so clients beyond the cap wait
//!   in the kernel's backlog instead of being accepted and dropped.
//! * **Per-client cap**: one client (an IPv4 address, an IPv6 /64) holds at most
//!   `max_connections_per_ip` connections; a further one is closed right after `accept`, so a
//!   single client cannot hold every slot of the cap above.
//! * **Header read timeout** and **max header size**: hyper's, per HTTP/1 request; HTTP/2
//!   gets the header-list limit. Over TLS the handshake must also finish within the header
//!   read timeout, so a client that never completes it gives its connection slot back.
//! * **Idle timeout**: the socket is wrapped so every successful read or write stamps the
//!   time; a connection whose stamp is older than the timeout is closed.
//! * **No-request timeout**: bytes alone do not keep a connection: an HTTP/2 client sending
//!   only PINGs or SETTINGS, or any client between requests, moves bytes without asking for
//!   anything. Each request holds an [`InFlight`] guard from the moment hyper hands it over
//!   until its response body is dropped (handed to hyper, or the stream reset), and a response
//!   counts as in progress while the socket refuses further bytes (a slow reader). A
//!   connection with neither for `request_idle_timeout_s` is shut down gracefully (GOAWAY on
//!   HTTP/2) and cut [`CLOSE_GRACE`] later if it is still in that state; the idle timeout
//!   bounds the rest. Request bodies have their own total deadline (`body_read_timeout_s`, in
//!   the handlers).
//! * **Plain HTTP/1.1** (no TLS, `sendfile = true`): [`crate::http1`] serves GET and HEAD
//!   itself so blob bytes go out with `sendfile`, under the same timeouts; a connection it
//!   does not handle (HTTP/2 prior knowledge, a request with a body, …) is handed to hyper
//!   with the bytes already read.
//! * **Shutdown**: when the caller's future completes, the listener closes, `/readyz` turns
//!   503, every connection is told to finish its in-flight requests and close (HTTP/1 after
//!   the current response, HTTP/2 with GOAWAY), and connections still open after the grace
//!   period are cut.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::config::ServerConfig;
use crate::error::Error;
use crate::http1::{self, End};
use crate::limit::client_key;
use crate::service::handle;
use crate::state::ServerState;

/// How long a connection shut down for having no request may take to close by itself.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// A bound listener, not yet serving: lets a caller learn the port before it starts.
pub struct Bound {
    listener: TcpListener,
    config: ServerConfig,
    tls: Option<TlsAcceptor>,
}

/// Loads the TLS certificate and key when `config` names them, then binds `config.listen`.
/// A taken port is [`Error::AddrInUse`], with a message that says so; unusable TLS files are
/// the `Tls*` errors, each naming the file.
pub async fn bind(config: ServerConfig) -> Result<Bound, Error> {
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::acceptor(cert, key)?),
        (None, None) => None,
        _ => {
            return Err(Error::Config {
                origin: "server config".to_owned(),
                reason: "tls_cert and tls_key must be set together".to_owned(),
            });
        }
    };
    let addr = config.listen;
    let listener = TcpListener::bind(addr).await.map_err(|source| match source.kind() {
        io::ErrorKind::AddrInUse => Error::AddrInUse { addr },
        _ => Error::Bind { addr, source },
    })?;
    Ok(Bound { listener, config, tls })
}

/// Binds `config.listen` and serves until `shutdown` completes, then drains (see the module
/// docs). Returns once every connection is closed.
pub async fn serve(
    config: ServerConfig,
    state: Arc<ServerState>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    bind(config).await?.run(state, shutdown).await
}

impl Bound {
    /// The address actually bound (the port chosen for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Whether connections are served over TLS (`https`).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves until `shutdown` completes, then drains.
    pub async fn run(self, state: Arc<ServerState>, shutdown: impl Future<Output = ()> + Send) -> Result<(), Error> {
        let Bound { listener, config, tls } = self;
        let builder = Arc::new(builder(&config));
        let permits = Arc::new(Semaphore::new(config.max_connections));
        let per_client = Arc::new(PerClient { cap: config.max_connections_per_ip, counts: Mutex::default() });
        let (stop_tx, stop_rx) = watch::channel(false);
        let plain = config.sendfile.then(|| http1::Limits {
            header_read_timeout: config.header_read_timeout(),
            max_header_bytes: config.max_header_bytes,
            idle: config.idle_timeout(),
            request_idle: config.request_idle_timeout(),
        });
        let mut tasks = JoinSet::new();
        tracing::info!(
            addr = %listener.local_addr().map_err(|source| Error::Bind { addr: config.listen, source })?,
            tls = tls.is_some(),
            "serving"
        );
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                biased;
                _ = &mut shutdown => break,
                p = Arc::clone(&permits).acquire_owned() => p.expect("the semaphore is never closed"),
            };
            let (stream, peer) = tokio::select! {
                biased;
                _ = &mut shutdown => break,
                r = listener.accept() => match r {
                    Ok(s) => s,
                    Err(e) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            while tasks.try_join_next().is_some() {}
            let Some(slot) = per_client.take(peer.ip()) else {
                state.metrics().connection_refused_per_ip();
                tracing::debug!(client = %peer.ip(), "client holds its share of connections; closing");
                drop(stream);
                continue;
            };
            let conn = Conn {
                state: Arc::clone(&state),
                builder: Arc::clone(&builder),
                stop: stop_rx.clone(),
                idle: config.idle_timeout(),
                request_idle: config.request_idle_timeout(),
                handshake_timeout: config.header_read_timeout(),
                peer,
                plain: plain.filter(|_| tls.is_none()),
            };
            let tls = tls.clone();
            tasks.spawn(async move {
                conn.run(stream, tls).await;
                drop(slot);
                drop(permit);
            });
        }

        state.set_ready(false);
        drop(listener);
        let _ = stop_tx.send(true);
        let open = tasks.len();
        if open > 0 {
            tracing::info!(connections = open, "draining");
        }
        let drained =
            tokio::time::timeout(config.shutdown_grace(), async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(connections = tasks.len(), "shutdown grace period over; cutting connections");
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
        state.flush_audit();
        Ok(())
    }
}

fn builder(config: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout())
        .max_buf_size(config.max_header_bytes)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(config.h2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX));
    b
}

struct Conn {
    state: Arc<ServerState>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    stop: watch::Receiver<bool>,
    idle: Duration,
    /// Longest time with no request in progress.
    request_idle: Duration,
    /// Time a TLS client has to finish its handshake (the header read timeout).
    handshake_timeout: Duration,
    peer: SocketAddr,
    /// Plain HTTP/1.1 goes through `http1` first (sendfile); `None`: hyper serves it all.
    plain: Option<http1::Limits>,
}

impl Conn {
    async fn run(self, stream: TcpStream, tls: Option<TlsAcceptor>) {
        let metrics_state = Arc::clone(&self.state);
        metrics_state.metrics().connection_opened();
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        match tls {
            None => match self.plain {
                Some(limits) => {
                    if let End::Handoff(prefix) =
                        http1::serve(&stream, &self.state, self.peer, &limits, &self.stop).await
                    {
                        activity.touch();
                        self.serve(Stamped::with_prefix(prefix, stream, Arc::clone(&activity)), activity).await;
                    }
                }
                None => self.serve(Stamped::new(stream, Arc::clone(&activity)), activity).await,
            },
            Some(acceptor) => match tokio::time::timeout(
                self.handshake_timeout,
                acceptor.accept(Stamped::new(stream, Arc::clone(&activity))),
            )
            .await
            {
                Ok(Ok(tls_stream)) => self.serve(tls_stream, activity).await,
                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake not finished within the header read timeout"),
            },
        }
        metrics_state.metrics().connection_closed();
    }

    async fn serve<S>(mut self, stream: S, activity: Arc<Activity>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let io = TokioIo::new(stream);
        let state = Arc::clone(&self.state);
        let requests = Arc::new(Requests::new());
        let in_flight = Arc::clone(&requests);
        let client = self.peer.ip();
        let svc = service_fn(move |req: http::Request<Incoming>| {
            // Taken before the handler runs, released when the response body is dropped.
            let guard = in_flight.begin();
            let state = Arc::clone(&state);
            async move { handle(state, req, client).await.map(|resp| resp.map(|body| body.with_in_flight(guard))) }
        });
        let conn = self.builder.serve_connection(io, svc);
        tokio::pin!(conn);
        let mut draining = *self.stop.borrow();
        if draining {
            conn.as_mut().graceful_shutdown();
        }
        let period = (self.idle.min(self.request_idle) / 4).max(Duration::from_millis(100));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Set once the connection was shut down for having no request.
        let mut cut: Option<Pin<Box<tokio::time::Sleep>>> = None;
        let mut closing_idle = false;
        loop {
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    break;
                }
                changed = self.stop.changed(), if !draining => {
                    if changed.is_err() || *self.stop.borrow() {
                        draining = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
                _ = async { cut.as_mut().expect("guarded by is_some").await }, if cut.is_some() => {
                    if requests.open() == 0 && !activity.write_blocked() {
                        break;
                    }
                    // A request arrived just before the GOAWAY, or a response is still being
                    // flushed to a slow reader: let it finish (the idle timeout still bounds
                    // it), and check again afterwards.
                    cut = None;
                }
                _ = tick.tick() => {
                    if activity.idle_for() > self.idle {
                        tracing::debug!("closing idle connection");
                        break;
                    }
                    if cut.is_none()
                        && !activity.write_blocked()
                        && requests.idle_for().is_some_and(|d| d > self.request_idle)
                    {
                        if !closing_idle {
                            closing_idle = true;
                            tracing::debug!("closing a connection with no request in progress");
                            self.state.metrics().connection_closed_no_request();
                        }
                        if !draining {
                            draining = true;
                            conn.as_mut().graceful_shutdown();
                        }
                        cut = Some(Box::pin(tokio::time::sleep(CLOSE_GRACE)));
                    }
                }
            }
        }
    }
}

/// How many connections each client holds, against `max_connections_per_ip`.
struct PerClient {
    cap: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

impl PerClient {
    /// A slot for a connection from `ip`, or `None` when its client holds `cap` already.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        let key = client_key(ip);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(key).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(ClientSlot { owner: Arc::clone(self), key })
    }
}

/// One connection's share of its client's cap, given back on drop.
struct ClientSlot {
    owner: Arc<PerClient>,
    key: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut counts = self.owner.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// The requests in progress on one connection, and when the last one ended.
pub(crate) struct Requests {
    start: Instant,
    open: AtomicUsize,
    /// Milliseconds since `start` when the last request ended (0: none yet).
    last_end_ms: AtomicU64,
}

impl Requests {
    fn new() -> Requests {
        Requests { start: Instant::now(), open: AtomicUsize::new(0), last_end_ms: AtomicU64::new(0) }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.open.fetch_add(1, Ordering::SeqCst);
        InFlight(Arc::clone(self))
    }

    fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// How long the connection has had no request in progress; `None` while one is.
    fn idle_for(&self) -> Option<Duration> {
        if self.open() > 0 {
            return None;
        }
        let now = self.start.elapsed().as_millis() as u64;
        Some(Duration::from_millis(now.saturating_sub(self.last_end_ms.load(Ordering::SeqCst))))
    }
}

/// A request in progress; carried by its response body.
pub(crate) struct InFlight(Arc<Requests>);

impl Drop for InFlight {
    fn drop(&mut self) {
        // Stamp before the count drops, so whoever sees no request also sees the stamp.
        self.0.last_end_ms.store(self.0.start.elapsed().as_millis() as u64, Ordering::SeqCst);
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The last time a connection moved a byte, in milliseconds since it opened, and whether the
/// socket refused the last write (output is waiting for the client to read).
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    write_blocked: AtomicBool,
}

impl Activity {
    fn new() -> Activity {
        Activity { start: Instant::now(), last_ms: AtomicU64::new(0), write_blocked: AtomicBool::new(false) }
    }

    /// Records the outcome of a write: refused (`Pending`) or taken.
    fn wrote<T>(&self, r: &Poll<io::Result<T>>) {
        self.write_blocked.store(r.is_pending(), Ordering::Relaxed);
    }

    fn write_blocked(&self) -> bool {
        self.write_blocked.load(Ordering::Relaxed)
    }

    fn touch(&self) {
        self.last_ms.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let now = self.start.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// The one wrapper around a connection's socket that hyper and rustls get: it yields `prefix`
/// first (the bytes `http1` had read when it handed the connection over; empty otherwise),
/// then reads from `inner`, and stamps [`Activity`] on every read or write that moved bytes.
struct Stamped<S = TcpStream> {
    prefix: Bytes,
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Stamped<S> {
    fn new(inner: S, activity: Arc<Activity>) -> Stamped<S> {
        Stamped { prefix: Bytes::new(), inner, activity }
    }

    fn with_prefix(prefix: Bytes, inner: S, activity: Arc<Activity>) -> Stamped<S> {
        Stamped { prefix, inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Stamped<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Stamped<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.activity.wrote(&r);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.activity.wrote(&r);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// The no-request timeout must not cut a response still flushing: `Stamped` notices when
    /// the socket refuses bytes, and when it takes them again.
    #[test]
    fn a_refused_write_marks_output_pending() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
            let (server, _) = listener.accept().await.unwrap();
            let activity = Arc::new(Activity::new());
            let mut stamped = Stamped::new(server, Arc::clone(&activity));
            let chunk = vec![7u8; 64 * 1024];
            let mut written = 0usize;
            // Bounded: loopback buffers are a few MB at most.
            while written < (256 << 20) {
                match tokio::time::timeout(Duration::from_millis(50), stamped.write(&chunk)).await {
                    Ok(n) => written += n.unwrap(),
                    Err(_) => break,
                }
            }
            assert!(activity.write_blocked(), "socket never refused a write after {written} bytes");
            let mut client = client;
            let mut sink = vec![0u8; 1 << 20];
            let mut drained = 0usize;
            while drained < written.min(4 << 20) {
                drained += client.read(&mut sink).await.unwrap();
            }
            stamped.write_all(b"x").await.unwrap();
            assert!(!activity.write_blocked());
        });
    }
}
