//! The bench library against the simulator's known latency model: at low load its TTFT, TPOT
//! and ITL land within a millisecond of the configured delays, E2EL within two.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on setup errors"
)]

use std::time::Duration;

use sluice_bench::schedule::Arrival;
use sluice_bench::{BenchConfig, Endpoint, Goodput, Limit, Load};
use sluice_config::{Document, MapEnv};
use sluice_sim::{SimConfig, Simulator};

fn config(base_url: String) -> BenchConfig {
    BenchConfig {
        target: sluice_core::EndpointSpec::new(base_url, "fixed"),
        endpoint: Endpoint::Chat,
        dataset: sluice_bench::dataset::Dataset::Random,
        load: Load::Rate {
            rate: 20.0,
            arrival: Arrival::Constant,
            max_concurrency: None,
        },
        limit: Limit::Requests(40),
        warmup: Duration::ZERO,
        input_tokens: 16,
        output_tokens: 11,
        range_ratio: 0.0,
        stream: true,
        ignore_eos: false,
        goodput: Goodput::default(),
        thresholds: Vec::new(),
        // Generous: this test is about the server's latencies, on a machine that may be busy.
        max_lag: Duration::from_millis(50),
        timeout: Duration::from_secs(10),
        seed: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_load_latencies_match_the_simulators_model() {
    // 30 ms to the first token, then 200 tokens/s (5 ms apart), 11 tokens per answer.
    let yaml = "models:\n  fixed:\n    ttft_ms: 30\n    tokens_per_second: 200\n    default: lorem\n    lorem_tokens: 11\n";
    let document = Document::parse("sim.yaml", yaml, &MapEnv::default()).unwrap();
    let server = Simulator::start(
        SimConfig::from_document(&document).unwrap(),
        Some(7),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let result = sluice_bench::run(config(server.base_url())).await.unwrap();
    assert_eq!(
        result.number("completed"),
        Some(40.0),
        "{}",
        result.console()
    );
    let median = |metric: &str| result.stats(metric).median;
    let near = |metric: &str, expected: f64, tolerance: f64| {
        let got = median(metric);
        assert!(
            (got - expected).abs() <= tolerance,
            "median {metric} {got:.3} ms, expected {expected} ms ± {tolerance}\n{}",
            result.console()
        );
    };
    near("ttft", 30.0, 1.0);
    near("itl", 5.0, 1.0);
    near("tpot", 5.0, 1.0);
    // End to end spans eleven of the simulator's timed waits, each of which a busy machine
    // may overshoot a little: a millisecond per wait would be too loose, one in all too tight.
    near("e2el", 80.0, 2.0);
    assert!(sluice_bench::invalid_reason(&result).is_none());
    server.shutdown().await;
}
