#!/usr/bin/env python3
"""Fleet benchmark report: reads fleet_bench JSON lines, prints a Markdown table, checks the
issue-6 targets, writes a PNG chart (python3-matplotlib from apt; skipped with a note if absent)."""
import argparse
import json
import sys

ORDER_W = ["shared", "multiturn", "random", "skewed"]
TITLE = {"shared": "shared-prefix groups", "multiturn": "multi-turn chat",
         "random": "no sharing (random, mixed lengths)", "skewed": "skewed (one hot group)"}


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                rows.append(json.loads(line))
    return rows


def table(rows):
    out = ["| workload | policy | hit rate | TTFT p50 ms | TTFT p99 ms | completed req/s | imbalance (CV) | "
           "requests per engine | sessions on one replica | errors |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |"]
    for w in ORDER_W:
        for r in [r for r in rows if r["workload"] == w]:
            sticky = ("%d/%d" % (r["sticky_sessions"], r["sessions"])) if r["sessions"] else "-"
            out.append("| %s | %s | %.1f %% | %.0f | %.0f | %.1f | %.3f | %s | %s | %d |" % (
                w, r["policy"], 100 * r["hit_rate"], r["ttft_p50_ms"], r["ttft_p99_ms"], r["rps"],
                r["cv"], " ".join(str(x) for x in r["per_engine"]), sticky, r["errors"]))
    return "\n".join(out)


def get(rows, w, p):
    for r in rows:
        if r["workload"] == w and r["policy"] == p:
            return r
    return None


def targets(rows):
    lines = []
    ok_all = True

    def check(name, cond, detail):
        nonlocal ok_all
        ok_all &= bool(cond)
        lines.append("- [%s] %s: %s" % ("x" if cond else " ", name, detail))

    for w in ("shared", "multiturn"):
        pa, rr = get(rows, w, "prefix_aware"), get(rows, w, "round_robin")
        if not pa or not rr:
            continue
        hr = pa["hit_rate"] / rr["hit_rate"] if rr["hit_rate"] > 0 else float("inf")
        check("%s: prefix_aware hit rate >= 3x round_robin" % w, hr >= 3,
              "%.1f %% vs %.1f %% = %.2fx" % (100 * pa["hit_rate"], 100 * rr["hit_rate"], hr))
        tr = pa["ttft_p99_ms"] / rr["ttft_p99_ms"] if rr["ttft_p99_ms"] > 0 else 0
        check("%s: prefix_aware TTFT p99 <= 0.5x round_robin" % w, tr <= 0.5,
              "%.0f ms vs %.0f ms = %.2fx" % (pa["ttft_p99_ms"], rr["ttft_p99_ms"], tr))
        ir = pa["cv"] / rr["cv"] if rr["cv"] > 0 else float("inf")
        check("%s: prefix_aware imbalance <= 1.25x round_robin" % w, pa["cv"] <= 1.25 * rr["cv"],
              "CV %.3f vs %.3f = %s" % (pa["cv"], rr["cv"], ("%.2fx" % ir) if rr["cv"] > 0 else "inf (round robin's CV is 0)"))
    pa, la = get(rows, "random", "prefix_aware"), get(rows, "random", "load_aware")
    if pa and la:
        d = pa["ttft_p99_ms"] / la["ttft_p99_ms"] - 1 if la["ttft_p99_ms"] > 0 else 0
        check("random: prefix_aware TTFT p99 <= 1.05x load_aware (within 5 % or better)", d <= 0.05,
              "%.0f ms vs %.0f ms (%+.1f %%)" % (pa["ttft_p99_ms"], la["ttft_p99_ms"], 100 * d))
    s = get(rows, "multiturn", "session")
    if s:
        check("multiturn: session keeps every session's turns on one replica",
              s["sticky_sessions"] == s["sessions"],
              "%d of %d sessions, %.1f %% of turns on their home replica" % (
                  s["sticky_sessions"], s["sessions"], 100 * s["turns_on_home"]))
    errs = sum(r["errors"] for r in rows)
    check("no failed requests", errs == 0, "%d errors over %d requests" % (errs, sum(r["requests"] for r in rows)))
    return "\n".join(lines), ok_all


def chart(rows, png):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "chart skipped: python3-matplotlib not installed (apt-get install python3-matplotlib)"
    policies = []
    for r in rows:
        if r["policy"] not in policies:
            policies.append(r["policy"])
    workloads = [w for w in ORDER_W if any(r["workload"] == w for r in rows)]
    metrics = [("hit_rate", "prefix-cache hit rate", 100, "%"), ("ttft_p50_ms", "TTFT p50", 1, "ms"),
               ("ttft_p99_ms", "TTFT p99", 1, "ms"), ("rps", "completed requests/s", 1, "req/s"),
               ("cv", "imbalance (CV of requests per engine)", 1, "")]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 4.2))
    width = 0.8 / max(1, len(policies))
    for ax, (key, title, scale, unit) in zip(axes, metrics):
        for i, p in enumerate(policies):
            vals = []
            for w in workloads:
                r = get(rows, w, p)
                vals.append(scale * r[key] if r else 0)
            ax.bar([k + i * width for k in range(len(workloads))], vals, width, label=p)
        ax.set_xticks([k + width * (len(policies) - 1) / 2 for k in range(len(workloads))])
        ax.set_xticklabels(workloads, rotation=20)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(unit)
        if key == "ttft_p99_ms" or key == "ttft_p50_ms":
            ax.set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.suptitle("vllm-router policies on a simulated vLLM fleet (bench/fleet)")
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    return "chart: %s" % png


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--png")
    ap.add_argument("--out")
    ap.add_argument("--setup", default="")
    a = ap.parse_args()
    rows = load(a.results)
    if not rows:
        print("no results", file=sys.stderr)
        return 1
    t = table(rows)
    checks, ok = targets(rows)
    note = chart(rows, a.png) if a.png else ""
    text = "Setup: %s\n\n%s\n\nTargets (issue 6):\n%s\n\n%s\n" % (a.setup, t, checks, note)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
