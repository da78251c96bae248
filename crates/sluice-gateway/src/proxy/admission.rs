//! Admission and routing: the body read and checked, the version chosen once from the
//! snapshot, the input guard, the shadow copy, and the request rewritten for the version.

use super::*;

/// Proxies one routed request.
pub(crate) async fn forward(
    shared: &Shared,
    endpoint: Endpoint,
    request: Request<Incoming>,
) -> Response<GatewayBody> {
    let arrived = Instant::now();
    let headers = request.headers().clone();
    let raw = match read_body(
        request,
        shared.limits.max_body_bytes,
        shared.limits.server.body_read_timeout,
    )
    .await
    {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let mut body: Map<String, Value> = match serde_json::from_slice(&raw) {
        Ok(Value::Object(map)) => map,
        Ok(_) => {
            return ApiError::InvalidRequest("the request body must be a JSON object".into())
                .into_response();
        }
        Err(e) => {
            return ApiError::InvalidRequest(format!("the request body is not valid JSON: {e}"))
                .into_response();
        }
    };
    let Some(model) = body.get("model").and_then(Value::as_str).map(str::to_owned) else {
        return ApiError::InvalidRequest("`model` is required".into()).into_response();
    };
    let snapshot = shared.snapshot.load_full();
    let Some(route) = snapshot.routes.get(&model).cloned() else {
        let known: Vec<&str> = snapshot.routes.keys().map(String::as_str).collect();
        let mut response = ApiError::NotFound(format!(
            "The model `{model}` does not exist on this gateway (routes: {}).",
            known.join(", ")
        ))
        .into_response();
        set_header(response.headers_mut(), "x-sluice-route", "none");
        return response;
    };
    let (index, request_id) = {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let user = body.get("user").and_then(Value::as_str);
        let keys = RequestKeys {
            override_version: header("x-sluice-version")
                .filter(|_| route.override_allowed(header("x-sluice-override-token"))),
            user,
            header: Some(&header),
        };
        let (index, reason) = route.pick(&keys, fastrand::f64());
        let request_id = header("x-request-id")
            .filter(|id| id.len() <= 128)
            .map_or_else(|| shared.request_id(), str::to_owned);
        debug!(
            route = model,
            version = route.versions[index].name,
            reason = reason.as_str(),
            request_id,
            "Routed."
        );
        (index, request_id)
    };
    let version = &route.versions[index];
    let input_flags = if version.safety.input {
        version.safety.input_flags(&user_text(&body))
    } else {
        Vec::new()
    };
    if version.safety.block_input && !input_flags.is_empty() {
        let metrics = version.metrics.get(&shared.metrics, &model, &version.name);
        metrics.record_injection(&input_flags);
        metrics.record_action("input_blocked");
        let mut response = json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": {
                "message": format!(
                    "The request was refused: it looks like a prompt-injection attempt ({}).",
                    input_flags.join(", ")
                ),
                "type": "invalid_request_error",
                "param": "messages",
                "code": "content_filter",
            }}),
        );
        let headers = response.headers_mut();
        set_header(headers, "x-sluice-version", &version.name);
        set_header(headers, "x-sluice-route", &model);
        set_header(headers, "x-request-id", &request_id);
        return response;
    }
    if shared.log.is_some() {
        shared
            .recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(request_id.clone(), model.clone(), version.name.clone());
    }
    let primary = shadow_copy(
        shared,
        &route,
        version,
        endpoint,
        &body,
        &model,
        &request_id,
    );
    let stream = body.get("stream").and_then(Value::as_bool) == Some(true)
        && endpoint != Endpoint::Embeddings;
    let strip_usage = stream && !client_wants_usage(&body);
    rewrite(&mut body, version, endpoint, stream);
    let metrics = version.metrics.get(&shared.metrics, &model, &version.name);
    metrics.begin();
    let scanner = version
        .safety
        .is_active()
        .then(|| Arc::clone(&version.safety));
    let capture_limit = if !stream {
        COLLECT_LIMIT
    } else if shared.log.is_some() || primary.is_some() || scanner.is_some() {
        STREAM_CAPTURE_LIMIT
    } else {
        0
    };
    let finish = Finish {
        metrics,
        in_flight: Arc::clone(&shared.in_flight),
        log: shared.log.clone().map(|log| {
            (
                log,
                Entry {
                    request_id: request_id.clone(),
                    route: model.clone(),
                    version: version.name.clone(),
                    request: raw,
                },
            )
        }),
        primary,
        scanner,
        input_flags,
        version: version.name.clone(),
        stream,
        capture: Vec::new(),
        text: None,
        capture_limit,
        arrived,
        upstream_started: Instant::now(),
        upstream_ended: None,
        ttft: None,
        class: None,
        prompt_tokens: 0,
        completion_tokens: 0,
    };
    shared.in_flight.fetch_add(1, Ordering::Relaxed);
    let mut response = send(
        shared,
        version,
        endpoint,
        &body,
        &request_id,
        stream,
        strip_usage,
        finish,
    )
    .await;
    let headers = response.headers_mut();
    set_header(headers, "x-sluice-version", &version.name);
    set_header(headers, "x-sluice-route", &model);
    set_header(headers, "x-request-id", &request_id);
    response
}

/// Queues a shadow copy of a sampled request and returns where its primary answer goes.
pub(super) fn shadow_copy(
    shared: &Shared,
    route: &crate::route::Route,
    serving: &Version,
    endpoint: Endpoint,
    body: &Map<String, Value>,
    route_name: &str,
    request_id: &str,
) -> Option<oneshot::Sender<Primary>> {
    let shadow = route.shadow.as_ref()?;
    if shadow.version == serving.name || fastrand::f64() * 100.0 >= shadow.percent {
        return None;
    }
    let version = route.versions.get(route.index(&shadow.version)?)?;
    let mut copy = body.clone();
    copy.remove("stream");
    copy.remove("stream_options");
    rewrite(&mut copy, version, endpoint, false);
    let (sender, receiver) = oneshot::channel();
    let job = Job {
        route: route_name.to_owned(),
        version: version.clone(),
        endpoint,
        body: copy,
        request_id: request_id.to_owned(),
        primary: receiver,
        embedding_model: shadow.embedding_model.clone(),
    };
    match shared.shadow.try_send(job) {
        Ok(()) => Some(sender),
        Err(_) => {
            shared
                .metrics
                .shadow_dropped
                .fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// What the user wrote: the text of `user` and `tool` messages (chat) or the prompt
/// (completions), one part per line.
pub(super) fn user_text(body: &Map<String, Value>) -> String {
    let mut parts: Vec<&str> = Vec::new();
    fn texts<'a>(content: &'a Value, parts: &mut Vec<&'a str>) {
        match content {
            Value::String(text) => parts.push(text),
            Value::Array(items) => {
                for item in items {
                    match item {
                        Value::String(text) => parts.push(text),
                        Value::Object(part) => {
                            if let Some(text) = part.get("text").and_then(Value::as_str) {
                                parts.push(text);
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(messages) = body.get("messages").and_then(Value::as_array) {
        for message in messages {
            let role = message.get("role").and_then(Value::as_str);
            if matches!(role, Some("user" | "tool"))
                && let Some(content) = message.get("content")
            {
                texts(content, &mut parts);
            }
        }
    }
    if let Some(prompt) = body.get("prompt") {
        texts(prompt, &mut parts);
    }
    parts.join("\n")
}

pub(super) fn set_header(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

pub(super) fn client_wants_usage(body: &Map<String, Value>) -> bool {
    body.get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        == Some(true)
}

/// Rewrites the client's request for `version`.
pub(super) fn rewrite(
    body: &mut Map<String, Value>,
    version: &Version,
    endpoint: Endpoint,
    stream: bool,
) {
    body.insert("model".into(), Value::String(version.model.clone()));
    if endpoint == Endpoint::Chat
        && let Some(system) = &version.system_prompt
        && let Some(Value::Array(messages)) = body.get_mut("messages")
    {
        messages.insert(0, json!({"role": "system", "content": system}));
    }
    for (key, value) in &version.params {
        body.entry(key.clone()).or_insert_with(|| value.clone());
    }
    if stream {
        let options = body
            .entry("stream_options")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(options) = options {
            options.insert("include_usage".into(), Value::Bool(true));
        }
    }
}
