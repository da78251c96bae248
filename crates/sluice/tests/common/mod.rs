//! Helpers shared by the end-to-end tests: the binary with a clean environment, and a
//! `sluice simulate` child process on a free loopback port.

#![allow(
    dead_code,
    clippy::unwrap_used,
    reason = "each test binary uses a different part of the helpers, which fail loudly"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary, with no inherited settings.
/// The credential test gateways want in `x-sluice-override-token` (their configs name
/// `SLUICE_TEST_OVERRIDE_TOKEN` as `override_token_env`).
pub const OVERRIDE_TOKEN: &str = "test-override-token";

/// The header lines that let a request choose `version` on a test gateway.
pub fn override_to(version: &str) -> String {
    format!("x-sluice-version: {version}\r\nx-sluice-override-token: {OVERRIDE_TOKEN}\r\n")
}

pub fn sluice() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .env_remove("RUST_LOG")
        .env_remove("SLUICE_STORE")
        .env_remove("SLUICE_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITHUB_STEP_SUMMARY")
        .env_remove("GITHUB_OUTPUT")
        .env_remove("SLUICE_NEEDS")
        .env_remove("SLUICE_OUTPUT")
        .env_remove("SLUICE_PIPELINE_STATUS")
        .env_remove("SLUICE_CACHE_DIR")
        // Runs here change simulator profiles between runs: no answers from earlier runs.
        .env("SLUICE_NO_CACHE", "true")
        // Gateways in the tests honour `x-sluice-version` from requests that carry this.
        .env("SLUICE_TEST_OVERRIDE_TOKEN", OVERRIDE_TOKEN);
    command
}

/// Spawns a server whose stdout is piped; returns it with its first line (the banner) and the
/// rest of its lines.
pub fn spawn_with_banner(
    command: &mut Command,
) -> (
    Child,
    String,
    std::io::Lines<BufReader<std::process::ChildStdout>>,
) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    (child, first, lines)
}

/// The repository's examples folder.
pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// A running simulator, killed when dropped.
pub struct Simulate {
    child: Child,
    /// Its base URL, with `/v1`.
    pub base_url: String,
}

impl Simulate {
    /// Starts one with `examples/sim.yaml`.
    pub fn start() -> Self {
        Self::with_config(&examples().join("sim.yaml"))
    }

    /// Starts one with this config.
    pub fn with_config(config: &Path) -> Self {
        let config = config.to_str().unwrap();
        Self::with_args(&["--seed", "3", "--config", config])
    }

    /// Starts one with these `sluice simulate` arguments (on a free port).
    pub fn with_args(args: &[&str]) -> Self {
        let mut command = sluice();
        command
            .args(["simulate", "--listen", "127.0.0.1:0"])
            .args(args);
        let (child, first, lines) = spawn_with_banner(&mut command);
        let base_url = first.rsplit(' ').next().unwrap().to_owned();
        assert!(base_url.starts_with("http://127.0.0.1:"), "{first}");
        std::thread::spawn(move || lines.for_each(drop));
        Self { child, base_url }
    }

    /// Sends SIGTERM and waits (up to 10 s) for the process to exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "simulate did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Replaces a model's profile through the admin endpoint (a raw HTTP/1.1 PUT).
    pub fn put_profile(&self, model: &str, yaml: &str) {
        let address = self
            .base_url
            .trim_start_matches("http://")
            .trim_end_matches("/v1");
        let response = exchange(
            address,
            &format!("PUT /admin/models/{model} HTTP/1.1"),
            "",
            yaml,
        );
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }
}

impl Drop for Simulate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `python3` can import the official `openai` SDK. When it cannot, the caller skips
/// its test with a message, unless `SLUICE_REQUIRE_OPENAI_SDK` is set (as in CI), which fails.
pub fn openai_sdk_available() -> bool {
    let has_sdk = Command::new("python3")
        .args(["-c", "import openai"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_sdk {
        assert!(
            std::env::var_os("SLUICE_REQUIRE_OPENAI_SDK").is_none(),
            "the openai Python SDK is required here (pip install openai)"
        );
        eprintln!("skipped: the openai Python SDK is not installed (pip install openai)");
    }
    has_sdk
}

/// A running `sluice gateway`, killed when dropped.
pub struct Gateway {
    /// The process.
    pub child: Child,
    /// `http://ADDR/v1`.
    pub url: String,
    /// `http://ADMIN`.
    pub admin: String,
}

impl Gateway {
    /// Starts one on free ports with this config and store.
    pub fn start(config: &Path, store: &Path) -> Self {
        Self::start_with(config, store, &[]).0
    }

    /// Starts one with more arguments; its later stdout lines are collected.
    pub fn start_with(
        config: &Path,
        store: &Path,
        extra: &[&std::ffi::OsStr],
    ) -> (Self, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        let mut command = sluice();
        command
            .arg("--store")
            .arg(store)
            .args([
                "gateway",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "-c",
            ])
            .arg(config)
            .args(extra);
        let (child, first, lines) = spawn_with_banner(&mut command);
        let collected = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&collected);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        (Self::from_banner(child, &first), collected)
    }

    /// Wraps a started gateway, reading its addresses from its first line
    /// ("Sluice gateway listening on http://A/v1 (admin http://B)").
    pub fn from_banner(child: Child, banner: &str) -> Self {
        let url = banner.split(' ').nth(4).unwrap().to_owned();
        let admin = banner
            .rsplit(' ')
            .next()
            .unwrap()
            .trim_end_matches(')')
            .to_owned();
        Self { child, url, admin }
    }

    /// Sends a signal (`-HUP`, `-TERM`).
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args([name, &pid])
                .status()
                .unwrap()
                .success()
        );
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads one HTTP request from `stream`: headers, then a content-length body; the body, or
/// `None` when the stream ends first.
pub fn read_request(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        let n = stream.read(&mut buffer).unwrap_or(0);
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buffer[..n]);
        let text = String::from_utf8_lossy(&data).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                return Some(data[end + 4..end + 4 + length].to_vec());
            }
        }
    }
}

/// A webhook receiver on a free loopback port: its URL, and the JSON bodies it got.
pub fn receiver() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let hooks = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let received = std::sync::Arc::clone(&hooks);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            if let Some(body) = read_request(&mut stream)
                && let Ok(value) = serde_json::from_slice(&body)
            {
                received.lock().unwrap().push(value);
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, hooks)
}

/// A server that answers every request with `body` as JSON; its base URL.
pub fn json_server(body: &'static str) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = [0u8; 4096];
            let _ = stream.read(&mut buffer);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

/// A fresh database on the PostgreSQL server named by `SLUICE_TEST_POSTGRES`, as a store URL;
/// `None` when none is configured (a failure when `SLUICE_REQUIRE_POSTGRES=1`).
pub fn postgres_store() -> Option<String> {
    let Ok(admin) = std::env::var("SLUICE_TEST_POSTGRES") else {
        assert!(
            std::env::var("SLUICE_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "SLUICE_REQUIRE_POSTGRES=1 but SLUICE_TEST_POSTGRES is not set"
        );
        eprintln!("SLUICE_TEST_POSTGRES is not set: the PostgreSQL store is not tested here");
        return None;
    };
    static CREATED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let name = format!(
        "sluice_e2e_{}_{}_{:08x}",
        std::process::id(),
        CREATED.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        fastrand_u32()
    );
    let output = Command::new("psql")
        .arg(&admin)
        .args(["-v", "ON_ERROR_STOP=1", "-qc"])
        .arg(format!("CREATE DATABASE {name}"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (server, _) = admin.split('?').next().unwrap().rsplit_once('/').unwrap();
    Some(format!("{server}/{name}"))
}

/// A random number without a random-number crate: the clock's nanoseconds.
fn fastrand_u32() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32).rotate_left(7))
        .unwrap_or_default()
}

/// One chat request for model `chat` through a gateway at `url` (`http://ADDR/v1`) as `user`,
/// with extra header lines; the answer's text, or the raw body when there is none.
pub fn ask(url: &str, user: &str, headers: &str) -> String {
    let address = url.trim_start_matches("http://").trim_end_matches("/v1");
    let body = format!(
        r#"{{"model":"chat","user":"{user}","messages":[{{"role":"user","content":"hi"}}]}}"#
    );
    let response = exchange(
        address,
        "POST /v1/chat/completions HTTP/1.0",
        &format!("content-type: application/json\r\n{headers}"),
        &body,
    );
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let value: serde_json::Value = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    value["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or(body)
        .to_owned()
}

/// The runs of `kind` in the store, newest first, as `sluice store runs --json` lists them.
pub fn stored_runs(store: impl AsRef<std::ffi::OsStr>, kind: &str) -> serde_json::Value {
    let output = sluice()
        .arg("--store")
        .arg(store)
        .args(["store", "runs", "--kind", kind, "--json"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// One raw HTTP request to `address` (`request_line`, extra header lines each ending in CRLF,
/// a body), read to the end; the whole response as text.
pub fn exchange(address: &str, request_line: &str, headers: &str, body: &str) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    write!(
        stream,
        "{request_line}\r\nhost: {address}\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// The gateway's windows once `ready` holds for them (polled every 20 ms, up to 10 s): for
/// waiting on what the gateway has recorded instead of sleeping.
pub async fn windows_when(
    gateway: &Gateway,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let windows = windows(gateway).await;
        if ready(&windows) {
            return windows;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the windows never got there: {windows:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A gateway's live windows over five minutes, as `GET /admin/windows` answers them.
pub async fn windows(gateway: &Gateway) -> serde_json::Value {
    reqwest::get(format!("{}/admin/windows?seconds=300", gateway.admin))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Validates a JUnit report against the XSD in `SLUICE_JUNIT_XSD` with xmllint; without it,
/// says so (and fails where `SLUICE_REQUIRE_JUNIT_XSD=1`).
#[allow(dead_code, reason = "not every test binary writes JUnit")]
pub fn check_junit(report: &Path) {
    match std::env::var_os("SLUICE_JUNIT_XSD") {
        Some(xsd) => {
            let output = Command::new("xmllint")
                .arg("--noout")
                .arg("--schema")
                .arg(xsd)
                .arg(report)
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        None => {
            assert!(
                std::env::var("SLUICE_REQUIRE_JUNIT_XSD").as_deref() != Ok("1"),
                "SLUICE_REQUIRE_JUNIT_XSD=1 but SLUICE_JUNIT_XSD is not set"
            );
            eprintln!("JUnit schema check skipped: SLUICE_JUNIT_XSD is not set");
        }
    }
}
