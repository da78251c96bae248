//! The bench library against the simulator's known latency model: at low load its TTFT, TPOT
//! and ITL land within a millisecond of the configured delays, E2EL within two (in one of up
//! to three runs: a busy machine's delays come and go, a measuring error stays).

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
    // A busy machine only ever adds delay, now and then: a run is measured again (three at
    // most) when one is off, while an error in the measurement itself is off every time.
    let mut misses = Vec::new();
    for _ in 0..3 {
        let result = sluice_bench::run(config(server.base_url())).await.unwrap();
        assert_eq!(
            result.number("completed"),
            Some(40.0),
            "{}",
            result.console()
        );
        assert!(sluice_bench::invalid_reason(&result).is_none());
        let off: Vec<String> = [
            ("ttft", 30.0, 1.0),
            ("itl", 5.0, 1.0),
            ("tpot", 5.0, 1.0),
            // End to end spans eleven of the simulator's timed waits, each of which a busy
            // machine may overshoot a little: a millisecond per wait would be too loose, one
            // in all too tight.
            ("e2el", 80.0, 2.0),
        ]
        .into_iter()
        .filter_map(|(metric, expected, tolerance)| {
            let got = result.stats(metric).median;
            ((got - expected).abs() > tolerance).then(|| {
                format!("median {metric} {got:.3} ms, expected {expected} ms ± {tolerance}")
            })
        })
        .collect();
        if off.is_empty() {
            server.shutdown().await;
            return;
        }
        misses.push(format!("{}\n{}", off.join("; "), result.console()));
    }
    panic!("off in three runs out of three:\n{}", misses.join("\n"));
}
