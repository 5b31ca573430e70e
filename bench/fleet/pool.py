#!/usr/bin/env python3
"""Pools K runs of one fleet_bench configuration (run.sh --repeat K) into one result line.

    pool.py RUNS.jsonl TRACE

RUNS.jsonl holds the K runs' result lines, TRACE their FLEET_TRACE lines (policy, routers, sent
s, router, engine index, group, TTFT ms, ok). The pooled line has the fields of one run: the TTFT
percentiles and mean and the per-engine TTFT p99 over every request of the K runs (the p99 of
K x 1,024 requests rests on 10 K slowest requests, not on 10), counts summed, rates and the
inter-token percentiles averaged over the runs; plus "repeats" and each run's TTFT p99 and hit
rate ("ttft_p99_runs", "hit_rate_runs") so the spread stays visible.
"""
import json
import math
import sys


def percentile(v, q):
    """fleet_bench's percentile: linear between the closest ranks."""
    if not v:
        return 0.0
    v = sorted(v)
    pos = q * (len(v) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def mean(xs):
    return sum(xs) / len(xs) if xs else 0.0


def pool(runs, trace_lines):
    ttfts = []
    of_engine = {}
    for line in trace_lines:
        f = line.split()
        if len(f) != 8 or f[7] != "1":
            continue
        t = float(f[6])
        ttfts.append(t)
        of_engine.setdefault(int(f[4]), []).append(t)
    first = runs[0]
    out = dict(first)
    for key in ("requests", "ok", "errors", "sessions", "sticky_sessions", "scrape_rounds"):
        if key in first:
            out[key] = sum(r[key] for r in runs)
    out["expired"] = any(r.get("expired") for r in runs)
    out["wall_s"] = sum(r["wall_s"] for r in runs)
    for key in ("rps", "hit_rate", "cv", "turns_on_home", "queue_mean_ms", "itl_p50_ms", "itl_p99_ms"):
        if key in first:
            out[key] = mean([r[key] for r in runs])
    out["per_engine"] = [sum(col) for col in zip(*(r["per_engine"] for r in runs))]
    out["ttft_p50_ms"] = percentile(ttfts, 0.5)
    out["ttft_p99_ms"] = percentile(ttfts, 0.99)
    out["ttft_mean_ms"] = mean(ttfts)
    engine_p99 = [percentile(of_engine[e], 0.99) for e in sorted(of_engine) if e >= 0]
    out["engine_p99_ms"] = [round(p, 1) for p in engine_p99]
    if len(engine_p99) > 1:
        worst = max(engine_p99)
        others = list(engine_p99)
        others.remove(worst)
        m = percentile(others, 0.5)
        out["engine_p99_ratio"] = worst / m if m > 0 else 0.0
    out["repeats"] = len(runs)
    out["ttft_p99_runs"] = [r["ttft_p99_ms"] for r in runs]
    out["hit_rate_runs"] = [r["hit_rate"] for r in runs]
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        runs = [json.loads(line) for line in f if line.strip().startswith("{")]
    if not runs:
        sys.exit("pool.py: no runs in " + sys.argv[1])
    with open(sys.argv[2]) as f:
        trace = f.readlines()
    print(json.dumps(pool(runs, trace)))


if __name__ == "__main__":
    main()
