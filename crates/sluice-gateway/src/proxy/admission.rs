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
    let mut body = match ClientBody::parse(&raw) {
        Ok(body) => body,
        Err(e) => return ApiError::InvalidRequest(e.to_string()).into_response(),
    };
    let Some(model) = body.str_field("model").map(Cow::into_owned) else {
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
        let user = body.str_field("user");
        let keys = RequestKeys {
            override_version: header("x-sluice-version")
                .filter(|_| route.override_allowed(header("x-sluice-override-token"))),
            user: user.as_deref(),
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
        version.safety.input_flags(&body.user_text())
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
    let stream = body.bool_field("stream") == Some(true) && endpoint != Endpoint::Embeddings;
    let strip_usage = stream && !body.wants_usage();
    body.rewrite(version, endpoint, stream);
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
                    request: raw.clone(),
                },
            )
        }),
        primary,
        scanner,
        input_flags,
        recorder: Arc::clone(&shared.recorder),
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
        trace: shared.tracer.as_ref().map(|tracer| {
            Box::new(Trace {
                tracer: Arc::clone(tracer),
                context: crate::otlp::SpanContext::child_of(
                    headers.get("traceparent").and_then(|v| v.to_str().ok()),
                ),
                started: std::time::SystemTime::now()
                    .checked_sub(arrived.elapsed())
                    .unwrap_or_else(std::time::SystemTime::now),
                operation: endpoint.operation(),
                request_model: version.model.clone(),
                route: model.clone(),
                request_id: request_id.clone(),
            })
        }),
        response_model: None,
        finish_reasons: Vec::new(),
        tool_calls: false,
        price: version.price,
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
    body: &ClientBody<'_>,
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
    copy.rewrite(version, endpoint, false);
    let (sender, receiver) = oneshot::channel();
    let job = Job {
        route: route_name.to_owned(),
        version: version.clone(),
        endpoint,
        body: Bytes::from(copy.to_bytes()),
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

pub(super) fn set_header(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}
