//! Acting on a rollout from the control plane over loopback: refused without the admin token
//! (or with a forged session, a missing CSRF token, a request from another site), done with
//! it — the command lands in the store, where the rollout's controller reads it.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on setup errors"
)]

use serde_json::json;
use sluice_serve::{ServeServer, ServerLimits};
use sluice_store::{NewRun, RunKind, RunStatus, Store};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const TOKEN: &str = "test-admin-token-0123456789";

/// Sends one request and returns the whole response as text.
async fn send(addr: std::net::SocketAddr, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

fn post(path: &str, headers: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n{headers}content-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn get(path: &str, headers: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n{headers}connection: close\r\n\r\n")
}

fn status(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

async fn commands(store: &Store, run: &str) -> Vec<serde_json::Value> {
    store
        .events(&format!("rollout:{run}"), 0, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "command")
        .map(|e| e.payload)
        .collect()
}

#[tokio::test]
async fn rollouts_are_acted_on_only_with_the_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("s.db")).await.unwrap();
    let run = store
        .create_run(NewRun {
            kind: RunKind::Rollout,
            name: "chat-canary".into(),
            config: json!({}),
        })
        .await
        .unwrap();
    let run = run.as_str().to_owned();
    let server = ServeServer::start(
        store.clone(),
        "127.0.0.1:0".parse().unwrap(),
        ServerLimits::default(),
        Some(TOKEN),
        None,
        None,
    )
    .await
    .unwrap();
    let addr = server.local_addr();

    // The API: a bearer token or nothing.
    let api = format!("/api/v1/rollouts/{run}/promote");
    assert_eq!(status(&send(addr, &post(&api, "", "")).await), 401);
    let wrong = "authorization: Bearer not-the-token\r\n";
    assert_eq!(status(&send(addr, &post(&api, wrong, "")).await), 401);
    let right = format!("authorization: Bearer {TOKEN}\r\n");
    let answer = send(addr, &post(&api, &right, "")).await;
    assert_eq!(status(&answer), 200, "{answer}");
    assert_eq!(
        commands(&store, &run).await,
        [json!({"command": "promote", "full": false})]
    );
    let unknown = format!("/api/v1/rollouts/{run}/explode");
    assert_eq!(status(&send(addr, &post(&unknown, &right, "")).await), 404);
    // A read-only resource takes no POST; an action takes nothing else.
    assert_eq!(
        status(&send(addr, &post("/api/v1/runs", &right, "")).await),
        405
    );
    let got = send(addr, &get(&api, "")).await;
    assert_eq!(status(&got), 405);
    assert!(got.to_ascii_lowercase().contains("allow: post"), "{got}");

    // The dashboard: a page without a session offers to log in.
    let page = send(addr, &get(&format!("/rollouts/{run}"), "")).await;
    assert!(page.contains("Log in</a> to promote"), "{page}");
    assert!(!page.contains("name=\"csrf\""));
    // A wrong token, then the right one: a session cookie.
    let login = send(addr, &post("/login", "", "token=nope&next=/")).await;
    assert_eq!(status(&login), 401);
    let login = send(
        addr,
        &post("/login", "", &format!("token={TOKEN}&next=/rollouts/{run}")),
    )
    .await;
    assert_eq!(status(&login), 303, "{login}");
    assert!(
        login.contains(&format!("location: /rollouts/{run}")),
        "{login}"
    );
    let cookie_line = login
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap();
    assert!(cookie_line.contains("HttpOnly") && cookie_line.contains("SameSite=Strict"));
    let session = cookie_line
        .split_once(':')
        .unwrap()
        .1
        .trim()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let cookie = format!("cookie: {session}\r\n");
    let page = send(addr, &get(&format!("/rollouts/{run}"), &cookie)).await;
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("{page}"))
        .to_owned();
    let abort = format!("/rollouts/{run}/abort");
    // No CSRF token, a forged session, another site's request: refused, nothing stored.
    assert_eq!(status(&send(addr, &post(&abort, &cookie, "")).await), 403);
    let forged = "cookie: sluice_session=forged\r\n";
    assert_eq!(
        status(&send(addr, &post(&abort, forged, &format!("csrf={csrf}"))).await),
        403
    );
    let foreign = format!("{cookie}origin: http://evil.example\r\n");
    assert_eq!(
        status(&send(addr, &post(&abort, &foreign, &format!("csrf={csrf}"))).await),
        403
    );
    assert_eq!(commands(&store, &run).await.len(), 1);
    // With all of it: done, and back to the rollout's page.
    let same = format!("{cookie}origin: http://127.0.0.1\r\n");
    let done = send(addr, &post(&abort, &same, &format!("csrf={csrf}"))).await;
    assert_eq!(status(&done), 303, "{done}");
    let stored = commands(&store, &run).await;
    assert_eq!(stored[1]["command"], "abort");
    assert_eq!(stored[1]["reason"], "aborted from the control plane");

    // A finished rollout has nothing to act on.
    store
        .finish_run(
            &sluice_store::RunId(run.clone()),
            RunStatus::Passed,
            json!({}),
        )
        .await
        .unwrap();
    assert_eq!(status(&send(addr, &post(&api, &right, "")).await), 409);
    server.shutdown().await;

    // Without a token, nothing can be changed at all.
    let server = ServeServer::start(
        store.clone(),
        "127.0.0.1:0".parse().unwrap(),
        ServerLimits::default(),
        None,
        None,
        None,
    )
    .await
    .unwrap();
    let answer = send(server.local_addr(), &post(&api, &right, "")).await;
    assert_eq!(status(&answer), 403, "{answer}");
    server.shutdown().await;
}
