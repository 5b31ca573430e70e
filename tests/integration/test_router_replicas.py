"""Router replicas with replica sync: two vllm-router processes in front of the same simulated
engines tell each other, over UDP on 127.0.0.1, where they placed each prompt and how many
requests they have open on each engine, so each routes as one router would (issue 14)."""

import json
import os
import socket
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from routerproc import (metric_samples, open_stream, post_json, router_metrics,  # noqa: E402
                        start_router, wait_for)
from simproc import start_sim  # noqa: E402

COMPLETIONS = "/v1/completions"


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(doc):
    f = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump(doc, f)
    f.close()
    return f.name


def metric(router, name, **labels):
    return sum(v for lbl, v in metric_samples(router_metrics(router), name)
               if all(lbl.get(k) == want for k, want in labels.items()))


def start_pair(sims, policy, secrets=("", "")):
    """Two routers in front of `sims` (model "m" on all; "solo" on the first only), each
    listing both UDP addresses as its peers."""
    ports = [free_udp_port(), free_udp_port()]
    peers = ["127.0.0.1:%d" % p for p in ports]
    routers, configs = [], []
    for port, secret in zip(ports, secrets):
        doc = {"policy": policy,
               # No home from the prompt's head: a cold prompt goes to a drawn idle engine, so
               # the second router follows the first only by learning its placement.
               "policy_options": {"prefix_affinity_chars": 0},
               "models": [{"name": "m", "endpoints": [s.url for s in sims]},
                          {"name": "solo", "endpoints": [sims[0].url]}],
               "replica_sync": {"listen": "127.0.0.1:%d" % port, "peers": peers}}
        if secret:
            doc["replica_sync"]["secret"] = secret
        configs.append(write_config(doc))
        routers.append(start_router("--config", configs[-1]))
    return routers, configs


@pytest.fixture
def sims():
    engines = [start_sim("--served-model-name", "m", "--served-model-name", "solo", "--id", "e%d" % i,
                         "--output-tokens", "1") for i in range(2)]
    yield engines
    for e in engines:
        e.stop()


def prompt(i):
    # Distinct from the first character (a shared first chunk would be a match), two chunks.
    return "%03d: " % i + "a prompt that no other request shares, " * 14


def served(router, text):
    status, hdrs, body = post_json(router, COMPLETIONS, {"model": "m", "prompt": text, "max_tokens": 1})
    assert status == 200, body
    return hdrs["x-sim-id"]


def stop_all(routers, configs):
    for r in routers:
        assert r.stop() == 0
    for c in configs:
        os.unlink(c)


def test_a_replica_sends_a_prompt_where_its_peer_placed_it(sims):
    routers, configs = start_pair(sims, "prefix_aware")
    a, b = routers
    try:
        assert wait_for(lambda: metric(a, "vllm_router_replica_sync_peers") == 1 and
                        metric(b, "vllm_router_replica_sync_peers") == 1, timeout=10)
        prompts = [prompt(i) for i in range(12)]
        first = [served(a, p) for p in prompts]
        assert len(set(first)) == 2, "idle engines: A's draws should use both (1 in 2,048 otherwise)"
        # Two chunks per prompt, sent within an interval of their placement.
        assert wait_for(lambda: metric(a, "vllm_router_replica_sync_placements_total", direction="sent") >= 24,
                        timeout=10)
        assert wait_for(lambda: metric(b, "vllm_router_replica_sync_placements_total", direction="received") >= 24,
                        timeout=10)
        # Without the placements B draws again for every prompt: 1 in 4,096 to match by chance.
        assert [served(b, p) for p in prompts] == first
        assert metric(b, "vllm_router_replica_sync_datagrams_total", result="rejected") == 0
    finally:
        stop_all(routers, configs)


def test_a_replica_counts_its_peers_requests_as_load(sims):
    routers, configs = start_pair(sims, "least_requests")
    a, b = routers
    try:
        assert wait_for(lambda: metric(b, "vllm_router_replica_sync_peers") == 1, timeout=10)
        # Three slow streams held open through A on e0 ("solo" is served by e0 alone).
        socks = []
        try:
            for _ in range(3):
                sock, head, _ = open_stream(a, COMPLETIONS, {"model": "solo", "prompt": "hold", "max_tokens": 100,
                                                             "stream": True},
                                            headers={"x-sim-ttft-ms": "0", "x-sim-itl-ms": "200"})
                socks.append(sock)
                assert "x-sim-id: e0" in head.lower(), head

            def peer_counts():
                return {lbl["endpoint"]: v for lbl, v in metric_samples(
                    router_metrics(b), "vllm_router_endpoint_peer_in_flight") if lbl["model"] == "m"}
            assert wait_for(lambda: peer_counts() == {sims[0].url: 3.0, sims[1].url: 0.0}, timeout=10), peer_counts()
            # B's own requests for "m" go to e1, which A has none on (without the peer's counts,
            # least_requests would see two idle engines and split them).
            assert [served(b, "q%d" % i) for i in range(12)] == ["e1"] * 12
        finally:
            for sock in socks:
                sock.close()
        assert wait_for(lambda: metric(b, "vllm_router_endpoint_peer_in_flight") == 0, timeout=10)
    finally:
        stop_all(routers, configs)


def test_replicas_with_different_secrets_ignore_each_other(sims):
    routers, configs = start_pair(sims, "prefix_aware", secrets=("one key", "another key"))
    a, b = routers
    try:
        assert wait_for(lambda: metric(b, "vllm_router_replica_sync_datagrams_total", result="rejected") >= 1,
                        timeout=10)
        assert metric(b, "vllm_router_replica_sync_peers") == 0
        assert metric(b, "vllm_router_replica_sync_datagrams_total", result="received") == 0
    finally:
        stop_all(routers, configs)
