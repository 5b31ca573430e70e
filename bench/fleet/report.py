#!/usr/bin/env python3
"""Fleet benchmark report: reads fleet_bench JSON lines, prints a Markdown table, checks the
issue-6 targets (and issue 14's: the agentic workload, 3 router processes vs 1), writes a PNG chart (python3-matplotlib from apt; skipped with a note if absent)."""
import argparse
import json
import sys

ORDER_W = ["shared", "multiturn", "random", "skewed", "agentic"]
TITLE = {"shared": "shared-prefix groups", "multiturn": "multi-turn chat",
         "random": "no sharing (random, mixed lengths)", "skewed": "skewed (one hot group)",
         "agentic": "agentic (shared tool prompt, 10 growing turns)"}


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                rows.append(json.loads(line))
    return rows


def table(rows):
    out = ["| workload | policy | routers | hit rate | TTFT p50 ms | TTFT p99 ms | completed req/s | imbalance (CV) | "
           "requests per engine | worst engine p99 / median | sessions on one replica | errors |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |"]
    for w in ORDER_W:
        for r in [r for r in rows if r["workload"] == w]:
            sticky = ("%d/%d" % (r["sticky_sessions"], r["sessions"])) if r["sessions"] else "-"
            routers = str(r["routers"]) if r.get("routers") else "in-process"
            if r.get("repeats", 1) > 1:
                routers += " (%d runs pooled)" % r["repeats"]
            out.append("| %s | %s | %s | %.1f %% | %.0f | %.0f | %.1f | %.3f | %s | %s | %s | %d |" % (
                w, r["policy"], routers, 100 * r["hit_rate"], r["ttft_p50_ms"], r["ttft_p99_ms"], r["rps"],
                r["cv"], " ".join(str(x) for x in r["per_engine"]),
                ("%.2f" % r["engine_p99_ratio"]) if "engine_p99_ratio" in r else "-", sticky, r["errors"]))
    return "\n".join(out)


def get(rows, w, p, routers=None):
    """The row of workload w and policy p; routers None: the in-process one, else the fewest routers."""
    found = [r for r in rows if r["workload"] == w and r["policy"] == p and
             (routers is None or r.get("routers", 0) == routers)]
    found.sort(key=lambda r: r.get("routers", 0))
    return found[0] if found else None


def runs_note(one, three):
    """Each run's TTFT p99 when the rows pool several runs (run.sh --repeat)."""
    if one.get("repeats", 1) == 1 and three.get("repeats", 1) == 1:
        return ""
    fmt = lambda r: " ".join("%.0f" % x for x in r.get("ttft_p99_runs", [r["ttft_p99_ms"]]))
    return "; runs: %s ms vs %s ms" % (fmt(three), fmt(one))


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
    # Issue 14: the agentic workload (any router count: the rows of the fewest routers).
    pa, se, rr = get(rows, "agentic", "prefix_aware"), get(rows, "agentic", "session"), get(rows, "agentic", "round_robin")
    if pa and se:
        check("agentic: prefix_aware hit rate >= session", pa["hit_rate"] >= se["hit_rate"] - 0.0005,
              "%.1f %% vs %.1f %%" % (100 * pa["hit_rate"], 100 * se["hit_rate"]))
        check("agentic: prefix_aware TTFT p99 <= session", pa["ttft_p99_ms"] <= se["ttft_p99_ms"] + 0.5,
              "%.0f ms vs %.0f ms" % (pa["ttft_p99_ms"], se["ttft_p99_ms"]))
    if rr:
        for r in (pa, se):
            if not r:
                continue
            check("agentic: %s well above round_robin (hit rate >= +10 points, TTFT p99 lower)" % r["policy"],
                  r["hit_rate"] >= rr["hit_rate"] + 0.10 and r["ttft_p99_ms"] < rr["ttft_p99_ms"],
                  "%.1f %% / %.0f ms vs %.1f %% / %.0f ms" % (100 * r["hit_rate"], r["ttft_p99_ms"],
                                                             100 * rr["hit_rate"], rr["ttft_p99_ms"]))
    for r in (pa, se):
        if r and "engine_p99_ratio" in r:
            check("agentic: %s: no engine's TTFT p99 above 2x the others' (max / median of the others)" % r["policy"],
                  r["engine_p99_ratio"] <= 2.0, "%.2f (%s ms)" % (r["engine_p99_ratio"],
                                                                  " ".join("%.0f" % x for x in r["engine_p99_ms"])))
    # Issue 14: 3 router processes vs 1 (both real processes).
    for w in ("shared", "multiturn", "agentic"):
        for p in sorted({r["policy"] for r in rows if r["workload"] == w}):
            one, three = get(rows, w, p, 1), get(rows, w, p, 3)
            if not one or not three:
                continue
            check("%s/%s: 3 routers' hit rate within 5 %% of 1 router's" % (w, p),
                  three["hit_rate"] >= 0.95 * one["hit_rate"],
                  "%.1f %% vs %.1f %% (%+.1f %%)" % (100 * three["hit_rate"], 100 * one["hit_rate"],
                                                    100 * (three["hit_rate"] / one["hit_rate"] - 1) if one["hit_rate"] else 0))
            check("%s/%s: 3 routers' TTFT p99 within 10 %% of 1 router's" % (w, p),
                  three["ttft_p99_ms"] <= 1.10 * one["ttft_p99_ms"],
                  "%.0f ms vs %.0f ms (%+.1f %%)%s" % (three["ttft_p99_ms"], one["ttft_p99_ms"],
                                                      100 * (three["ttft_p99_ms"] / one["ttft_p99_ms"] - 1) if one["ttft_p99_ms"] else 0,
                                                      runs_note(one, three)))
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
    text = "Setup: %s\n\n%s\n\nTargets (issues 6 and 14):\n%s\n\n%s\n" % (a.setup, t, checks, note)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
