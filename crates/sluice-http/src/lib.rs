//! The HTTP/1.1 server plumbing every Sluice server shares (the gateway's two listeners, the
//! simulator, and the servers to come), so that each has the same defences:
//!
//! - a header-read timeout (hyper's, which is silently off unless a timer is set; it is set
//!   here) and a body-read timeout ([`read_body`]): a client that sends its request slowly is
//!   cut off instead of holding a connection for ever;
//! - a limit on open connections, and optionally on connections from one IP address: a
//!   connection over either is answered at once with `503` (or `429` for one address) and
//!   closed, so a flood of slow clients cannot exhaust file descriptors or memory;
//! - a body-size limit ([`read_body`]);
//! - a graceful drain on shutdown, with a deadline.

#![deny(unsafe_code)]

mod body;

pub use body::ResponseBody;

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tracing::{debug, warn};

/// What a server accepts from its clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// Longest a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// Longest a client may take to send a request's body ([`read_body`]).
    pub body_read_timeout: Duration,
    /// Connections open at once, at most; more are answered `503` and closed.
    pub max_connections: usize,
    /// Connections open at once from one IP address, at most (none: no per-address cap);
    /// more are answered `429` and closed.
    pub max_connections_per_ip: Option<usize>,
    /// How long a shutdown waits for requests in flight before closing what is left.
    pub drain_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_connections: default_max_connections(),
            max_connections_per_ip: None,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// The default connection limit: 10,000 (Envoy's per listener), or half the process's
/// open-file limit when that is lower, since a proxied request holds two descriptors (the
/// client's and the upstream's) and the process needs some for its store and logs.
pub fn default_max_connections() -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
    (soft / 2).clamp(64, 10_000)
}

/// Connections a server has seen, for its metrics.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    open: AtomicUsize,
    refused_total: AtomicU64,
    refused_per_ip: AtomicU64,
}

impl ConnectionStats {
    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections refused because the server was at its connection limit.
    pub fn refused_at_limit(&self) -> u64 {
        self.refused_total.load(Ordering::Relaxed)
    }

    /// Connections refused because their address was at its own limit.
    pub fn refused_per_ip(&self) -> u64 {
        self.refused_per_ip.load(Ordering::Relaxed)
    }
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body is larger than the limit.
    #[error("the request body is larger than the limit of {0} bytes")]
    TooLarge(usize),
    /// The client did not send the whole body in time.
    #[error("the request body did not arrive within {} s", .0.as_secs_f64())]
    Timeout(Duration),
    /// The connection failed while the body was read.
    #[error("the request body could not be read: {0}")]
    Read(String),
}

/// Reads a whole request body: at most `limit` bytes, within `timeout`.
pub async fn read_body(
    body: Incoming,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, BodyError> {
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Err(_) => Err(BodyError::Timeout(timeout)),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error))
            if error
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(BodyError::TooLarge(limit))
        }
        Ok(Err(error)) => Err(BodyError::Read(error.to_string())),
    }
}

/// Connections open per client address, capped.
struct PerIp {
    cap: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in [`PerIp`]; given back when dropped.
struct IpSlot {
    per_ip: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(ip).or_insert(0);
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            per_ip: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self
            .per_ip
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Refusals being written at once, at most; past this a refused connection is just closed.
const MAX_REFUSALS_IN_FLIGHT: usize = 256;

/// Answers a connection that is over a limit with a complete HTTP response and closes it,
/// reading (and dropping) what the client sent for a moment first so that the close does not
/// reset the connection before the client has read the answer.
async fn refuse(mut stream: TcpStream, status: &str, code: &str, message: &str) {
    let body = format!(
        "{{\"error\":{{\"message\":\"{message}\",\"type\":\"overloaded_error\",\"code\":\"{code}\"}}}}"
    );
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         retry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let write = async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

/// Accepts connections until `shutdown` turns true, serving each with `service` under
/// `limits`, then drains them up to the drain deadline.
pub async fn serve<F, Fut, B, E>(
    listener: TcpListener,
    limits: ServerLimits,
    mut shutdown: watch::Receiver<bool>,
    stats: Arc<ConnectionStats>,
    service: F,
) where
    F: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT));
    let per_ip = limits.max_connections_per_ip.map(|cap| {
        Arc::new(PerIp {
            cap: cap.max(1),
            open: Mutex::new(HashMap::new()),
        })
    });
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        warn!(%error, "Accept failed.");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                    stats.refused_total.fetch_add(1, Ordering::Relaxed);
                    debug!(%peer, "Connection refused: at the connection limit.");
                    if let Ok(permit) = Arc::clone(&refusals).try_acquire_owned() {
                        tokio::spawn(async move {
                            refuse(stream, "503 Service Unavailable", "too_many_connections",
                                "the server is at its connection limit; retry later").await;
                            drop(permit);
                        });
                    }
                    continue;
                };
                let ip_slot = match &per_ip {
                    None => None,
                    Some(per_ip) => match per_ip.take(peer.ip()) {
                        Some(ip_slot) => Some(ip_slot),
                        None => {
                            stats.refused_per_ip.fetch_add(1, Ordering::Relaxed);
                            debug!(%peer, "Connection refused: its address is at its limit.");
                            if let Ok(permit) = Arc::clone(&refusals).try_acquire_owned() {
                                tokio::spawn(async move {
                                    refuse(stream, "429 Too Many Requests", "too_many_connections_from_address",
                                        "too many connections from this address; retry later").await;
                                    drop((permit, slot));
                                });
                            }
                            continue;
                        }
                    },
                };
                let _ = stream.set_nodelay(true);
                let service = service.clone();
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(limits.header_read_timeout)
                    .serve_connection(TokioIo::new(stream), service_fn(move |request| service(request, peer)));
                let connection = graceful.watch(connection);
                let stats = Arc::clone(&stats);
                stats.open.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        debug!(%error, "Connection ended with an error.");
                    }
                    stats.open.fetch_sub(1, Ordering::Relaxed);
                    drop((slot, ip_slot));
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.drain_timeout) => {
            warn!(deadline_ms = limits.drain_timeout.as_millis() as u64,
                "Drain deadline passed; closing the remaining connections.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::convert::Infallible;

    use http_body_util::Full;
    use tokio::io::AsyncBufReadExt;

    async fn start(
        limits: ServerLimits,
    ) -> (SocketAddr, watch::Sender<bool>, Arc<ConnectionStats>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = watch::channel(false);
        let stats = Arc::new(ConnectionStats::default());
        let body_timeout = limits.body_read_timeout;
        tokio::spawn(serve(
            listener,
            limits,
            rx,
            Arc::clone(&stats),
            move |request: Request<Incoming>, _| async move {
                let status = match read_body(request.into_body(), 1024, body_timeout).await {
                    Ok(_) => 200,
                    Err(BodyError::TooLarge(_)) => 413,
                    Err(BodyError::Timeout(_)) => 408,
                    Err(BodyError::Read(_)) => 400,
                };
                let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
                *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                Ok::<_, Infallible>(response)
            },
        ));
        (addr, tx, stats)
    }

    async fn status_line(stream: &mut TcpStream) -> String {
        let mut reader = tokio::io::BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        line
    }

    #[tokio::test]
    async fn a_slow_body_is_cut_off_at_the_body_timeout() {
        let (addr, _stop, _) = start(ServerLimits {
            body_read_timeout: Duration::from_millis(200),
            ..ServerLimits::default()
        })
        .await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nabc")
            .await
            .unwrap();
        let line = tokio::time::timeout(Duration::from_secs(5), status_line(&mut stream))
            .await
            .unwrap();
        assert!(line.starts_with("HTTP/1.1 408"), "{line}");
    }

    #[tokio::test]
    async fn connections_over_the_limit_are_answered_503_and_freed_slots_are_reused() {
        let (addr, _stop, stats) = start(ServerLimits {
            max_connections: 2,
            ..ServerLimits::default()
        })
        .await;
        let held: Vec<TcpStream> = vec![
            TcpStream::connect(addr).await.unwrap(),
            TcpStream::connect(addr).await.unwrap(),
        ];
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut third = TcpStream::connect(addr).await.unwrap();
        third
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let line = status_line(&mut third).await;
        assert!(line.starts_with("HTTP/1.1 503"), "{line}");
        assert_eq!(stats.refused_at_limit(), 1);
        drop(held);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut fourth = TcpStream::connect(addr).await.unwrap();
        fourth
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let line = status_line(&mut fourth).await;
        assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    }

    #[tokio::test]
    async fn one_address_is_capped_on_its_own() {
        let (addr, _stop, stats) = start(ServerLimits {
            max_connections_per_ip: Some(1),
            ..ServerLimits::default()
        })
        .await;
        let _held = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut second = TcpStream::connect(addr).await.unwrap();
        second
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let line = status_line(&mut second).await;
        assert!(line.starts_with("HTTP/1.1 429"), "{line}");
        assert_eq!(stats.refused_per_ip(), 1);
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused() {
        let (addr, _stop, _) = start(ServerLimits::default()).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let body = vec![b'x'; 2048];
        stream
            .write_all(
                format!(
                    "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        stream.write_all(&body).await.unwrap();
        let line = status_line(&mut stream).await;
        assert!(line.starts_with("HTTP/1.1 413"), "{line}");
    }

    #[test]
    fn the_default_connection_limit_leaves_descriptors_to_spare() {
        let limit = default_max_connections();
        assert!((64..=10_000).contains(&limit), "{limit}");
    }
}
