"""vllm-router reads vLLM's own load: the LoadScraper's samples show in /metrics and follow the
engine's vllm:num_requests_running gauge."""

import os
import socket
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from routerproc import metric_samples, open_stream, router_metrics, start_router, wait_for  # noqa: E402
from simproc import start_sim  # noqa: E402

CHAT = "/v1/chat/completions"


def running(router):
    return [v for _, v in metric_samples(router_metrics(router), "vllm_router_endpoint_running")]


def test_scraped_running_gauge_follows_the_engine(tmp_path):
    cfg = tmp_path / "router.json"
    with start_sim("--model", "m", "--itl-ms", "100") as sim:
        cfg.write_text('{"models": [{"name": "m", "endpoints": ["%s"]}],'
                       ' "policy_options": {"scrape_interval_ms": 50}}' % sim.url)
        with start_router("--config", str(cfg), "--log-level", "error") as router:
            assert wait_for(lambda: running(router) == [0.0], timeout=5.0), router_metrics(router)
            streams = [open_stream(router, CHAT, {"model": "m", "messages": [], "max_tokens": 200,
                                                  "stream": True})[0] for _ in range(3)]
            try:
                assert wait_for(lambda: running(router) == [3.0], timeout=5.0), router_metrics(router)
            finally:
                for s in streams:
                    s.close()
            assert wait_for(lambda: running(router) == [0.0], timeout=5.0), router_metrics(router)
            healthy = metric_samples(router_metrics(router), "vllm_router_endpoint_healthy")
            assert [v for _, v in healthy] == [1.0]


def loop_connections(router):
    return [v for _, v in sorted(metric_samples(router_metrics(router), "vllm_router_client_connections"),
                                 key=lambda s: int(s[0]["loop"]))]


def test_client_connections_are_balanced_across_event_loops():
    # The kernel wakes whichever loop it likes for the shared listening socket; the accepting
    # loop hands each connection to the loop with the fewest, so keep-alive clients get an
    # even share of the CPUs whatever the wake-up order was.
    with start_sim("--model", "m") as sim:
        with start_router("--threads", "4", "--model", "m=" + sim.url, "--log-level", "error") as router:
            clients = []
            try:
                for _ in range(60):
                    s = socket.create_connection((router.host, router.port), timeout=5)
                    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                    assert s.recv(4096).startswith(b"HTTP/1.1 200")  # accepted and served
                    clients.append(s)
                # 60 clients + the /metrics request's own connection
                counts = loop_connections(router)
                assert len(counts) == 4 and sum(counts) == 61, counts
                assert max(counts) - min(counts) <= 2, counts
            finally:
                for s in clients:
                    s.close()
            assert wait_for(lambda: sum(loop_connections(router)) == 1, timeout=5.0), loop_connections(router)
