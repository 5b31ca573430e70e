#!/usr/bin/env python3
"""Tests of the fleet benchmark's scripts: pool.py (run.sh --repeat) and report.py's checks of
3 router processes against 1. Run by ctest (fleet_scripts) or: python3 bench/fleet/test_scripts.py"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pool  # noqa: E402
import report  # noqa: E402


def run(routers, p99, hit, requests=4, engines=(2, 2)):
    return {"policy": "prefix_aware", "workload": "shared", "routers": routers, "requests": requests,
            "ok": requests, "errors": 0, "expired": False, "wall_s": 10.0, "rps": 8.0, "hit_rate": hit,
            "cv": 0.1, "per_engine": list(engines), "sessions": 0, "sticky_sessions": 0,
            "ttft_p50_ms": 1.0, "ttft_p99_ms": p99, "ttft_mean_ms": 1.0}


def trace(ttfts, engine=0, ok=1):
    # policy routers sent_s router engine group ttft_ms ok
    return ["prefix_aware 3 0.1 0 %d 5 %s %d\n" % (engine, t, ok) for t in ttfts]


class PoolTest(unittest.TestCase):
    def test_percentiles_are_over_every_runs_requests(self):
        runs = [run(3, 99.0, 0.5), run(3, 199.0, 0.7)]
        lines = trace(range(1, 101), engine=0) + trace(range(101, 201), engine=1)
        lines += trace([10000], engine=1, ok=0)  # a failed request has no TTFT to pool
        out = pool.pool(runs, lines)
        # 200 requests 1..200: p99 at rank 0.99 x 199 = 197.01 -> 198.01 ms; not the mean of
        # the runs' p99s (149) nor their max (199).
        self.assertAlmostEqual(out["ttft_p99_ms"], 198.01, places=6)
        self.assertAlmostEqual(out["ttft_p50_ms"], 100.5, places=6)
        self.assertAlmostEqual(out["ttft_mean_ms"], 100.5, places=6)
        self.assertEqual(out["engine_p99_ms"], [99.0, 199.0])
        self.assertEqual(out["requests"], 8)
        self.assertEqual(out["per_engine"], [4, 4])
        self.assertAlmostEqual(out["hit_rate"], 0.6)
        self.assertAlmostEqual(out["wall_s"], 20.0)
        self.assertEqual(out["repeats"], 2)
        self.assertEqual(out["ttft_p99_runs"], [99.0, 199.0])
        self.assertEqual(out["hit_rate_runs"], [0.5, 0.7])


class ReportTest(unittest.TestCase):
    def rows(self, one_p99, three_p99, one_hit=0.80, three_hit=0.79):
        one = dict(run(1, one_p99, one_hit), repeats=2, ttft_p99_runs=[one_p99 - 5, one_p99 + 5])
        three = dict(run(3, three_p99, three_hit), repeats=2, ttft_p99_runs=[three_p99 - 5, three_p99 + 5])
        return [one, three]

    def checks(self, rows):
        text, ok = report.targets(rows)
        return [l for l in text.splitlines() if "3 routers'" in l], ok

    def test_three_routers_within_the_bounds_pass(self):
        lines, ok = self.checks(self.rows(200.0, 219.0))
        self.assertEqual(len(lines), 2)
        self.assertTrue(all(l.startswith("- [x]") for l in lines), lines)
        self.assertTrue(ok)
        self.assertIn("runs: 214 224 ms vs 195 205 ms", lines[1])

    def test_a_slower_tail_or_fewer_hits_fail(self):
        lines, ok = self.checks(self.rows(200.0, 221.0))
        self.assertTrue(lines[1].startswith("- [ ]"), lines)
        self.assertFalse(ok)
        lines, ok = self.checks(self.rows(200.0, 200.0, one_hit=0.80, three_hit=0.75))
        self.assertTrue(lines[0].startswith("- [ ]"), lines)
        self.assertFalse(ok)

    def test_the_table_names_pooled_rows(self):
        self.assertIn("3 (2 runs pooled)", report.table(self.rows(200.0, 200.0)))


if __name__ == "__main__":
    unittest.main()
