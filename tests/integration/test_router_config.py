"""vllm-router command line: --help, --version, --check-config, environment variables, the
file < env < flag precedence (observed through which engine serves), and --demo."""

import json
import os
import re
import signal
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from routerproc import (chat_body as chat, assert_openai_error, call, clean_env, post_json, run_router,  # noqa: E402
                        start_router, wait_for)
from simproc import repo_root, start_sim  # noqa: E402

CHAT = "/v1/chat/completions"

FLAGS = ["--config", "--host", "--port", "--model", "--alias", "--lora", "--api-key", "--policy",
         "--default-model", "--max-body-bytes", "--connect-timeout-ms", "--read-timeout-ms",
         "--threads", "--max-connections", "--tls-cert", "--tls-key", "--log-level", "--check-config", "--demo",
         "--replica-sync-listen", "--replica-sync-peers", "--help", "--version"]
ENV_VARS = ["VLLM_ROUTER_CONFIG", "VLLM_ROUTER_HOST", "VLLM_ROUTER_PORT", "VLLM_ROUTER_MODELS",
            "VLLM_ROUTER_ALIASES", "VLLM_ROUTER_LORAS", "VLLM_ROUTER_API_KEYS",
            "VLLM_ROUTER_POLICY", "VLLM_ROUTER_DEFAULT_MODEL", "VLLM_ROUTER_MAX_BODY_BYTES",
            "VLLM_ROUTER_CONNECT_TIMEOUT_MS", "VLLM_ROUTER_READ_TIMEOUT_MS", "VLLM_ROUTER_THREADS",
            "VLLM_ROUTER_MAX_CONNECTIONS", "VLLM_ROUTER_TLS_CERT_FILE", "VLLM_ROUTER_TLS_KEY_FILE",
            "VLLM_ROUTER_LOG_LEVEL", "VLLM_ROUTER_REPLICA_SYNC_LISTEN", "VLLM_ROUTER_REPLICA_SYNC_PEERS",
            "VLLM_ROUTER_REPLICA_SYNC_SECRET"]


@pytest.fixture
def tmpdir_path():
    with tempfile.TemporaryDirectory() as d:
        yield d


def write(dirname, name, doc):
    path = os.path.join(dirname, name)
    with open(path, "w") as f:
        f.write(doc if isinstance(doc, str) else json.dumps(doc))
    return path


@pytest.fixture(scope="module")
def sims():
    """Three replicas of model `m` (ids A, B, C) and one of model `n` (id N)."""
    out = {i: start_sim("--model", "m", "--id", i, "--output-tokens", "1") for i in "ABC"}
    out["N"] = start_sim("--model", "n", "--id", "N", "--output-tokens", "1")
    yield out
    for s in out.values():
        s.stop()


def served_by(router, model):
    status, hdrs, body = post_json(router, CHAT, chat(model))
    assert status == 200, body
    return hdrs["x-sim-id"]


# ---------------------------------------------------------------- one-shot invocations

def test_help_lists_every_flag_and_variable():
    # A broken environment does not stop --help.
    res = run_router("--help", env=clean_env(VLLM_ROUTER_PORT="not-a-port",
                                             VLLM_ROUTER_CONFIG="/nonexistent.json"))
    assert res.returncode == 0, res.stderr
    for name in FLAGS + ENV_VARS:
        assert name in res.stdout, name
    assert res.stdout.startswith("vllm-router")
    assert run_router("-h").stdout == res.stdout


def test_help_matches_the_documented_flags_and_variables():
    """docs/configuration.md's flag and variable tables and --help name the same settings."""
    with open(os.path.join(repo_root(), "docs", "configuration.md")) as f:
        doc = f.read()
    doc_flags = set(re.findall(r"^\| `(--[a-z][a-z-]*)", doc, re.M)) | {"--help"}
    doc_vars = set(re.findall(r"^\| `(VLLM_ROUTER_[A-Z_]+)`", doc, re.M))
    text = run_router("--help").stdout
    help_flags = set(re.findall(r"^  (?:-h, )?(--[a-z][a-z-]*)", text, re.M))
    help_vars = set(re.findall(r"env: (VLLM_ROUTER_[A-Z_]+)", text))
    assert set(FLAGS) <= help_flags and set(ENV_VARS) <= help_vars
    assert help_flags == doc_flags, (help_flags ^ doc_flags)
    assert help_vars == doc_vars, (help_vars ^ doc_vars)


def project_version():
    with open(os.path.join(repo_root(), "CMakeLists.txt")) as f:
        return re.search(r"project\(\s*vllm_router\s+VERSION\s+([0-9.]+)", f.read()).group(1)


def test_version():
    res = run_router("--version")
    assert res.returncode == 0
    assert res.stdout.strip() == "vllm-router " + project_version()


def test_check_config_valid(sims, tmpdir_path):
    cfg = write(tmpdir_path, "ok.json", {
        "policy": "least_requests", "default_model": "alias-m",
        "models": [{"name": "m", "aliases": ["alias-m"], "loras": ["ad"],
                    "endpoints": [sims["A"].url, {"url": sims["B"].url, "weight": 2,
                                                  "api_key": "k"}]},
                   {"name": "n", "endpoints": [sims["N"].url]}]})
    res = run_router("--check-config", "--config", cfg)
    assert res.returncode == 0, res.stderr
    assert "configuration OK" in res.stdout and "2 model(s)" in res.stdout
    assert "least_requests" in res.stdout


@pytest.mark.parametrize("doc,field", [
    ({"models": [{"name": "m", "endpoints": [{"url": "http://127.0.0.1:9", "weight": 0}]}]},
     "models[0].endpoints[0].weight"),
    ({"models": [{"name": "m", "endpoints": [{"url": "http://127.0.0.1:9", "weight": -3}]}]},
     "models[0].endpoints[0].weight"),
    ({"port": "8080", "models": [{"name": "m", "endpoints": ["http://127.0.0.1:9"]}]}, "port"),
    ({"timeouts": {"conect_ms": 5}, "models": [{"name": "m", "endpoints": ["http://127.0.0.1:9"]}]},
     "timeouts.conect_ms"),
    ({"models": [{"name": "m", "endpoints": ["ftp://127.0.0.1:9"]}]}, "models[0].endpoints[0]"),
    ({"models": [{"name": "m", "aliases": ["x"], "endpoints": ["http://127.0.0.1:9"]},
                 {"name": "n", "aliases": ["x"], "endpoints": ["http://127.0.0.1:8"]}]},
     "models[1].aliases[0]"),
    ({"policy": "fastest", "models": [{"name": "m", "endpoints": ["http://127.0.0.1:9"]}]},
     "policy"),
    ({"default_model": "nope", "models": [{"name": "m", "endpoints": ["http://127.0.0.1:9"]}]},
     "default_model"),
    ('{"models": [', "invalid JSON"),
    ({"replica_sync": {"peers": ["router-sync:7071"]}, "models": [{"name": "m", "endpoints": ["http://127.0.0.1:9"]}]},
     "replica_sync.listen"),
    ({"replica_sync": {"listen": "0.0.0.0:7071", "peers": ["router-sync"]},
      "models": [{"name": "m", "endpoints": ["http://127.0.0.1:9"]}]}, "replica_sync.peers[0]"),
    ({"replica_sync": {"listen": "0.0.0.0:7071", "interval_ms": 100, "peer_timeout_ms": 50},
      "models": [{"name": "m", "endpoints": ["http://127.0.0.1:9"]}]}, "replica_sync.peer_timeout_ms"),
])
def test_check_config_invalid_names_the_field(tmpdir_path, doc, field):
    cfg = write(tmpdir_path, "bad.json", doc)
    res = run_router("--check-config", "--config", cfg)
    assert res.returncode != 0
    assert field in res.stderr, res.stderr
    assert "configuration OK" not in res.stdout


@pytest.mark.parametrize("args,env,name", [
    (["--port", "abc", "--model", "m=http://127.0.0.1:9"], {}, "--port"),
    (["--model", "m=http://127.0.0.1:9", "--alias", "q=qwen"], {}, "--alias"),
    ([], {"VLLM_ROUTER_PORT": "http", "VLLM_ROUTER_MODELS": "m=http://127.0.0.1:9"},
     "VLLM_ROUTER_PORT"),
    ([], {"VLLM_ROUTER_MODELS": "m"}, "VLLM_ROUTER_MODELS"),
    (["--bogus"], {}, "--bogus"),
    ([], {}, "no models configured"),
    (["--model", "m=http://127.0.0.1:9", "--replica-sync-listen", "7071"], {}, "--replica-sync-listen"),
    ([], {"VLLM_ROUTER_MODELS": "m=http://127.0.0.1:9", "VLLM_ROUTER_REPLICA_SYNC_PEERS": "a:1,http://b:2"},
     "VLLM_ROUTER_REPLICA_SYNC_PEERS"),
    # Peers without a listen address, whatever level gave them.
    (["--model", "m=http://127.0.0.1:9", "--replica-sync-peers", "a:7071"], {}, "replica_sync.listen"),
])
def test_bad_flags_and_variables_are_named(args, env, name):
    res = run_router("--check-config", *args, env=clean_env(**env))
    assert res.returncode != 0
    assert name in res.stderr, res.stderr


def test_check_config_accepts_replica_sync_from_the_environment():
    """The Helm chart's variables (listen, a headless Service's name as peers, the secret)."""
    res = run_router("--check-config", env=clean_env(
        VLLM_ROUTER_MODELS="m=http://127.0.0.1:9", VLLM_ROUTER_REPLICA_SYNC_LISTEN="0.0.0.0:7071",
        VLLM_ROUTER_REPLICA_SYNC_PEERS="prod-vllm-router-sync.llm.svc.cluster.local:7071",
        VLLM_ROUTER_REPLICA_SYNC_SECRET="s3cret"))
    assert res.returncode == 0, res.stderr
    assert "configuration OK" in res.stdout
    assert "s3cret" not in res.stdout + res.stderr
    res = run_router("--check-config", "--model", "m=http://127.0.0.1:9", "--replica-sync-secret", "x")
    assert res.returncode != 0 and "unknown flag '--replica-sync-secret'" in res.stderr, res.stderr


# ---------------------------------------------------------------- environment and precedence

def test_environment_configures_routing(sims):
    env = clean_env(VLLM_ROUTER_MODELS="m=%s;n=%s;" % (sims["A"].url, sims["N"].url),
                    VLLM_ROUTER_ALIASES="em=m; en=n",
                    VLLM_ROUTER_API_KEYS="k1, k2,",
                    VLLM_ROUTER_DEFAULT_MODEL="en",
                    VLLM_ROUTER_MAX_BODY_BYTES="2000",
                    VLLM_ROUTER_LOG_LEVEL="error")
    with start_router(env=env) as r:
        auth = {"Authorization": "Bearer k2"}
        for model, sim_id in (("m", "A"), ("em", "A"), ("n", "N"), ("en", "N"), (None, "N")):
            status, hdrs, body = post_json(r, CHAT, chat(model), headers=auth)
            assert status == 200 and hdrs["x-sim-id"] == sim_id, (model, body)
        assert post_json(r, CHAT, chat("m"), headers={"Authorization": "Bearer k1"})[0] == 200
        assert post_json(r, CHAT, chat("m"))[0] == 401
        big = chat("m")
        big["pad"] = "x" * 3000
        status, _, body = post_json(r, CHAT, big, headers=auth)
        assert status == 413
        assert_openai_error(body, 413)


def test_flags_override_env_override_file(sims, tmpdir_path):
    cfg = write(tmpdir_path, "base.json", {
        "models": [{"name": "m", "aliases": ["file-alias"], "endpoints": [sims["A"].url]},
                   {"name": "n", "endpoints": [sims["N"].url]}]})
    env_file = clean_env(VLLM_ROUTER_CONFIG=cfg)
    env_both = clean_env(VLLM_ROUTER_CONFIG=cfg, VLLM_ROUTER_MODELS="m=" + sims["B"].url)
    with start_router(env=env_file) as r:  # file only (found through VLLM_ROUTER_CONFIG)
        assert served_by(r, "m") == "A" and served_by(r, "file-alias") == "A"
    with start_router(env=env_both) as r:  # env replaces the file's replicas of m
        assert {served_by(r, "m") for _ in range(4)} == {"B"}
        assert served_by(r, "file-alias") == "B"  # the file's alias survives
        assert served_by(r, "n") == "N"  # other models are kept
    with start_router("--model", "m=" + sims["C"].url, env=env_both) as r:  # the flag wins
        assert {served_by(r, "m") for _ in range(4)} == {"C"}
        assert served_by(r, "file-alias") == "C" and served_by(r, "n") == "N"
    # Scalars too: the flag's default model beats the variable's.
    env_default = clean_env(VLLM_ROUTER_CONFIG=cfg, VLLM_ROUTER_DEFAULT_MODEL="n")
    with start_router(env=env_default) as r:
        assert served_by(r, None) == "N"
    with start_router("--default-model", "file-alias", env=env_default) as r:
        assert served_by(r, None) == "A"
    # --config beats VLLM_ROUTER_CONFIG.
    other = write(tmpdir_path, "other.json", {"models": [{"name": "m", "endpoints": [sims["C"].url]}]})
    with start_router("--config", other, env=env_file) as r:
        assert served_by(r, "m") == "C"
        assert post_json(r, CHAT, chat("n"))[0] == 404


# ---------------------------------------------------------------- demo

def children_of(pid):
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[1]) == pid:
            kids.append(int(entry))
    return kids


def test_demo_serves_two_models_and_stops_cleanly():
    r = start_router("--demo")
    try:
        kids = children_of(r.pid)
        assert len(kids) == 2, kids
        status, _, raw = call(r, "GET", "/v1/models")
        assert status == 200
        ids = {m["id"] for m in json.loads(raw)["data"]}
        assert {"meta-llama/Llama-2-7B-chat-hf", "TheBloke/Llama-2-13B-chat-GPTQ"} <= ids
        for model in ("meta-llama/Llama-2-7B-chat-hf", "TheBloke/Llama-2-13B-chat-GPTQ"):
            status, hdrs, body = post_json(r, CHAT, {
                "model": model, "messages": [{"role": "user", "content": "Hello"}],
                "max_tokens": 2}, headers={"x-sim-ttft-ms": "0", "x-sim-itl-ms": "0"})
            assert status == 200, body
            assert body["model"] == model
            assert body["choices"][0]["message"]["content"] == "tok0 tok1 "
        os.kill(r.pid, signal.SIGTERM)
        assert r.proc.wait(timeout=5) == 0
        assert wait_for(lambda: not any(os.path.exists("/proc/%d" % k) for k in kids)), kids
    finally:
        r.stop()
