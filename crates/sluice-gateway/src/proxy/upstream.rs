//! The upstream exchange: the request sent under the version's timeouts, an error status
//! passed on, a whole answer read and checked before any of it is sent, a stream handed to
//! the relay.

use super::*;

#[allow(
    clippy::too_many_arguments,
    reason = "one call site, every argument distinct"
)]
pub(super) async fn send(
    shared: &Shared,
    version: &Version,
    endpoint: Endpoint,
    body: &ClientBody<'_>,
    request_id: &str,
    stream: bool,
    strip_usage: bool,
    mut finish: Finish,
) -> Response<GatewayBody> {
    let client = shared.client(version.timeouts.connect);
    let traceparent = finish.trace.as_ref().map(|t| t.context.traceparent());
    let upstream = client.post(Post {
        base: version.upstreams.next(),
        path: endpoint.path(),
        api_key: version.api_key.as_ref(),
        request_id: Some(request_id),
        traceparent: traceparent.as_deref(),
        shadow: false,
        body: Bytes::from(body.to_bytes()),
    });
    finish.upstream_started = Instant::now();
    let deadline = finish.upstream_started + version.timeouts.total;
    let first = version.timeouts.ttft.min(version.timeouts.total);
    let answer = match tokio::time::timeout(first, upstream).await {
        Err(_) => {
            return finish.fail(ApiError::Timeout(format!(
                "version `{}` did not answer within {} ms",
                version.name,
                first.as_millis()
            )));
        }
        Ok(Err(e)) => {
            warn!(version = version.name, error = %e, "Upstream request failed.");
            let message = format!("version `{}` could not be reached: {e}", version.name);
            return finish.fail(if e.is_timeout() {
                ApiError::Timeout(message)
            } else {
                ApiError::Unreachable(message)
            });
        }
        Ok(Ok(answer)) => answer,
    };
    let status = answer.status();
    let content_type = answer.headers().get(CONTENT_TYPE).cloned();
    let retry_after = answer.headers().get(RETRY_AFTER).cloned();
    if !status.is_success() {
        let class = Class::of_status(status.as_u16());
        let mut text = Vec::new();
        // What could be read of an error answer is passed on; a broken one is still an error.
        let _ = crate::client::read_to_end(
            answer.into_body(),
            COLLECT_LIMIT,
            deadline.into(),
            &mut text,
        )
        .await;
        let text = Bytes::from(text);
        finish.capture = text.to_vec();
        finish.end(class);
        let openai_shaped = serde_json::from_slice::<Value>(&text)
            .ok()
            .is_some_and(|v| v.get("error").is_some());
        let mut response = if openai_shaped {
            full(status, "application/json", text)
        } else {
            let snippet: String = String::from_utf8_lossy(&text).chars().take(200).collect();
            ApiError::Upstream {
                status,
                message: format!("version `{}` answered {status}: {snippet}", version.name),
            }
            .into_response()
        };
        if let Some(value) = retry_after {
            response.headers_mut().insert(RETRY_AFTER, value);
        }
        return response;
    }
    if !stream {
        let scanner = version.safety.guards().then_some(&*version.safety);
        return whole(scanner, answer, deadline, status, content_type, finish).await;
    }
    let guard = (stream && version.safety.guards()).then(|| {
        Box::new(EventGuard::new(
            Arc::clone(&version.safety),
            Arc::clone(&finish.metrics),
            endpoint == Endpoint::Chat,
        ))
    });
    let first_chunk_deadline = finish.upstream_started + first;
    let body = ProxyBody {
        guard,
        ready: VecDeque::new(),
        upstream: answer.into_body(),
        buffer: BytesMut::new(),
        strip_usage,
        saw_done: false,
        deadline: Box::pin(tokio::time::sleep_until(
            first_chunk_deadline.min(deadline).into(),
        )),
        total_deadline: deadline,
        waiting_first: true,
        finish: Some(finish),
        ended: false,
    };
    let mut response = Response::new(GatewayBody::Proxy(Box::new(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        content_type.unwrap_or_else(|| HeaderValue::from_static("application/json")),
    );
    headers.insert("cache-control", HeaderValue::from_static("no-cache"));
    response
}

/// Reads a whole non-streamed answer before any of it is sent, so that an answer the upstream
/// cuts short, stalls past the total timeout, or that is not JSON reaches the client as 502 or
/// 504 (never as a 200 with a broken body), and so that the version's safety action can
/// redact or withhold it (a guarded answer is read up to [`COLLECT_LIMIT`], any other up to
/// [`MAX_ANSWER_BYTES`]).
pub(super) async fn whole(
    scanner: Option<&sluice_safety::Scanner>,
    answer: Response<Incoming>,
    deadline: Instant,
    status: StatusCode,
    content_type: Option<HeaderValue>,
    mut finish: Finish,
) -> Response<GatewayBody> {
    let limit = if scanner.is_some() {
        COLLECT_LIMIT
    } else {
        MAX_ANSWER_BYTES
    };
    let mut body = Vec::new();
    match crate::client::read_to_end(answer.into_body(), limit, deadline.into(), &mut body).await {
        Ok(()) => {}
        Err(ReadError::Timeout) => {
            finish.capture = body;
            return finish.fail(ApiError::Timeout(
                "the upstream timed out before the end of the answer".into(),
            ));
        }
        Err(ReadError::Broken(e)) => {
            warn!(error = %e, "Upstream body failed.");
            finish.capture = body;
            return finish.fail(ApiError::Broken(format!(
                "the upstream answer broke off: {e}"
            )));
        }
        Err(ReadError::TooLarge(_)) => {
            let why = if scanner.is_some() {
                "the most the safety scanner reads; it was withheld"
            } else {
                "the most the gateway passes on"
            };
            return finish.fail(ApiError::Broken(format!(
                "the answer is larger than {} KiB, {why}",
                limit / 1024
            )));
        }
    }
    finish.upstream_ended = Some(Instant::now());
    let view = match sluice_llm::wire::answer(&body) {
        Ok(view) => view,
        Err(e) => {
            warn!("The upstream answered {status} with a body that is not JSON.");
            finish.capture = body;
            return finish.fail(ApiError::Broken(format!(
                "the upstream answered {status} with a body that is not JSON: {e}"
            )));
        }
    };
    if let Some(usage) = view.usage {
        finish.set_usage(usage);
    }
    finish.note_answer(
        view.model.as_deref(),
        view.finish_reason.as_deref(),
        view.tool_calls,
    );
    finish.text = Some(view.text);
    let response = match scanner {
        Some(scanner) => {
            // The body was just read as JSON: only the guard needs it as a tree.
            let mut value: Value = serde_json::from_slice(&body).unwrap_or_default();
            if let Some(action) = crate::guard::whole(scanner, &mut value) {
                finish.metrics.record_action(action);
            }
            json_response(status, &value)
        }
        None => {
            let bytes = Bytes::from(std::mem::take(&mut body));
            body = bytes[..bytes.len().min(COLLECT_LIMIT)].to_vec();
            let mut response = Response::new(GatewayBody::Full(Some(bytes)));
            *response.status_mut() = status;
            response.headers_mut().insert(
                CONTENT_TYPE,
                content_type.unwrap_or_else(|| HeaderValue::from_static("application/json")),
            );
            response
        }
    };
    body.truncate(COLLECT_LIMIT);
    finish.capture = body;
    finish.end(Class::Ok);
    response
}
