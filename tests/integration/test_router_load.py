"""vllm-router reads vLLM's own load: the LoadScraper's samples show in /metrics and follow the
engine's vllm:num_requests_running gauge."""

import os
import sys

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
