"""Fills a Sluice store at scale and times `sluice serve` on it.

The store is created by `sluice` itself (so the schema is the binary's), then filled directly:
RUNS eval runs, two of them with TESTS results each (a 'baseline' and a 'candidate' whose
verdicts differ on a few percent of the tests), and LOG request-log events on route `chat`
spread over the last LOG_HOURS hours. Then `sluice serve` answers, timed from this process
over loopback: the runs list and a run's first page (p50 / p99 over REPEAT calls), the diff of
the two big runs, and a drift report whose two windows hold DRIFT rows in all.

    python3 bench/serve-scale.py SLUICE_BINARY WORKDIR
"""
import json
import os
import random
import sqlite3
import subprocess
import sys
import time
import urllib.request

RUNS = int(os.environ.get("RUNS", 1000))
TESTS = int(os.environ.get("TESTS", 100_000))
LOG = int(os.environ.get("LOG", 5_000_000))
LOG_HOURS = float(os.environ.get("LOG_HOURS", 5))
DRIFT = int(os.environ.get("DRIFT", 1_000_000))
REPEAT = int(os.environ.get("REPEAT", 200))


def fill(db, now_ms):
    c = sqlite3.connect(db)
    c.execute("PRAGMA journal_mode = WAL")
    c.execute("PRAGMA synchronous = OFF")
    summary = json.dumps({"stats": {"pass_rate": 0.9, "successes": 9, "failures": 1, "errors": 0, "cost_usd": 0.01}})
    config = json.dumps({"suite": "evals/suite.yaml", "tests": 10})
    runs = [
        (f"eval-bench-{i:06d}", "eval", f"suite-{i % 20}", "passed", config, summary, now_ms - (RUNS - i) * 60_000, now_ms - (RUNS - i) * 60_000 + 5_000)
        for i in range(RUNS)
    ]
    c.executemany("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)", runs)
    rng = random.Random(7)
    for run, flip in (("eval-bench-big-a", 0.0), ("eval-bench-big-b", 0.03)):
        c.execute("INSERT INTO runs VALUES (?, 'eval', 'big suite', 'passed', ?, ?, ?, ?)", (run, config, summary, now_ms - 3_600_000, now_ms - 3_000_000))
        rows = []
        for t in range(TESTS):
            key = f"{t:016x}:{{{{question}}}}:openai:chat:stable"
            passed = (t % 10 != 0) != (rng.random() < flip)
            data = {"cached": False, "cost": None, "description": f"test {t}", "error": None, "finish_reason": "stop",
                    "grades": [{"assertion": "icontains", "pass": passed, "reason": "ok" if passed else "missing", "score": 1.0 if passed else 0.0, "weight": 1.0}],
                    "key": key, "latency_ms": 50.0, "named_scores": {}, "output": f"answer {t} " + "lorem " * 10, "pass": passed,
                    "prompt": "{{question}}", "prompt_index": 0, "provider": "openai:chat:stable", "provider_index": 0, "repeat": 0,
                    "score": 1.0 if passed else 0.0, "seq": t, "test_index": t, "tokens": {"completion": 12, "prompt": 9},
                    "vars": {"question": f"question {t}"}}
            rows.append((run, t, key, passed, 1.0 if passed else 0.0, None, json.dumps(data)))
        c.executemany("INSERT INTO run_results VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    c.commit()
    span_ms = int(LOG_HOURS * 3_600_000)
    batch = []
    for i in range(LOG):
        at = now_ms - span_ms + i * span_ms // LOG
        version = "stable" if i % 10 else "candidate"
        payload = {"request_id": f"req-{i}", "route": "chat", "version": version, "class": "ok" if i % 50 else "5xx",
                   "latency_ms": 80.0 + (i * 7919) % 200, "ttft_ms": 20.0 + (i * 104729) % 60, "prompt_tokens": 20 + i % 30,
                   "completion_tokens": 40 + (i * 31) % 80, "cost_usd": 0.0001, "request": "What is the capital of France?",
                   "answer": "The capital of France is Paris. " * (1 + i % 3), "safety": [], "input_flags": []}
        batch.append(("gateway:chat", "request", json.dumps(payload), at))
        if len(batch) == 100_000:
            c.executemany("INSERT INTO events (subject, kind, payload, at_ms) VALUES (?, ?, ?, ?)", batch)
            batch.clear()
    if batch:
        c.executemany("INSERT INTO events (subject, kind, payload, at_ms) VALUES (?, ?, ?, ?)", batch)
    c.commit()
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    return span_ms


def get(base, path):
    started = time.perf_counter()
    with urllib.request.urlopen(base + path, timeout=120) as answer:
        body = answer.read()
    return time.perf_counter() - started, json.loads(body)


def main():
    sluice, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    db = os.path.join(work, "scale.db")
    stamp = os.path.join(work, "filled-at-ms")
    if os.environ.get("REUSE") and os.path.exists(stamp):
        # The store of an earlier run with the same sizes: its log ends where it was filled.
        now_ms = int(open(stamp).read())
        span_ms = int(LOG_HOURS * 3_600_000)
        print(f"reused: {db}, {os.path.getsize(db) / 1e9:.2f} GB", flush=True)
    else:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(db + suffix):
                os.remove(db + suffix)
        subprocess.run([sluice, "--store", db, "store", "runs"], check=True, capture_output=True)
        now_ms = int(time.time() * 1000)
        started = time.perf_counter()
        span_ms = fill(db, now_ms)
        with open(stamp, "w") as f:
            f.write(str(now_ms))
        print(f"filled: {RUNS} runs, 2 x {TESTS} results, {LOG} log rows over {LOG_HOURS} h, {os.path.getsize(db) / 1e9:.2f} GB, in {time.perf_counter() - started:.0f} s", flush=True)
    serve = subprocess.Popen([sluice, "--store", db, "serve", "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        banner = serve.stdout.readline()
        base = "http://" + banner.split("http://")[1].split("/")[0]
        print(f"{'call':<44} {'p50':>9} {'p99':>9}")
        for label, path in (("GET /api/v1/runs?limit=100", "/api/v1/runs?limit=100"),
                            ("GET /api/v1/runs/ID (100k results, page 1)", "/api/v1/runs/eval-bench-big-b?limit=100"),
                            ("GET /api/v1/runs/ID (small run)", f"/api/v1/runs/eval-bench-{RUNS // 2:06d}")):
            times = sorted(get(base, path)[0] for _ in range(REPEAT))
            print(f"{label:<44} {times[len(times) // 2] * 1000:>7.1f}ms {times[int(len(times) * 0.99) - 1] * 1000:>7.1f}ms", flush=True)
        # The first call reads from disk what the page cache does not hold yet; then two more.
        calls = [get(base, "/api/v1/runs/eval-bench-big-a/diff/eval-bench-big-b") for _ in range(3)]
        comparison = calls[0][1]["comparison"]
        flipped = len(comparison["regressions"]) + len(comparison["fixes"])
        times = ", ".join(f"{t:.2f}" for t, _ in calls)
        print(f"{'GET diff of the two 100k-test runs':<44} {times} s  ({flipped} flipped tests listed)", flush=True)
        # Two drift windows that together hold DRIFT rows of the log, the most recent ones.
        half_ms = int(span_ms * (DRIFT / LOG) / 2)
        current_from = now_ms - half_ms
        reference_from = current_from - half_ms
        path = f"/api/v1/drift?route=chat&version=stable&reference_from={reference_from}&reference_to={current_from}&current_from={current_from}&current_to={now_ms + 1}"
        calls = [get(base, path) for _ in range(3)]
        times = ", ".join(f"{t:.2f}" for t, _ in calls)
        print(f"{'GET drift over ' + str(DRIFT) + ' log rows':<44} {times} s  (requests of version stable in the two windows: {calls[0][1]['samples']})", flush=True)
    finally:
        serve.terminate()
        serve.wait()


if __name__ == "__main__":
    main()
