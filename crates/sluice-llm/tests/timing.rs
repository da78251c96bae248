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
        // The simulator schedules every token from the request's arrival (TTFT 50 ms, then one
        // every 5 ms): the eighth is due at 85 ms however late the first one was.
        let last_token = generation.timing.last_token().unwrap();
        assert!(
            last_token >= Duration::from_millis(84),
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
    // 200 tokens per second: gaps of 5 ms. The median ignores the few squeezed together after
    // a first token that a loaded machine delivered late.
    gaps.sort();
    let median_gap = gaps[gaps.len() / 2];
    assert!(
        median_gap >= Duration::from_micros(4_500) && median_gap <= Duration::from_micros(6_500),
        "median gap {median_gap:?}"
    );
    sim.shutdown().await;
}
