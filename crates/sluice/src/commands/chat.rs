//! `sluice chat`: one request, the answer on stdout, timing on stderr (or all as JSON).

use std::time::Duration;

use anyhow::Context;
use sluice_core::EndpointSpec;
use sluice_llm::types::{ChatMessage, ChatRequest};
use sluice_llm::{Client, ClientConfig, Generation, RetryPolicy, Timeouts};

use super::Outcome;
use crate::cli::ChatArgs;

pub async fn run(args: ChatArgs) -> anyhow::Result<Outcome> {
    let seconds = |value: f64, flag: &str| -> anyhow::Result<Duration> {
        Duration::try_from_secs_f64(value)
            .with_context(|| format!("{flag} must be a non-negative number of seconds"))
    };
    let endpoint =
        EndpointSpec::new(&args.base_url, &args.model).with_api_key_env(args.api_key_env.clone());
    let mut config = ClientConfig::for_endpoint(&endpoint, |name| std::env::var(name).ok())?;
    config.timeouts = Timeouts {
        first_token: args
            .ttft_timeout_s
            .map(|s| seconds(s, "--ttft-timeout-s"))
            .transpose()?,
        total: seconds(args.timeout_s, "--timeout-s")?,
        ..Timeouts::default()
    };
    config.retry = RetryPolicy {
        max_retries: args.max_retries,
        ..RetryPolicy::default()
    };
    let client = Client::new(config)?;
    let mut messages = Vec::new();
    if let Some(system) = &args.system {
        messages.push(ChatMessage::new("system", system.clone()));
    }
    messages.push(ChatMessage::new("user", args.prompt.clone()));
    let request = ChatRequest {
        model: endpoint.model.clone(),
        messages,
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        seed: args.seed,
        ..ChatRequest::default()
    };
    let generation = if args.no_stream {
        client.chat(&request).await?
    } else {
        client.chat_stream(&request).await?
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&generation)?);
    } else {
        print_text(&generation, !args.no_stream);
    }
    Ok(Outcome::Ok)
}

fn print_text(generation: &Generation, streamed: bool) {
    if !generation.reasoning.is_empty() {
        eprintln!("[reasoning] {}", generation.reasoning);
    }
    outln!("{}", generation.text);
    for call in &generation.tool_calls {
        outln!(
            "[tool call] {}({})",
            call.function.name,
            call.function.arguments
        );
    }
    let timing = &generation.timing;
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    let mut parts = vec![
        format!("model {}", generation.model),
        if streamed {
            "streamed".into()
        } else {
            "not streamed".into()
        },
    ];
    if let Some(ttft) = timing.ttft {
        parts.push(format!("TTFT {}", ms(ttft)));
    }
    parts.push(format!("end-to-end {}", ms(timing.e2e)));
    if let Some(tokens) = generation.tokens {
        let source = serde_json::to_value(tokens.completion_source)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        parts.push(format!("{} output tokens ({source})", tokens.completion));
    }
    if let Some(reason) = &generation.finish_reason {
        parts.push(format!("finish {reason}"));
    }
    if generation.attempts > 1 {
        parts.push(format!("{} attempts", generation.attempts));
    }
    eprintln!("-- {}", parts.join(" · "));
}
