//! Scanner throughput: microseconds per kilobyte of model answers for the gateway's output
//! scanner (secrets, personal data, canary), its input heuristics, and full redaction. Writes the corpus it used
//! to the path given, so a peer scanner can be timed on the same text
//! (`bench/scanner-throughput.sh`).
//!
//! cargo run --release -p sluice-safety --example scan_throughput -- /tmp/corpus.txt

#![allow(clippy::unwrap_used, reason = "a benchmark harness fails loudly")]

use std::time::Instant;

use sluice_safety::{Scanner, redact};

const PROSE: &str = "The capital of France is Paris, which has been the country's political and cultural centre for centuries. Its museums, among them the Louvre and the Musée d'Orsay, hold some of the best-known works of European art, and its cafés and boulevards were laid out largely in the nineteenth century under Haussmann. ";

/// 1,000 answers of about 1 KiB; one in twenty holds a secret or an email address.
fn corpus() -> Vec<String> {
    (0..1000)
        .map(|i| {
            let mut answer = String::new();
            while answer.len() < 1024 - PROSE.len() {
                answer.push_str(PROSE);
            }
            match i % 20 {
                0 => answer.push_str(" The key is sk-proj-Qw7Er9Ty2Ui4Op6As8Df1Gh3."),
                10 => answer.push_str(" Write to ada.lovelace@example.com for details."),
                _ => answer.push_str(" That is all there is to it, really."),
            }
            answer
        })
        .collect()
}

fn main() {
    let answers = corpus();
    if let Some(path) = std::env::args().nth(1) {
        std::fs::write(&path, answers.join("\n")).unwrap();
    }
    let kib = answers.iter().map(String::len).sum::<usize>() as f64 / 1024.0;
    let scanner = Scanner {
        canary: Some(sluice_safety::Canary::new("SLUICE-CANARY-0123456789abcdef")),
        ..Scanner::all()
    };
    let rounds = 20;
    let time = |work: &dyn Fn(&str) -> usize| {
        let mut hits = 0;
        let started = Instant::now();
        for _ in 0..rounds {
            for answer in &answers {
                hits += work(answer);
            }
        }
        let micros = started.elapsed().as_secs_f64() * 1e6 / rounds as f64;
        (micros / kib, hits / rounds)
    };
    let (scan_us, flagged) = time(&|a| usize::from(!scanner.violations(a).is_empty()));
    let plain = Scanner::all();
    let (plain_us, _) = time(&|a| usize::from(!plain.violations(a).is_empty()));
    let canary = sluice_safety::Canary::new("SLUICE-CANARY-0123456789abcdef");
    let (canary_us, _) = time(&|a| usize::from(canary.leaked(a)));
    // Every answer holds the canary's rarest letter, so the automaton runs on all of them.
    let (canary_worst_us, _) = time(&|a| usize::from(canary.leaked(&format!("{a} 2010"))));
    let (input_us, _) = time(&|a| sluice_safety::injection::input_flags(a).len());
    let (redact_us, changed) = time(&|a| usize::from(redact(a).len() != a.len()));
    println!("corpus: {} answers, {kib:.0} KiB", answers.len());
    println!("output scanner: {scan_us:.2} µs/KiB ({flagged} answers flagged)");
    println!("  without a canary: {plain_us:.2} µs/KiB");
    println!("  the canary alone: {canary_us:.2} µs/KiB");
    println!(
        "  the canary alone, every answer holding its rarest letter: {canary_worst_us:.2} µs/KiB"
    );
    println!("input heuristics: {input_us:.2} µs/KiB");
    println!("redaction:      {redact_us:.2} µs/KiB ({changed} answers changed)");
}
