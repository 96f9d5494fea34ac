//! The HTTP listener: what a reverse proxy in front would otherwise enforce.
//! A custom accept loop around hyper-util's connection builder (instead of
//! `axum::serve`, which has no timeouts or caps) that
//! - admits each socket through the [`AdmissionTable`] (global and per-client caps,
//!   eviction of the oldest connection without a request when full) and answers a
//!   refused one a `503` at once, without waiting for its request;
//! - closes connections whose first request header is not complete within the
//!   header-read timeout (hyper's own timer covers later requests on a kept-alive
//!   connection) and connections on which no byte moved for the idle timeout;
//! - keeps accepting when file descriptors run out (rate-limited log, short pause);
//! - on shutdown stops accepting, lets open requests finish within the grace
//!   period, then closes the rest.
//!
//! WebSocket upgrades keep their slot (the ticket travels inside the socket) but
//! leave the idle timeout behind: a quiet events socket is not an idle one.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::admission::{AdmissionTable, ConnectionLimits, Refusal, Slot, Ticket};

/// Sent to a connection refused for a full server or a full per-client quota, so a
/// client learns why instead of seeing a bare reset.
fn refusal_response(why: Refusal) -> &'static [u8] {
    match why {
        Refusal::Client => b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\nretry-after: 5\r\nconnection: close\r\ncontent-length: 45\r\n\r\ntoo many open connections from your address\r\n",
        Refusal::Full => b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\nretry-after: 5\r\nconnection: close\r\ncontent-length: 37\r\n\r\nthe server has too many connections\r\n",
    }
}

/// Logs a repeated event at most once per period, with the count since the last line,
/// so a flood cannot flood the log too.
struct RateLimitedLog {
    period: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    fn new(period: Duration) -> Self {
        RateLimitedLog {
            period,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(count)` when a line is due now (count includes this event).
    fn hit(&mut self, now: Instant) -> Option<u64> {
        self.suppressed += 1;
        match self.last {
            Some(t) if now.duration_since(t) < self.period => None,
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// Milliseconds since `epoch` of the last byte read or written.
#[derive(Debug)]
struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// The client socket, with its admission ticket (freed when the socket is dropped,
/// also after an upgrade) and a record of when bytes last moved.
struct MeteredStream {
    inner: TcpStream,
    activity: Arc<Activity>,
    _ticket: Ticket,
}

impl AsyncRead for MeteredStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl AsyncWrite for MeteredStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
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

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Pending connections the kernel queues for `accept` (capped by
/// `net.core.somaxconn`). The standard library's 128 overflows under a connection
/// flood and a dropped SYN costs a health check a one-second retransmit.
const LISTEN_BACKLOG: u32 = 4096;

/// A listening socket with a backlog sized for connection floods.
pub fn bind(addr: std::net::SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As std's bind does: a restart must not wait for TIME_WAIT sockets.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serve `app` on `listener` under `limits` until `shutdown` resolves; then stop
/// accepting, let open requests finish within `limits.shutdown_grace` and return.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let table = AdmissionTable::new(limits);
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(table.limits().header_read_timeout)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    // Every connection task holds a receiver: `closed()` resolves when all are gone.
    let (close_tx, close_rx) = tokio::sync::watch::channel(false);
    let mut refused_log = RateLimitedLog::new(Duration::from_secs(10));
    let mut accept_error_log = RateLimitedLog::new(Duration::from_secs(10));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // EMFILE and the like: open sockets will close (timeouts,
                    // evictions); pause briefly rather than spin.
                    if let Some(n) = accept_error_log.hit(Instant::now()) {
                        tracing::error!(error = %e, count = n, "accept error");
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        match table.admit(peer.ip()) {
            Ok(ticket) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(connection(
                    stream,
                    ticket,
                    app.clone(),
                    builder.clone(),
                    close_rx.clone(),
                ));
            }
            Err(why) => {
                // Never wait for a refused client: one non-blocking write, then close.
                let _ = stream.try_write(refusal_response(why));
                if let Some(n) = refused_log.hit(Instant::now()) {
                    tracing::warn!(
                        refused = n,
                        open = table.open(),
                        reason = match why {
                            Refusal::Client => "per-client connection limit",
                            Refusal::Full => "connection limit",
                        },
                        "refusing connections"
                    );
                }
            }
        }
    }
    drop(listener);
    drop(close_rx);
    let _ = close_tx.send(true);
    let open = table.open();
    if open > 0 {
        tracing::info!(open, "waiting for open requests before exiting");
    }
    if tokio::time::timeout(table.limits().shutdown_grace, close_tx.closed())
        .await
        .is_err()
    {
        tracing::warn!("grace period over: closing the remaining connections");
    }
}

/// One client connection from admission to close.
async fn connection(
    stream: TcpStream,
    ticket: Ticket,
    app: axum::Router,
    builder: Arc<hyper_util::server::conn::auto::Builder<TokioExecutor>>,
    mut close_rx: tokio::sync::watch::Receiver<bool>,
) {
    let (header_timeout, idle_timeout) = {
        let l = ticket.limits();
        (l.header_read_timeout, l.idle_timeout)
    };
    let slot: Arc<Slot> = ticket.slot().clone();
    let activity = Arc::new(Activity::new());
    let io = MeteredStream {
        inner: stream,
        activity: activity.clone(),
        _ticket: ticket,
    };
    // Requests whose handler is still working: a handler may be silent for a while
    // (a finalize, ICE gathering) and must not lose its connection to the idle timer,
    // which would drop it half-way. Only requests whose body is complete when they
    // arrive count: one still waiting for its body is waiting for the client, and a
    // stalled upload must stay idle.
    let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let service = {
        let slot = slot.clone();
        let in_flight = in_flight.clone();
        hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            slot.mark_started();
            let guard = hyper::body::Body::is_end_stream(req.body())
                .then(|| InFlight::enter(in_flight.clone()));
            let answer = tower::ServiceExt::oneshot(app.clone(), req);
            async move {
                let response = answer.await;
                drop(guard);
                response
            }
        })
    };
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let first_request_deadline = tokio::time::Instant::now() + header_timeout;
    let mut closing = *close_rx.borrow();
    if closing {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        let busy = in_flight.load(std::sync::atomic::Ordering::SeqCst) > 0;
        let idle_deadline = if busy {
            tokio::time::Instant::now() + idle_timeout
        } else {
            tokio::time::Instant::from_std(activity.last() + idle_timeout)
        };
        tokio::select! {
            _ = conn.as_mut() => break,
            _ = slot.eviction.notified() => {
                tracing::debug!("connection without a request evicted for a newcomer");
                break;
            }
            // The auto builder reads the protocol preface before hyper's header
            // timer runs; this covers that and HTTP/2 alike.
            _ = tokio::time::sleep_until(first_request_deadline), if !slot.started() => {
                if !slot.started() {
                    tracing::debug!("no request header within the header-read timeout");
                    break;
                }
            }
            _ = tokio::time::sleep_until(idle_deadline) => {
                if in_flight.load(std::sync::atomic::Ordering::SeqCst) == 0
                    && activity.last() + idle_timeout <= Instant::now()
                {
                    tracing::debug!("connection idle: closed");
                    break;
                }
            }
            _ = close_rx.changed(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// One request being handled; counted while it lives.
struct InFlight(Arc<std::sync::atomic::AtomicUsize>);

impl InFlight {
    fn enter(count: Arc<std::sync::atomic::AtomicUsize>) -> InFlight {
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        InFlight(count)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit (every client socket is a file
/// descriptor; distributions start services at 1024). Returns the limit now in force.
pub fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!(error = %e, "could not raise the open-files limit");
                rlimit::getrlimit(rlimit::Resource::NOFILE)
                    .ok()
                    .map(|(soft, _)| soft)
            }
        }
    }
    #[cfg(not(unix))]
    None
}

/// File descriptors kept for everything but client sockets: the database pool,
/// recordings, GStreamer's sockets and pipes, log files.
pub const FD_RESERVE: u64 = 1024;

/// `max_connections` fitted to the open-files limit, with a warning when lowered.
pub fn fit_to_fd_limit(mut limits: ConnectionLimits, fd_limit: Option<u64>) -> ConnectionLimits {
    if let Some(fds) = fd_limit {
        let budget = fds.saturating_sub(FD_RESERVE).max(16) as usize;
        if limits.max_connections > budget {
            tracing::warn!(
                configured = limits.max_connections,
                open_files_limit = fds,
                using = budget,
                "connections.max_connections exceeds what the open-files limit allows; lowered"
            );
            limits.max_connections = budget;
            limits.max_per_client = limits.max_per_client.min(budget);
        }
    }
    limits
}

/// The limits in one line, for the start log.
pub fn describe(limits: &ConnectionLimits) -> String {
    let proxies: Vec<String> = limits
        .trusted_proxies
        .iter()
        .map(IpAddr::to_string)
        .collect();
    format!(
        "max {} connections, {} per client{}, header timeout {:?}, idle timeout {:?}",
        limits.max_connections,
        limits.max_per_client,
        if proxies.is_empty() {
            String::new()
        } else {
            format!(" ({} trusted proxies)", proxies.len())
        },
        limits.header_read_timeout,
        limits.idle_timeout
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_responses_are_well_formed() {
        for why in [Refusal::Client, Refusal::Full] {
            let text = std::str::from_utf8(refusal_response(why)).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(body.len(), len, "{text}");
        }
    }

    #[test]
    fn the_log_is_rate_limited_and_counts_what_it_skipped() {
        let mut log = RateLimitedLog::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(log.hit(t0), Some(1));
        for i in 1..100 {
            assert_eq!(log.hit(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(log.hit(t0 + Duration::from_secs(10)), Some(100));
    }

    /// A handler that works silently for longer than the idle timeout (a finalize,
    /// ICE gathering) keeps its connection and answers.
    #[tokio::test]
    async fn a_silent_handler_is_not_cut_by_the_idle_timeout() {
        let app = axum::Router::new().route(
            "/think",
            axum::routing::get(|| async {
                tokio::time::sleep(Duration::from_millis(2500)).await;
                "done"
            }),
        );
        let limits = ConnectionLimits {
            header_read_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            ..Default::default()
        };
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, app, limits, async {
            let _ = stopped.await;
        }));
        let answer = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(format!("http://{addr}/think"))
            .send()
            .await;
        let body = answer.expect("the handler answers").text().await.unwrap();
        assert_eq!(body, "done");
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the listener stops")
            .unwrap();
    }

    /// A response that keeps making progress outlives both timeouts (a long Range
    /// download or HLS read); a silent connection does not.
    #[tokio::test]
    async fn a_slow_but_moving_response_is_not_cut_by_the_timeouts() {
        use futures_util::StreamExt;
        let app = axum::Router::new().route(
            "/slow",
            axum::routing::get(|| async {
                let chunks = futures_util::stream::iter(0..6).then(|i| async move {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    Ok::<_, std::convert::Infallible>(format!("chunk {i}\n"))
                });
                axum::body::Body::from_stream(chunks)
            }),
        );
        let limits = ConnectionLimits {
            header_read_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            ..Default::default()
        };
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, app, limits, async {
            let _ = stopped.await;
        }));
        let t0 = Instant::now();
        let body = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(format!("http://{addr}/slow"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body.lines().count(), 6, "{body}");
        assert!(t0.elapsed() >= Duration::from_millis(2500));
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 16];
        let closed = tokio::time::timeout(
            Duration::from_secs(3),
            tokio::io::AsyncReadExt::read(&mut silent, &mut buf),
        )
        .await;
        assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the listener stops")
            .unwrap();
    }

    #[test]
    fn max_connections_fits_the_fd_limit() {
        let l = fit_to_fd_limit(ConnectionLimits::default(), Some(4096));
        assert_eq!(l.max_connections, 4096 - FD_RESERVE as usize);
        assert_eq!(l.max_per_client, 256);
        let l = fit_to_fd_limit(ConnectionLimits::default(), Some(1 << 20));
        assert_eq!(l.max_connections, 10_000);
    }
}
