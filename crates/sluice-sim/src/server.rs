//! The simulator's HTTP server: OpenAI routes, the admin endpoint, limits and graceful drain.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use serde_json::json;
use sluice_http::{ResponseBody, ServerLimits};
use sluice_llm::types::{
    ChatChoice, ChatCompletion, ChatRequest, CompletionRequest, Embedding, EmbeddingRequest,
    EmbeddingResponse, ErrorBody, ErrorDetail, FunctionCall, ModelInfo, ModelList, ResponseMessage,
    TextChoice, TextCompletion, ToolCall, Usage, stop_sequences, wants_usage,
};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep};
use tracing::{debug, info};

use crate::clock::sleep_until;
use crate::config::{Profile, SimConfig, Stall};
use crate::embed::embed;
use crate::profile::{Outcome, Plan, Prompt};
use crate::text;

/// The largest request body accepted.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a client may take to send a request body.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shutdown waits for in-flight requests before giving up on them.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// A configured simulator, ready to bind.
pub struct Simulator {
    state: Arc<State>,
}

struct State {
    profiles: RwLock<BTreeMap<String, Arc<Profile>>>,
    fallback: Arc<Profile>,
    accept_any_model: bool,
    embedding_dimensions: usize,
    seed: Option<u64>,
    requests: AtomicU64,
    shutdown: watch::Receiver<bool>,
    /// When the server started: the origin of periodic stalls.
    epoch: Instant,
}

/// A running simulator.
pub struct SimServer {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Simulator {
    /// A simulator for `config`; with a `seed`, latencies, faults and ids are reproducible.
    pub fn new(config: SimConfig, seed: Option<u64>) -> (Self, watch::Sender<bool>) {
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let profiles = config
            .models
            .into_iter()
            .map(|(name, profile)| (name, Arc::new(profile)))
            .collect();
        let state = State {
            profiles: RwLock::new(profiles),
            fallback: Arc::new(Profile::echo()),
            accept_any_model: config.accept_any_model,
            embedding_dimensions: config.embedding_dimensions,
            seed,
            requests: AtomicU64::new(0),
            shutdown: shutdown_rx,
            epoch: Instant::now(),
        };
        (
            Self {
                state: Arc::new(state),
            },
            shutdown_tx,
        )
    }

    /// Binds `addr` (port 0 picks a free port) and starts serving in the background.
    pub async fn start(
        config: SimConfig,
        seed: Option<u64>,
        addr: SocketAddr,
    ) -> io::Result<SimServer> {
        let (simulator, shutdown) = Self::new(config, seed);
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let task = tokio::spawn(simulator.serve(listener));
        info!(%local_addr, "Simulator listening (a test and demo tool, not a model).");
        Ok(SimServer {
            local_addr,
            shutdown,
            task,
        })
    }

    async fn serve(self, listener: TcpListener) {
        let limits = ServerLimits {
            header_read_timeout: HEADER_READ_TIMEOUT,
            body_read_timeout: BODY_READ_TIMEOUT,
            drain_timeout: DRAIN_DEADLINE,
            ..ServerLimits::default()
        };
        let shutdown = self.state.shutdown.clone();
        let state = self.state;
        sluice_http::serve(
            listener,
            limits,
            shutdown,
            Arc::default(),
            move |request, _peer| handle(state.clone(), request),
        )
        .await;
        info!("Simulator stopped.");
    }
}

impl SimServer {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The OpenAI base URL, `http://ADDR/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.local_addr)
    }

    /// Stops accepting, lets in-flight requests finish (up to a deadline), and returns.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

type HandlerResult = Result<Response<ResponseBody>, io::Error>;

/// A ready error response, boxed to keep `Result`s small.
type Rejection = Box<Response<ResponseBody>>;

fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::Full(Some(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert("x-sluice-simulator", HeaderValue::from_static("true"));
    response
}

fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response<ResponseBody> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    response(status, "application/json", Bytes::from(body))
}

fn error_response(
    status: StatusCode,
    kind: &str,
    code: Option<&str>,
    message: impl Into<String>,
) -> Response<ResponseBody> {
    let body = ErrorBody {
        error: ErrorDetail {
            message: message.into(),
            kind: Some(kind.to_owned()),
            param: None,
            code: code.map(|c| serde_json::Value::String(c.to_owned())),
        },
    };
    json_response(status, &body)
}

fn reject(
    status: StatusCode,
    kind: &str,
    code: Option<&str>,
    message: impl Into<String>,
) -> Rejection {
    Box::new(error_response(status, kind, code, message))
}

async fn handle(state: Arc<State>, request: Request<Incoming>) -> HandlerResult {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    debug!(%method, path, "Simulator request.");
    match (&method, path.as_str()) {
        (&Method::POST, "/v1/chat/completions") => chat(&state, request).await,
        (&Method::POST, "/v1/completions") => completions(&state, request).await,
        (&Method::POST, "/v1/embeddings") => embeddings(&state, request).await,
        (&Method::GET, "/v1/models") => Ok(models(&state)),
        (&Method::GET, "/health") => Ok(response(
            StatusCode::OK,
            "text/plain",
            Bytes::from_static(b"ok\n"),
        )),
        (_, admin) if admin.starts_with("/admin/models") => admin_models(&state, request).await,
        _ => Ok(error_response(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("not_found"),
            format!("no route for {method} {path}"),
        )),
    }
}

async fn read_body(request: Request<Incoming>) -> Result<Bytes, Rejection> {
    use sluice_http::BodyError;
    sluice_http::read_body(request.into_body(), MAX_BODY_BYTES, BODY_READ_TIMEOUT)
        .await
        .map_err(|error| {
            let status = match error {
                BodyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
                BodyError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
                BodyError::Read(_) => StatusCode::BAD_REQUEST,
            };
            reject(status, "invalid_request_error", None, error.to_string())
        })
}

async fn parse_body<T: serde::de::DeserializeOwned>(
    request: Request<Incoming>,
) -> Result<T, Rejection> {
    let body = read_body(request).await?;
    serde_json::from_slice(&body).map_err(|error| {
        reject(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            None,
            format!("invalid JSON body: {error}"),
        )
    })
}

impl State {
    fn profile(&self, model: &str) -> Result<Arc<Profile>, Rejection> {
        let profiles = self
            .profiles
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match profiles.get(model) {
            Some(profile) => Ok(profile.clone()),
            None if self.accept_any_model => Ok(self.fallback.clone()),
            None => Err(reject(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("model_not_found"),
                format!(
                    "The model `{model}` does not exist on this simulator (configured: {}).",
                    profiles.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )),
        }
    }

    /// A request number and a random generator for it, reproducible under a seed.
    fn next_request(&self) -> (u64, fastrand::Rng) {
        let number = self.requests.fetch_add(1, Ordering::Relaxed);
        let rng = match self.seed {
            Some(seed) => {
                fastrand::Rng::with_seed(seed ^ number.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            }
            None => fastrand::Rng::new(),
        };
        (number, rng)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Which endpoint a generation answers, for the shape of its JSON.
#[derive(Clone, Copy, PartialEq)]
enum Endpoint {
    Chat,
    Completions,
}

struct Generation {
    endpoint: Endpoint,
    id: String,
    model: String,
    created: u64,
    plan: Plan,
    include_usage: bool,
    /// The profile's periodic stall and the server's start.
    stall: Option<(Stall, Instant)>,
}

impl Generation {
    /// When something due at `due` goes out, after any stall.
    fn release(&self, due: Instant) -> Instant {
        match &self.stall {
            Some((stall, epoch)) => {
                Instant::from_std(stall.release(epoch.into_std(), due.into_std()))
            }
            None => due,
        }
    }
}

async fn chat(state: &State, request: Request<Incoming>) -> HandlerResult {
    let started = Instant::now();
    let body: ChatRequest = match parse_body(request).await {
        Ok(body) => body,
        Err(response) => return Ok(*response),
    };
    if body.messages.is_empty() {
        return Ok(error_response(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            None,
            "`messages` must not be empty",
        ));
    }
    let matched = body
        .messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .or(body.messages.last())
        .map(|m| m.text())
        .unwrap_or_default();
    let prompt_tokens = body.messages.iter().map(|m| text::count(&m.text())).sum();
    let stop = stop_sequences(body.stop.as_ref());
    let all = body
        .messages
        .iter()
        .map(|m| m.text())
        .collect::<Vec<_>>()
        .join("\n");
    let prompt = Prompt {
        matched: &matched,
        all: &all,
        prompt_tokens,
        user_turns: body.messages.iter().filter(|m| m.role == "user").count(),
        max_tokens: body.output_token_cap(),
        stop: &stop,
    };
    let include_usage = wants_usage(body.stream_options.as_ref());
    generate(
        state,
        Endpoint::Chat,
        &body.model,
        &prompt,
        body.stream.unwrap_or(false),
        include_usage,
        started,
    )
    .await
}

async fn completions(state: &State, request: Request<Incoming>) -> HandlerResult {
    let started = Instant::now();
    let body: CompletionRequest = match parse_body(request).await {
        Ok(body) => body,
        Err(response) => return Ok(*response),
    };
    let matched = body.prompt.as_slice().join("\n");
    let stop = stop_sequences(body.stop.as_ref());
    let prompt = Prompt {
        matched: &matched,
        all: &matched,
        prompt_tokens: text::count(&matched),
        user_turns: 1,
        max_tokens: Some(body.max_tokens.unwrap_or(16)),
        stop: &stop,
    };
    let include_usage = wants_usage(body.stream_options.as_ref());
    generate(
        state,
        Endpoint::Completions,
        &body.model,
        &prompt,
        body.stream.unwrap_or(false),
        include_usage,
        started,
    )
    .await
}

async fn generate(
    state: &State,
    endpoint: Endpoint,
    model: &str,
    prompt: &Prompt<'_>,
    stream: bool,
    include_usage: bool,
    started: Instant,
) -> HandlerResult {
    let profile = match state.profile(model) {
        Ok(profile) => profile,
        Err(response) => return Ok(*response),
    };
    let (number, mut rng) = state.next_request();
    let plan = match profile.plan(prompt, &mut rng) {
        Outcome::Answer(plan) => plan,
        Outcome::Error {
            status,
            retry_after_s,
        } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let (kind, code) = match status.as_u16() {
                429 => ("rate_limit_exceeded", "rate_limit_exceeded"),
                400..=499 => ("invalid_request_error", "simulated_error"),
                _ => ("server_error", "simulated_error"),
            };
            let mut response = error_response(
                status,
                kind,
                Some(code),
                format!("Simulated {status} from the simulator's fault profile."),
            );
            if let Some(seconds) = retry_after_s
                && let Ok(value) = HeaderValue::from_str(&format_seconds(seconds))
            {
                response.headers_mut().insert(RETRY_AFTER, value);
            }
            return Ok(response);
        }
        Outcome::Hang(duration) => {
            let mut shutdown = state.shutdown.clone();
            tokio::select! {
                () = sleep(duration) => {}
                _ = shutdown.changed() => {}
            }
            return Err(io::Error::other("simulated hang ended"));
        }
    };
    let generation = Generation {
        endpoint,
        id: format!(
            "{}-sim-{number}",
            if endpoint == Endpoint::Chat {
                "chatcmpl"
            } else {
                "cmpl"
            }
        ),
        model: model.to_owned(),
        created: unix_now(),
        plan,
        include_usage,
        stall: profile.faults.stall.map(|stall| (stall, state.epoch)),
    };
    if stream {
        Ok(stream_response(generation, started))
    } else {
        sleep_until(generation.release(started + generation.plan.finished_at())).await;
        Ok(full_response(generation))
    }
}

fn format_seconds(seconds: f64) -> String {
    if seconds.fract() == 0.0 {
        format!("{}", seconds as u64)
    } else {
        format!("{seconds}")
    }
}

fn usage(plan: &Plan) -> Usage {
    let completion_tokens = plan.completion_tokens();
    Usage {
        prompt_tokens: plan.prompt_tokens,
        completion_tokens,
        total_tokens: plan.prompt_tokens + completion_tokens,
    }
}

fn full_response(generation: Generation) -> Response<ResponseBody> {
    let Generation {
        endpoint,
        id,
        model,
        created,
        plan,
        ..
    } = generation;
    if plan.malformed || plan.truncate {
        let broken = format!(
            "{{\"id\": \"{id}\", \"object\": \"chat.completion\", \"choices\": [{{\"index\": 0, \"message\": "
        );
        return response(StatusCode::OK, "application/json", Bytes::from(broken));
    }
    let usage = Some(usage(&plan));
    match endpoint {
        Endpoint::Chat => {
            let tool_calls = plan.tool_call.as_ref().map(|(name, arguments)| {
                vec![ToolCall {
                    id: format!("call_{id}"),
                    kind: "function".to_owned(),
                    function: FunctionCall {
                        name: name.clone(),
                        arguments: arguments.clone(),
                    },
                }]
            });
            let body = ChatCompletion {
                id,
                object: "chat.completion".to_owned(),
                created,
                model,
                choices: vec![ChatChoice {
                    index: 0,
                    message: ResponseMessage {
                        role: "assistant".to_owned(),
                        content: if tool_calls.is_some() {
                            None
                        } else {
                            Some(plan.text())
                        },
                        reasoning_content: None,
                        tool_calls,
                    },
                    finish_reason: Some(plan.finish_reason.to_owned()),
                }],
                usage,
            };
            json_response(StatusCode::OK, &body)
        }
        Endpoint::Completions => {
            let body = TextCompletion {
                id,
                object: "text_completion".to_owned(),
                created,
                model,
                choices: vec![TextChoice {
                    index: 0,
                    text: plan.text(),
                    finish_reason: Some(plan.finish_reason.to_owned()),
                }],
                usage,
            };
            json_response(StatusCode::OK, &body)
        }
    }
}

fn sse(value: &serde_json::Value) -> Bytes {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(value.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

impl Generation {
    fn chunk(&self, choice: serde_json::Value) -> serde_json::Value {
        let object = if self.endpoint == Endpoint::Chat {
            "chat.completion.chunk"
        } else {
            "text_completion"
        };
        let mut chunk = json!({"id": self.id, "object": object, "created": self.created, "model": self.model, "choices": [choice]});
        if self.include_usage {
            chunk["usage"] = serde_json::Value::Null;
        }
        chunk
    }

    fn content_choice(&self, piece: &str) -> serde_json::Value {
        match self.endpoint {
            Endpoint::Chat => {
                json!({"index": 0, "delta": {"content": piece}, "finish_reason": null})
            }
            Endpoint::Completions => json!({"index": 0, "text": piece, "finish_reason": null}),
        }
    }

    fn finish_choice(&self) -> serde_json::Value {
        match self.endpoint {
            Endpoint::Chat => {
                json!({"index": 0, "delta": {}, "finish_reason": self.plan.finish_reason})
            }
            Endpoint::Completions => {
                json!({"index": 0, "text": "", "finish_reason": self.plan.finish_reason})
            }
        }
    }
}

fn stream_response(generation: Generation, started: Instant) -> Response<ResponseBody> {
    let (sender, receiver) = mpsc::channel::<Bytes>(32);
    tokio::spawn(async move {
        let _ = produce_stream(&generation, started, &sender).await;
    });
    let mut response = Response::new(ResponseBody::Stream(receiver));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert("cache-control", HeaderValue::from_static("no-cache"));
    headers.insert("x-sluice-simulator", HeaderValue::from_static("true"));
    response
}

/// Sends the chunks of a streamed answer at their due times; an `Err` means the client left.
async fn produce_stream(
    generation: &Generation,
    started: Instant,
    sender: &mpsc::Sender<Bytes>,
) -> Result<(), mpsc::error::SendError<Bytes>> {
    let plan = &generation.plan;
    if generation.endpoint == Endpoint::Chat {
        sender.send(sse(&generation.chunk(json!({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null})))).await?;
    }
    let steps = plan.due.len();
    let fault_at = steps / 2;
    for (index, due) in plan.due.iter().enumerate() {
        if index == fault_at && index > 0
            || steps == 1 && (plan.truncate || plan.malformed || plan.stream_error)
        {
            if plan.truncate {
                return Ok(());
            }
            if plan.malformed {
                sender
                    .send(Bytes::from_static(
                        b"data: {\"choices\": [{\"delta\": {\"content\": \"x\"}\n\n",
                    ))
                    .await?;
                return Ok(());
            }
            if plan.stream_error {
                let error = json!({"error": {"message": "Simulated mid-stream failure.", "type": "server_error", "code": "simulated_error"}});
                sender.send(sse(&error)).await?;
                return Ok(());
            }
        }
        sleep_until(generation.release(started + *due)).await;
        let choice = match &plan.tool_call {
            Some((name, arguments)) => {
                json!({"index": 0, "delta": {"tool_calls": [{"index": 0, "id": format!("call_{}", generation.id), "type": "function", "function": {"name": name, "arguments": arguments}}]}, "finish_reason": null})
            }
            None => match plan.pieces.get(index) {
                Some(piece) => generation.content_choice(piece),
                None => continue,
            },
        };
        sender.send(sse(&generation.chunk(choice))).await?;
    }
    sender
        .send(sse(&generation.chunk(generation.finish_choice())))
        .await?;
    if generation.include_usage {
        let usage_chunk = json!({
            "id": generation.id,
            "object": if generation.endpoint == Endpoint::Chat { "chat.completion.chunk" } else { "text_completion" },
            "created": generation.created,
            "model": generation.model,
            "choices": [],
            "usage": usage(plan),
        });
        sender.send(sse(&usage_chunk)).await?;
    }
    sender.send(Bytes::from_static(b"data: [DONE]\n\n")).await
}

async fn embeddings(state: &State, request: Request<Incoming>) -> HandlerResult {
    let body: EmbeddingRequest = match parse_body(request).await {
        Ok(body) => body,
        Err(response) => return Ok(*response),
    };
    if let Err(response) = state.profile(&body.model) {
        return Ok(*response);
    }
    let dimensions = match body.extra.get("dimensions") {
        None => state.embedding_dimensions,
        Some(value) => match value.as_u64().filter(|d| (1..=65_536).contains(d)) {
            Some(d) => d as usize,
            None => {
                return Ok(error_response(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    None,
                    "`dimensions` must be an integer between 1 and 65536",
                ));
            }
        },
    };
    let inputs = body.input.as_slice();
    let prompt_tokens = inputs.iter().map(|input| text::count(input)).sum();
    let data = inputs
        .iter()
        .enumerate()
        .map(|(index, input)| Embedding {
            object: "embedding".to_owned(),
            index: index as u32,
            embedding: embed(input, dimensions),
        })
        .collect();
    let response = EmbeddingResponse {
        object: "list".to_owned(),
        data,
        model: body.model,
        usage: Some(Usage {
            prompt_tokens,
            completion_tokens: 0,
            total_tokens: prompt_tokens,
        }),
    };
    Ok(json_response(StatusCode::OK, &response))
}

fn models(state: &State) -> Response<ResponseBody> {
    let profiles = state
        .profiles
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let data = profiles
        .keys()
        .map(|name| ModelInfo {
            id: name.clone(),
            object: "model".to_owned(),
            created: 0,
            owned_by: "sluice-simulator".to_owned(),
        })
        .collect();
    json_response(
        StatusCode::OK,
        &ModelList {
            object: "list".to_owned(),
            data,
        },
    )
}

async fn admin_models(state: &State, request: Request<Incoming>) -> HandlerResult {
    let path = request.uri().path().to_owned();
    let name = path
        .trim_start_matches("/admin/models")
        .trim_start_matches('/')
        .to_owned();
    let method = request.method().clone();
    match (method, name.is_empty()) {
        (Method::GET, true) => {
            let profiles = state
                .profiles
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let listing: BTreeMap<&String, _> = profiles
                .iter()
                .map(|(name, profile)| (name, &profile.raw))
                .collect();
            Ok(json_response(StatusCode::OK, &listing))
        }
        (Method::GET, false) => {
            let profiles = state
                .profiles
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            Ok(match profiles.get(&name) {
                Some(profile) => json_response(StatusCode::OK, &profile.raw),
                None => error_response(
                    StatusCode::NOT_FOUND,
                    "invalid_request_error",
                    Some("model_not_found"),
                    format!("no profile named `{name}`"),
                ),
            })
        }
        (Method::PUT, false) => {
            let body = match read_body(request).await {
                Ok(body) => body,
                Err(response) => return Ok(*response),
            };
            let text = String::from_utf8_lossy(&body);
            match Profile::from_text(&format!("profile `{name}`"), &text) {
                Ok(profile) => {
                    info!(model = name, "Simulator profile replaced.");
                    state
                        .profiles
                        .write()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .insert(name.clone(), Arc::new(profile));
                    Ok(json_response(
                        StatusCode::OK,
                        &json!({"model": name, "status": "replaced"}),
                    ))
                }
                Err(diagnostics) => Ok(error_response(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    Some("invalid_profile"),
                    diagnostics.to_string(),
                )),
            }
        }
        (Method::DELETE, false) => {
            let removed = state
                .profiles
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .remove(&name)
                .is_some();
            Ok(if removed {
                json_response(StatusCode::OK, &json!({"model": name, "status": "removed"}))
            } else {
                error_response(
                    StatusCode::NOT_FOUND,
                    "invalid_request_error",
                    Some("model_not_found"),
                    format!("no profile named `{name}`"),
                )
            })
        }
        (method, _) => Ok(error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            None,
            format!("{method} is not allowed on {path}; use GET, PUT or DELETE /admin/models/NAME"),
        )),
    }
}
