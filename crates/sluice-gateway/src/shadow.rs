//! Shadow mirroring: a sampled request is copied, rewritten for the route's shadow version and
//! queued (a bounded queue; a full queue drops the copy and counts it). A worker sends it —
//! never streamed, at most [`CONCURRENT`] at once — waits for the primary's answer, compares
//! the two, and records the comparison in the shadow version's window and, with a store, as a
//! `shadow` event carrying both latencies. Nothing here can delay, change or fail the primary.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};
use sluice_store::NewEvent;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::{debug, warn};

use crate::client::{Post, ReadError, read_to_end};
use crate::log::answer_text;
use crate::metrics::{Class, Observation};
use crate::proxy::{Endpoint, Shared};
use crate::route::Version;
use crate::similarity::compare;

/// Shadow requests in flight at once, at most.
pub(crate) const CONCURRENT: usize = 16;
/// How long a shadow comparison waits for the primary's answer.
const PRIMARY_WAIT: Duration = Duration::from_secs(600);

/// The primary's answer, as its request path hands it over.
#[derive(Debug)]
pub(crate) struct Primary {
    pub response: Vec<u8>,
    pub stream: bool,
    pub latency: Duration,
    pub class: Class,
    pub version: String,
}

/// One shadow copy.
pub(crate) struct Job {
    pub route: String,
    pub version: Version,
    pub endpoint: Endpoint,
    /// The request, rewritten for the shadow version.
    pub body: Bytes,
    pub request_id: String,
    pub primary: oneshot::Receiver<Primary>,
    /// The embedding model for the cosine comparison, if any.
    pub embedding_model: Option<String>,
}

/// Runs queued shadow copies until the queue closes.
pub(crate) async fn run(shared: Arc<Shared>, mut jobs: mpsc::Receiver<Job>) {
    let slots = Arc::new(Semaphore::new(CONCURRENT));
    while let Some(job) = jobs.recv().await {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            break;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            process(&shared, job).await;
            drop(permit);
        });
    }
}

async fn process(shared: &Shared, job: Job) {
    let metrics = job
        .version
        .metrics
        .get(&shared.metrics, &job.route, &job.version.name);
    metrics.begin();
    let started = Instant::now();
    let outcome = send(shared, &job).await;
    let latency = started.elapsed();
    let (class, shadow_text, status) = match outcome {
        Ok((status, bytes)) if (200..300).contains(&status) => {
            (Class::Ok, Some(answer_text(&bytes, false)), status)
        }
        Ok((status, _)) => (Class::of_status(status), None, status),
        Err(class) => (class, None, 0),
    };
    metrics.record(&Observation {
        class,
        latency,
        ttft: None,
        overhead: Duration::ZERO,
        prompt_tokens: 0,
        completion_tokens: 0,
        cost_usd: None,
    });
    let primary = match tokio::time::timeout(PRIMARY_WAIT, job.primary).await {
        Ok(Ok(primary)) => primary,
        _ => {
            debug!(
                request_id = job.request_id,
                "No primary answer to compare the shadow with."
            );
            return;
        }
    };
    let similarity = match (&shadow_text, primary.class) {
        (Some(shadow), Class::Ok) => {
            let primary_text = answer_text(&primary.response, primary.stream);
            let mut similarity = compare(&primary_text, shadow);
            if let Some(model) = &job.embedding_model {
                similarity.cosine =
                    embedding_cosine(shared, &job.version, model, &primary_text, shadow).await;
            }
            metrics.record_shadow(&similarity);
            Some(similarity)
        }
        _ => None,
    };
    if let Some(store) = &shared.store {
        let event = NewEvent {
            subject: format!("gateway:{}", job.route),
            kind: "shadow".into(),
            payload: json!({
                "request_id": job.request_id,
                "route": job.route,
                "primary_version": primary.version,
                "shadow_version": job.version.name,
                "primary_class": primary.class.as_str(),
                "shadow_class": class.as_str(),
                "shadow_status": status,
                "primary_latency_ms": primary.latency.as_secs_f64() * 1000.0,
                "shadow_latency_ms": latency.as_secs_f64() * 1000.0,
                "exact": similarity.map(|s| s.exact),
                "token_f1": similarity.map(|s| s.token_f1),
                "rouge_l": similarity.map(|s| s.rouge_l),
                "embedding_cosine": similarity.and_then(|s| s.cosine),
            }),
        };
        if let Err(error) = store.append_events(vec![event]).await {
            warn!(%error, "Cannot store a shadow comparison.");
        }
    }
}

/// Embeds both answers with `model` on the shadow version's upstream and returns their
/// cosine; `None` (and a warning) when the upstream cannot.
async fn embedding_cosine(
    shared: &Shared,
    version: &Version,
    model: &str,
    primary: &str,
    shadow: &str,
) -> Option<f64> {
    let body = json!({"model": model, "input": [primary, shadow]});
    let post = Post {
        base: version.upstreams.next(),
        path: "embeddings",
        api_key: version.api_key.as_ref(),
        request_id: None,
        traceparent: None,
        shadow: true,
        body: Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
    };
    let (status, bytes) = match exchange(shared, version, post).await {
        Ok(answer) => answer,
        Err(class) => {
            warn!(
                class = class.as_str(),
                model, "The shadow's embedding request failed."
            );
            return None;
        }
    };
    if !(200..300).contains(&status) {
        warn!(status, model, "The shadow's embedding request failed.");
        return None;
    }
    let answer: Value = serde_json::from_slice(&bytes).ok()?;
    let vector = |i: usize| -> Option<Vec<f64>> {
        answer
            .get("data")?
            .get(i)?
            .get("embedding")?
            .as_array()?
            .iter()
            .map(Value::as_f64)
            .collect()
    };
    Some(crate::similarity::cosine(&vector(0)?, &vector(1)?))
}

async fn send(shared: &Shared, job: &Job) -> Result<(u16, Bytes), Class> {
    let post = Post {
        base: job.version.upstreams.next(),
        path: job.endpoint.path(),
        api_key: job.version.api_key.as_ref(),
        request_id: Some(&job.request_id),
        traceparent: None,
        shadow: true,
        body: job.body.clone(),
    };
    exchange(shared, &job.version, post).await
}

/// Sends `post` to `version` and reads the whole answer within the version's total timeout;
/// a failure is the class it would have had as a served request.
async fn exchange(
    shared: &Shared,
    version: &Version,
    post: Post<'_>,
) -> Result<(u16, Bytes), Class> {
    let client = shared.client(version.timeouts.connect);
    let deadline = tokio::time::Instant::now() + version.timeouts.total;
    let response = match tokio::time::timeout_at(deadline, client.post(post)).await {
        Err(_) => return Err(Class::Timeout),
        Ok(Err(e)) if e.is_timeout() => return Err(Class::Timeout),
        Ok(Err(_)) => return Err(Class::UpstreamConnect),
        Ok(Ok(response)) => response,
    };
    let status = response.status().as_u16();
    let mut body = Vec::new();
    match read_to_end(
        response.into_body(),
        SHADOW_ANSWER_LIMIT,
        deadline,
        &mut body,
    )
    .await
    {
        Ok(()) => Ok((status, Bytes::from(body))),
        Err(ReadError::Timeout) => Err(Class::Timeout),
        Err(_) => Err(Class::ServerError),
    }
}

/// Largest shadow answer read.
const SHADOW_ANSWER_LIMIT: usize = 64 << 20;
