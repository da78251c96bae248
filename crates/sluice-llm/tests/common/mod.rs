//! Test helpers: a simulator from YAML text, and a scripted HTTP server that answers canned
//! responses in order while recording when each request arrived.

#![allow(dead_code)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly on setup errors"
)]

use std::sync::{Arc, Mutex};
use std::time::Instant;

use sluice_config::{Document, MapEnv};
use sluice_sim::{SimConfig, SimServer, Simulator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub async fn simulator(yaml: &str) -> SimServer {
    let document = Document::parse("sim.yaml", yaml, &MapEnv::default()).unwrap();
    let config = SimConfig::from_document(&document).unwrap();
    Simulator::start(config, Some(7), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// One canned answer: raw bytes written after the request is read, then the connection closes.
pub struct Canned(pub Vec<u8>);

impl Canned {
    pub fn json(status: u16, extra_headers: &str, body: &str) -> Self {
        Canned(
            format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{extra_headers}\r\n{body}",
                body.len()
            )
            .into_bytes(),
        )
    }

    /// An SSE response without content-length: the body ends when the connection closes.
    pub fn sse(body: &str) -> Self {
        Canned(format!("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n{body}").into_bytes())
    }
}

pub struct Scripted {
    pub base_url: String,
    pub arrivals: Arc<Mutex<Vec<Instant>>>,
    pub requests: Arc<Mutex<Vec<String>>>,
}

pub async fn scripted(answers: Vec<Canned>) -> Scripted {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (arrivals_task, requests_task) = (arrivals.clone(), requests.clone());
    tokio::spawn(async move {
        for answer in answers {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let mut buffer = vec![0u8; 65536];
            let mut read = 0;
            // Read until the end of headers plus content-length bytes of body.
            loop {
                let n = socket.read(&mut buffer[read..]).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                read += n;
                let text = String::from_utf8_lossy(&buffer[..read]).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if read >= end + 4 + length {
                        break;
                    }
                }
            }
            arrivals_task.lock().unwrap().push(Instant::now());
            requests_task
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buffer[..read]).to_string());
            let _ = socket.write_all(&answer.0).await;
            let _ = socket.shutdown().await;
        }
    });
    Scripted {
        base_url,
        arrivals,
        requests,
    }
}
