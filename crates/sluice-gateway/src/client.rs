//! The upstream HTTP client: HTTP/1.1 over TCP or TLS (Mozilla's roots), one connection pool
//! per connect timeout, requests built from the version's base URL without a URL parser on
//! the request path, and failures sorted into "took too long" and "could not be reached".

use std::error::Error as _;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// A pooled upstream client; clones share the pool.
#[derive(Clone)]
pub(crate) struct UpstreamClient {
    inner: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// Keeps no idle connections: a request sent again after its pooled connection was found
    /// closed goes out on a new one.
    fresh: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// Why an upstream request got no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// The URL is not one a request can be sent to.
    #[error("invalid upstream URL `{url}`: {source}")]
    Url {
        url: String,
        #[source]
        source: hyper::http::Error,
    },
    /// Connecting or exchanging failed; `timeout` when it was for lack of time.
    #[error("{}", sluice_core::error_chain(.0))]
    Failed(#[source] hyper_util::client::legacy::Error),
}

impl SendError {
    /// Whether the request failed for lack of time (the connect timeout), not a refusal.
    pub(crate) fn is_timeout(&self) -> bool {
        let SendError::Failed(error) = self else {
            return false;
        };
        let mut cause = error.source();
        while let Some(error) = cause {
            if let Some(io) = error.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::TimedOut
            {
                return true;
            }
            cause = error.source();
        }
        false
    }
}

/// One upstream POST.
pub(crate) struct Post<'a> {
    /// The version's base URL (with `/v1`, no trailing slash).
    pub base: &'a str,
    /// The endpoint's path under it (`chat/completions`).
    pub path: &'a str,
    pub api_key: Option<&'a sluice_core::Secret>,
    pub request_id: Option<&'a str>,
    /// The W3C trace context of the gateway's span, passed on.
    pub traceparent: Option<&'a str>,
    /// Marks a shadow copy.
    pub shadow: bool,
    /// The JSON body.
    pub body: Bytes,
}

impl UpstreamClient {
    /// A client whose connections give up connecting after `connect`.
    pub(crate) fn new(connect: Duration) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect));
        let https = HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_timer(TokioTimer::new())
            .build(https.clone());
        let fresh = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(https);
        Self { inner, fresh }
    }

    /// Sends `post` and returns the answer's head; its body arrives as it is read.
    ///
    /// A request that finds its pooled connection closed by the upstream (reset, or closed
    /// before any answer) is sent once more on a new connection: an upstream that closes idle
    /// connections without saying `connection: close` races every reuse, and the request never
    /// reached it. Connect failures and timeouts are not sent again.
    pub(crate) async fn post(&self, post: Post<'_>) -> Result<Response<Incoming>, SendError> {
        let request = build(&post)?;
        match self.inner.request(request).await {
            Err(error) if closed_under_us(&error) => self
                .fresh
                .request(build(&post)?)
                .await
                .map_err(SendError::Failed),
            answer => answer.map_err(SendError::Failed),
        }
    }
}

/// Whether an exchange failed because the connection was closed or reset before any answer
/// (not while connecting).
fn closed_under_us(error: &hyper_util::client::legacy::Error) -> bool {
    if error.is_connect() {
        return false;
    }
    let mut cause = error.source();
    while let Some(error) = cause {
        if let Some(hyper) = error.downcast_ref::<hyper::Error>()
            && (hyper.is_incomplete_message() || hyper.is_canceled())
        {
            return true;
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionAborted
            )
        {
            return true;
        }
        cause = error.source();
    }
    false
}

/// The request for `post`: its URL, JSON content type, request id, shadow mark and key.
fn build(post: &Post<'_>) -> Result<Request<Full<Bytes>>, SendError> {
    let url = format!("{}/{}", post.base, post.path);
    let mut request =
        Request::post(&url).header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(id) = post.request_id {
        request = request.header("x-request-id", id);
    }
    if let Some(traceparent) = post.traceparent {
        request = request.header("traceparent", traceparent);
    }
    if post.shadow {
        request = request.header("x-sluice-shadow", HeaderValue::from_static("true"));
    }
    if let Some(key) = post.api_key {
        let mut value = HeaderValue::try_from(format!("Bearer {}", key.expose())).map_err(|e| {
            SendError::Url {
                url: url.clone(),
                source: e.into(),
            }
        })?;
        value.set_sensitive(true);
        request = request.header(AUTHORIZATION, value);
    }
    request
        .body(Full::new(post.body.clone()))
        .map_err(|source| SendError::Url { url, source })
}

/// Why a body could not be read whole.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("the answer did not end before the deadline")]
    Timeout,
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
    #[error("{}", sluice_core::error_chain(.0))]
    Broken(#[source] hyper::Error),
}

/// Reads `body` whole, up to `limit` bytes, before `deadline`.
pub(crate) async fn read_to_end(
    mut body: Incoming,
    limit: usize,
    deadline: tokio::time::Instant,
    into: &mut Vec<u8>,
) -> Result<(), ReadError> {
    use http_body_util::BodyExt;
    loop {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(ReadError::Timeout),
            Ok(None) => return Ok(()),
            Ok(Some(Err(e))) => return Err(ReadError::Broken(e)),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    if into.len() + data.len() > limit {
                        return Err(ReadError::TooLarge(limit));
                    }
                    into.extend_from_slice(&data);
                }
            }
        }
    }
}
