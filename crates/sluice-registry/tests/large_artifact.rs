//! A 2 GiB artifact is hashed in blocks: the process's peak resident memory grows by a few
//! megabytes at most, not by the file's size. Alone in its test binary so that no other test
//! moves the peak.

#![allow(clippy::unwrap_used, reason = "test setup fails loudly")]

use std::time::Instant;

/// The process's peak resident set size (`VmHWM`), in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_two_gib_file_is_hashed_with_flat_memory() {
    const SIZE: u64 = 2 << 30;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weights.bin");
    // A sparse file: 2 GiB of zeros that take no disk space.
    std::fs::File::create(&path).unwrap().set_len(SIZE).unwrap();
    let before = peak_rss_kib();
    let started = Instant::now();
    let (sha256, size) = sluice_registry::artifact::hash_file(&path).unwrap();
    let elapsed = started.elapsed();
    let grown_kib = peak_rss_kib().saturating_sub(before);
    eprintln!(
        "hashed {size} bytes in {elapsed:?} ({:.0} MB/s); peak RSS grew by {grown_kib} KiB",
        size as f64 / elapsed.as_secs_f64() / 1e6
    );
    assert_eq!(size, SIZE);
    assert_eq!(
        sha256,
        "a7c744c13cc101ed66c29f672f92455547889cc586ce6d44fe76ae824958ea51"
    );
    assert!(
        grown_kib < 16 * 1024,
        "hashing 2 GiB grew the peak RSS by {grown_kib} KiB"
    );
}
