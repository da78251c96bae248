//! Timing accuracy against the simulator's known delays. A test binary of its own, so that no
//! sibling test competes for the two cores while it measures.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly on setup errors"
)]

mod common;

use std::time::Duration;

use common::simulator;
use sluice_llm::types::ChatRequest;
use sluice_llm::{Client, ClientConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttft_is_measured_within_two_milliseconds_of_the_configured_50ms() {
    let sim = simulator("models:\n  slow:\n    ttft_ms: 50\n    tokens_per_second: 200\n").await;
    let client = Client::new(ClientConfig::new(sim.base_url())).unwrap();
    let request = ChatRequest::user("slow", "alpha beta gamma delta epsilon zeta eta theta");
    // Warm the connection so TTFT does not include the TCP handshake.
    client.chat_stream(&request).await.unwrap();
    let mut ttfts = Vec::new();
    let mut gaps = Vec::new();
    for _ in 0..9 {
        let generation = client.chat_stream(&request).await.unwrap();
        let ttft = generation.timing.ttft.unwrap();
        assert!(
            ttft >= Duration::from_millis(50),
            "TTFT {ttft:?} is shorter than the configured delay"
        );
        ttfts.push(ttft);
        gaps.extend(generation.timing.chunk_gaps.iter().copied());
        let last_token = generation.timing.last_token().unwrap();
        assert!(
            last_token >= ttft + Duration::from_millis(30),
            "last token {last_token:?}"
        );
        assert!(generation.timing.e2e >= last_token);
        assert_eq!(generation.timing.content_chunks, 8);
    }
    ttfts.sort();
    let median = ttfts[ttfts.len() / 2];
    assert!(
        median <= Duration::from_millis(52),
        "median TTFT {median:?}, all {ttfts:?}"
    );
    // 200 tokens per second: the gaps average 5 ms.
    let mean_gap = gaps.iter().sum::<Duration>() / gaps.len() as u32;
    assert!(
        mean_gap >= Duration::from_micros(4_500) && mean_gap <= Duration::from_micros(6_500),
        "mean gap {mean_gap:?}"
    );
    sim.shutdown().await;
}
