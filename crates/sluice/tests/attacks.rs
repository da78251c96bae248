//! What an attacker or a careless client can do to Sluice's servers and commands, and what
//! they must not achieve: choose a version without a credential, roll a healthy canary back
//! with malformed requests, hold the gateway with slow bodies or a flood of connections,
//! drive the admin API from another site, or crash a command by closing its output.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly on setup errors"
)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::{Gateway, OVERRIDE_TOKEN, Simulate, ask, exchange, read_request, sluice};

const SIM: &str = "models:
  stable: {default: stable answer}
  candidate: {default: candidate answer}
";

/// A simulator and a gateway with a `chat` route (all traffic on stable) and `extra` config.
fn setup(split: &str, extra: &str) -> (tempfile::TempDir, Simulate, Gateway) {
    let dir = tempfile::tempdir().unwrap();
    let sim_path = dir.path().join("sim.yaml");
    std::fs::write(&sim_path, SIM).unwrap();
    let sim = Simulate::with_config(&sim_path);
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "routes:
  chat:
    versions:
      - {{name: stable, url: \"{sim}\", model: stable}}
      - {{name: candidate, url: \"{sim}\", model: candidate}}
    split: {{weights: {{stable: 100, candidate: 0}}{split}}}
{extra}",
            sim = sim.base_url
        ),
    )
    .unwrap();
    let gateway = Gateway::start(&config, &dir.path().join("sluice.db"));
    (dir, sim, gateway)
}

fn address(gateway: &Gateway) -> String {
    gateway
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/v1")
        .to_owned()
}

fn admin_address(gateway: &Gateway) -> String {
    gateway.admin.trim_start_matches("http://").to_owned()
}

/// The version that answered a raw chat request with these extra header lines.
fn version_for(gateway: &Gateway, headers: &str) -> String {
    let response = exchange(
        &address(gateway),
        "POST /v1/chat/completions HTTP/1.1",
        &format!("content-type: application/json\r\n{headers}"),
        r#"{"model":"chat","messages":[{"role":"user","content":"hi"}]}"#,
    );
    response
        .lines()
        .find_map(|l| l.strip_prefix("x-sluice-version: "))
        .unwrap_or_else(|| panic!("no version header: {response}"))
        .trim()
        .to_owned()
}

/// Waits (up to 10 s) until the gateway's `/metrics` holds `line`.
fn until_metrics_show(gateway: &Gateway, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = exchange(&admin_address(gateway), "GET /metrics HTTP/1.1", "", "");
        if metrics.contains(line) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/metrics never showed {line:?}: {metrics}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"))
}

#[test]
fn the_version_header_is_ignored_without_the_override_credential() {
    // Off by default: a header alone never picks the candidate.
    let (_dir, _sim, gateway) = setup("", "");
    assert_eq!(
        version_for(&gateway, "x-sluice-version: candidate\r\n"),
        "stable"
    );
    drop(gateway);

    let (_dir, _sim, gateway) = setup(
        ", overrides: true, override_token_env: SLUICE_TEST_OVERRIDE_TOKEN",
        "",
    );
    assert_eq!(
        version_for(&gateway, "x-sluice-version: candidate\r\n"),
        "stable",
        "no credential"
    );
    assert_eq!(
        version_for(
            &gateway,
            "x-sluice-version: candidate\r\nx-sluice-override-token: guess\r\n"
        ),
        "stable",
        "a wrong credential"
    );
    assert_eq!(
        version_for(
            &gateway,
            &format!(
                "x-sluice-version: candidate\r\nx-sluice-override-token: {OVERRIDE_TOKEN}\r\n"
            )
        ),
        "candidate"
    );
}

#[test]
fn overrides_without_any_credential_are_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        "routes:\n  chat:\n    versions: [{name: v1, url: \"http://127.0.0.1:9/v1\", model: m}]\n    split: {overrides: true}\n",
    )
    .unwrap();
    let output = sluice()
        .args([
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "-c",
        ])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("gateway.yaml:4:") && stderr.contains("need a credential"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_do_not_count_against_a_version() {
    let (_dir, _sim, gateway) = setup("", "");
    // 200 requests the upstream rejects as malformed (`max_tokens: -1`): the client's fault.
    let client = reqwest::Client::new();
    for _ in 0..200 {
        let response = client
            .post(format!("{}/chat/completions", gateway.url))
            .json(&serde_json::json!({"model": "chat", "max_tokens": -1,
                "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 400);
    }
    let windows = common::windows(&gateway).await;
    let stable = &windows["windows"]["chat"]["stable"];
    assert_eq!(stable["requests"], 200, "{stable:#}");
    assert_eq!(stable["client_errors"], 200, "{stable:#}");
    assert_eq!(stable["error_rate"], 0.0, "{stable:#}");
}

#[test]
fn a_slow_body_is_cut_off_and_a_flood_of_connections_is_refused_clearly() {
    let (_dir, _sim, gateway) = setup(
        "",
        "limits: {body_read_timeout_ms: 300, max_connections: 20, max_connections_per_ip: 15}\n",
    );
    let address = address(&gateway);

    // A body that never completes gets 408 once its time is up.
    let mut slow = TcpStream::connect(&address).unwrap();
    write!(
        slow,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"model\""
    )
    .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    let mut response = String::new();
    let _ = slow.read_to_string(&mut response);
    assert_eq!(status_of(&response), 408, "{response}");
    assert!(started.elapsed() < Duration::from_secs(3));

    // Connections that hold their place: past 15 from one address, 429.
    let held: Vec<TcpStream> = (0..15)
        .map(|_| {
            let mut stream = TcpStream::connect(&address).unwrap();
            stream
                .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
                .unwrap();
            stream
        })
        .collect();
    // Once the gateway holds exactly those 15 (the admin listener counts apart), one more.
    until_metrics_show(&gateway, "sluice_gateway_connections_open 15\n");
    let response = exchange(&address, "GET /health HTTP/1.1", "", "");
    assert_eq!(status_of(&response), 429, "{response}");
    assert!(
        response.contains("too_many_connections_from_address"),
        "{response}"
    );
    drop(held);
    let metrics = exchange(&admin_address(&gateway), "GET /metrics HTTP/1.1", "", "");
    assert!(
        metrics.contains(
            "sluice_gateway_connections_refused_total{limit=\"max_connections_per_ip\"} 1"
        ),
        "{metrics}"
    );

    // When they are gone, the gateway serves again.
    until_metrics_show(&gateway, "sluice_gateway_connections_open 0\n");
    assert_eq!(version_for(&gateway, ""), "stable");
}

#[test]
fn the_admin_api_refuses_what_another_site_could_send() {
    let (_dir, _sim, gateway) = setup("", "");
    let admin = admin_address(&gateway);
    // A form post from a page elsewhere: refused for its origin.
    let response = exchange(
        &admin,
        "POST /admin/reload HTTP/1.1",
        "origin: http://evil.example\r\ncontent-type: text/plain\r\n",
        "",
    );
    assert_eq!(status_of(&response), 403, "{response}");
    // The same without an origin (some browsers omit it): refused for its content type.
    let response = exchange(
        &admin,
        "PUT /admin/routes/chat/weights HTTP/1.1",
        "content-type: text/plain\r\n",
        r#"{"stable": 0, "candidate": 100}"#,
    );
    assert_eq!(status_of(&response), 415, "{response}");
    // A rebinding name pointing at loopback: refused for its host (no token is set).
    let mut stream = TcpStream::connect(&admin).unwrap();
    write!(
        stream,
        "GET /admin/routes HTTP/1.1\r\nhost: evil.example:8081\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert_eq!(status_of(&response), 403, "{response}");
    // Nothing changed: all traffic is still on stable.
    assert_eq!(version_for(&gateway, ""), "stable");
    // A same-origin JSON call works.
    let response = exchange(
        &admin,
        "PUT /admin/routes/chat/weights HTTP/1.1",
        &format!("origin: http://{admin}\r\ncontent-type: application/json\r\n"),
        r#"{"stable": 0, "candidate": 100}"#,
    );
    assert_eq!(status_of(&response), 200, "{response}");
    assert_eq!(version_for(&gateway, ""), "candidate");
}

#[test]
fn a_closed_standard_output_ends_a_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("sluice.db");
    for args in [
        vec!["store", "info"],
        vec!["validate", "--format", "json", "."],
    ] {
        let mut child = sluice()
            .arg("--store")
            .arg(&store)
            .args(&args)
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before the command writes anything.
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_ne!(output.status.code(), Some(101), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("Broken pipe"),
            "{args:?}: a closed pipe is not an error: {stderr}"
        );
    }
}

#[test]
fn an_alias_bomb_and_invalid_utf8_are_located_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    // Nine levels of nine aliases: 387 million strings from about 600 bytes.
    let mut bomb = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for pair in names.windows(2) {
        let refs = vec![format!("*{}", pair[0]); 9].join(",");
        bomb.push_str(&format!("{}: &{} [{refs}]\n", pair[1], pair[1]));
    }
    bomb.push_str("providers: [echo]\nprompts: [\"{{q}}\"]\ntests: [{vars: {q: hi}}]\n");
    let config = dir.path().join("promptfooconfig.yaml");
    // `sluice eval` on `text`: it must exit 2; its standard error.
    let refused = |text: &[u8]| {
        std::fs::write(&config, text).unwrap();
        let output = sluice()
            .arg("--store")
            .arg(dir.path().join("sluice.db"))
            .args(["eval", "-c"])
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        stderr
    };
    let started = Instant::now();
    let stderr = refused(bomb.as_bytes());
    assert!(
        stderr.contains("promptfooconfig.yaml:") && stderr.contains("alias bomb"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let stderr = refused(b"providers: [echo]\nprompts: [\"caf\xe9\"]\n");
    assert!(
        stderr.contains("promptfooconfig.yaml:2:") && stderr.contains("invalid UTF-8"),
        "{stderr}"
    );
}

/// An upstream that breaks its answers in the ways real servers do, chosen by the model name:
/// `short` declares more bytes than it sends, `stall` stops mid-body, `notjson` answers 200
/// with HTML, `cut` streams two events and closes without `[DONE]`.
fn broken_upstream() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // Headers, then the body they announce.
                loop {
                    let Ok(n) = stream.read(&mut buf) else { return };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request);
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length: ")
                                    .map(|v| v.trim().parse().unwrap())
                            })
                            .unwrap_or(0);
                        if body.len() >= length {
                            break;
                        }
                    }
                }
                let text = String::from_utf8_lossy(&request).to_string();
                let model = ["short", "stall", "notjson", "cut"]
                    .into_iter()
                    .find(|m| text.contains(&format!("\"model\":\"{m}\"")))
                    .unwrap_or("short");
                let json_head = |length: usize| {
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n"
                    )
                };
                let partial = r#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Par"#;
                let _ = match model {
                    "short" => stream.write_all(format!("{}{partial}", json_head(500)).as_bytes()),
                    "stall" => {
                        let _ = stream.write_all(format!("{}{partial}", json_head(500)).as_bytes());
                        std::thread::sleep(Duration::from_secs(3));
                        Ok(())
                    }
                    // A complete answer from a server that then closes says so; otherwise the
                    // gateway may reuse the connection for the next request as it closes.
                    "notjson" => {
                        let html = "<html><body>502 Bad Gateway</body></html>";
                        stream.write_all(
                            format!("HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{html}", html.len()).as_bytes(),
                        )
                    }
                    _ => stream.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n\
                          data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n\
                          data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}]}\n\n",
                    ),
                };
            });
        }
    });
    format!("http://{address}/v1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_upstream_answers_never_reach_the_client_as_success() {
    let upstream = broken_upstream();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.yaml");
    let mut routes = String::from("routes:\n");
    for model in ["short", "stall", "notjson", "cut"] {
        routes.push_str(&format!(
            "  {model}:\n    versions: [{{name: v, url: \"{upstream}\", model: {model}, timeouts: {{total_ms: 1000}}}}]\n"
        ));
    }
    std::fs::write(&config, routes).unwrap();
    let gateway = Gateway::start(&config, &dir.path().join("sluice.db"));
    let client = reqwest::Client::new();
    let ask = |model: &str, stream: bool| {
        client
            .post(format!("{}/chat/completions", gateway.url))
            .json(&serde_json::json!({"model": model, "stream": stream,
                "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };
    for (model, status) in [("short", 502), ("stall", 504), ("notjson", 502)] {
        let response = ask(model, false).await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{model}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"]["message"].is_string(), "{model}: {body}");
    }
    // A stream that broke after its first byte: an error event, and no `[DONE]`.
    let response = ask("cut", true).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let text = response.text().await.unwrap();
    assert!(text.contains("Hel") && text.contains("\"error\""), "{text}");
    assert!(!text.contains("[DONE]"), "{text}");

    let windows = common::windows(&gateway).await;
    for (route, class) in [
        ("short", "5xx"),
        ("stall", "timeout"),
        ("notjson", "5xx"),
        ("cut", "5xx"),
    ] {
        let window = &windows["windows"][route]["v"];
        assert_eq!(window["requests"], 1, "{route}: {window:#}");
        assert_eq!(window["error_rate"], 1.0, "{route}: {window:#}");
        assert!(
            window["classes"]
                .as_object()
                .unwrap()
                .keys()
                .any(|k| k == class || (class == "5xx" && k == "server_error")),
            "{route}: {window:#}"
        );
    }
}

/// A planted value, how it is sent, and what must not be stored (the value as a reader would
/// take it: digits only for numbers).
struct Planted {
    /// The request body's `messages`, as raw JSON (so escapes reach the gateway as written).
    messages: String,
    /// Forms that must appear nowhere in the stored log.
    forbidden: Vec<String>,
}

fn one(content: &str, forbidden: &[&str]) -> Planted {
    Planted {
        messages: format!(r#"[{{"role":"user","content":"{content}"}}]"#),
        forbidden: forbidden.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// Full-width digits for `digits`.
fn wide(digits: &str) -> String {
    digits
        .chars()
        .map(|c| {
            c.to_digit(10)
                .map_or(c, |d| char::from_u32(0xFF10 + d).unwrap())
        })
        .collect()
}

/// Every digit of `digits` JSON-escaped.
fn escaped(text: &str) -> String {
    text.chars()
        .map(|c| format!("\\u{:04x}", c as u32))
        .collect()
}

fn corpus() -> Vec<Planted> {
    let mut planted = Vec::new();
    // Emails: plain, case, tags, escaped `@` and `.`, full-width `@`, in a system message.
    for email in [
        "ada.lovelace@example.com",
        "GRACE.HOPPER@NAVY.MIL",
        "alan+turing@bletchley.org.uk",
    ] {
        planted.push(one(&format!("write to {email} today"), &[email]));
        planted.push(one(
            &format!("write to {} today", email.replace('@', "\\u0040")),
            &[email],
        ));
        planted.push(one(
            &format!("write to {} today", email.replace('@', "＠")),
            &[email],
        ));
    }
    planted.push(one(
        "mail me: linus\\u0040kernel\\u002eorg",
        &["linus@kernel.org"],
    ));
    planted.push(Planted {
        messages: r#"[{"role":"system","content":"Escalate to ops@corp.example.net"},{"role":"user","content":"hi"}]"#.into(),
        forbidden: vec!["ops@corp.example.net".into()],
    });
    // Cards, as test numbers of each issuer, written every way people write them.
    for card in [
        "4111111111111111",
        "5555555555554444",
        "378282246310005",
        "6011111111111117",
        "4012888888881881",
    ] {
        let groups: Vec<String> = card
            .as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        planted.push(one(&format!("card {card} ok"), &[card]));
        planted.push(one(&format!("card {} ok", groups.join(" ")), &[card]));
        planted.push(one(&format!("card {} ok", groups.join("-")), &[card]));
        planted.push(one(&format!("card {} ok", groups.join("\\n")), &[card]));
        planted.push(one(&format!("card {} ok", wide(card)), &[card]));
        planted.push(one(&format!("card {} ok", escaped(card)), &[card]));
        // Split across two parts of one message, and across two messages.
        let (head, tail) = (groups[..2].join(" "), groups[2..].join(" "));
        planted.push(Planted {
            messages: format!(r#"[{{"role":"user","content":[{{"type":"text","text":"card {head} "}},{{"type":"text","text":"{tail} thanks"}}]}}]"#),
            forbidden: vec![card.into()],
        });
        planted.push(Planted {
            messages: format!(r#"[{{"role":"user","content":"card {head}"}},{{"role":"user","content":"{tail}"}}]"#),
            forbidden: vec![card.into()],
        });
    }
    // Keys as their providers issue them, short OpenAI-style ones too, and escaped.
    for key in [
        "sk-proj-Zx81bQ2mN4pL7rT9vW3yK6aB",
        "sk-9fQ2xT7bL4mZ",
        "sk-ant-api03-Xy7Qw2Er9Ty4Ui1Op8As5Df3Gh6Jk0LzXcVbNm",
        "AKIAQ3EGXY7WZPLM4TSR",
        "ghp_a8F3kQ9mZ2xL7pR4tW1vY6bN0cJ5dH8eG3sU",
        "AIzaSyB7x2Kq9mZ4pL1tW8vR3yN6cJ0dH5eG2sU",
        "xoxb-2847561938-Qm8ZpL3xK7tW",
    ] {
        planted.push(one(&format!("my key is {key}"), &[key]));
        planted.push(one(
            &format!(
                "my key is {}",
                key.replace('-', "\\u002d").replace('_', "\\u005f")
            ),
            &[key],
        ));
    }
    planted.push(one(
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9abcdef0123",
        &["eyJhbGciOiJIUzI1NiJ9abcdef0123"],
    ));
    // Other personal data.
    planted.push(one("ssn 123-45-6789", &["123-45-6789"]));
    planted.push(one(
        "iban GB82 WEST 1234 5698 7654 32",
        &["GB82 WEST 1234 5698 7654 32"],
    ));
    planted.push(one("call +1 415 555 2671", &["415 555 2671"]));
    planted
}

/// The stored log's text as a reader would take it: JSON decoded, NFKC, digits kept with
/// their separators and also alone.
fn readable(logged: &[Value]) -> String {
    let mut text = String::new();
    fn walk(value: &Value, out: &mut String) {
        match value {
            Value::String(s) => {
                // Stored strings can hold JSON (the request): decode it too.
                if let Ok(inner) = serde_json::from_str::<Value>(s) {
                    walk(&inner, out);
                }
                out.push_str(s);
                out.push('\n');
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            Value::Object(map) => map.values().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    logged.iter().for_each(|v| walk(v, &mut text));
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    format!("{text}\n{digits}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_planted_value_reaches_the_request_log_however_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let sim_path = dir.path().join("sim.yaml");
    std::fs::write(&sim_path, "models:\n  echo: {default: echo}\n").unwrap();
    let sim = Simulate::with_config(&sim_path);
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "routes:\n  chat:\n    versions: [{{name: echo, url: \"{}\", model: echo}}]\n",
            sim.base_url
        ),
    )
    .unwrap();
    let mut gateway = Gateway::start(&config, &dir.path().join("sluice.db"));
    let planted = corpus();
    assert!(planted.len() >= 50, "{} variants", planted.len());
    let client = reqwest::Client::new();
    for (i, p) in planted.iter().enumerate() {
        let body = format!(
            r#"{{"model":"chat","user":"u{i}","messages":{}}}"#,
            p.messages
        );
        let response = client
            .post(format!("{}/chat/completions", gateway.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status().as_u16(),
            200,
            "variant {i}: {}",
            p.messages
        );
    }
    gateway.signal("-TERM");
    assert!(gateway.child.wait().unwrap().success());
    let store = sluice_store::Store::open_sqlite(&dir.path().join("sluice.db"))
        .await
        .unwrap();
    let logged: Vec<Value> = store
        .events("gateway:chat", 0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.payload)
        .collect();
    assert_eq!(logged.len(), planted.len());
    for (i, (p, entry)) in planted.iter().zip(&logged).enumerate() {
        let text = readable(std::slice::from_ref(entry));
        for forbidden in &p.forbidden {
            let digits: String = forbidden.chars().filter(char::is_ascii_digit).collect();
            let leaked = text.contains(forbidden.as_str())
                || text.to_lowercase().contains(&forbidden.to_lowercase())
                || (digits.len() >= 9 && text.contains(&digits));
            assert!(!leaked, "variant {i} leaked {forbidden}: {}", p.messages);
        }
    }
}

/// An upstream that answers each request on a keep-alive connection and closes it a moment
/// later without saying `connection: close`; its base URL.
fn closing_upstream() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                if read_request(&mut stream).is_some() {
                    let body = r#"{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
        }
    });
    url
}

/// An upstream that closes idle connections without saying so races every reuse of a pooled
/// connection: the request that finds its connection reset never reached the upstream and is
/// sent again on a new one, so no client sees an error.
#[test]
fn an_upstream_closing_idle_connections_costs_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "routes:\n  chat:\n    versions:\n      - {{name: v1, url: \"{}\", model: m}}\n",
            closing_upstream()
        ),
    )
    .unwrap();
    let gateway = Gateway::start(&config, &dir.path().join("sluice.db"));
    let answers: Vec<String> = (0..40).map(|_| ask(&gateway.url, "u", "")).collect();
    let failed: Vec<&String> = answers.iter().filter(|a| *a != "hi").collect();
    assert!(
        failed.is_empty(),
        "{} of 40 failed: {:?}",
        failed.len(),
        failed.first()
    );
}
