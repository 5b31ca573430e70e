"""Tenants: API keys from a keys file (hashed), model scopes, rate limits (requests, tokens,
concurrency), expiry, the admin key, reload without restart, and limits shared by router
replicas through a real Redis server."""

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading

import pytest

from routerproc import (assert_openai_error, call, chat_body, metric_samples, open_stream, post_json, router_binary,
                        run_router, start_router, wait_for)
from simproc import start_sim

MODEL = "facebook/opt-125m"


def digest(key):
    return hashlib.sha256(key.encode()).hexdigest()


def write_keys(path, keys):
    """keys: [(plain key, {fields})] -> a keys file with their digests."""
    doc = {"keys": [dict({"sha256": digest(k)}, **fields) for k, fields in keys]}
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, path)  # as a mounted Secret changes: a new file, never a half-written one


def bearer(key):
    return {"Authorization": "Bearer " + key}


def assert_rate_limited(raw):
    doc = json.loads(raw)
    err = doc["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert err["code"] == "rate_limit_exceeded", err
    assert err["type"] == "RateLimitError", err
    return err


@pytest.fixture(scope="module")
def sim():
    with start_sim("--io", "epoll") as s:
        yield s


@pytest.fixture()
def keys_dir():
    d = tempfile.mkdtemp(prefix="vr-keys-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_hash_key_prints_the_sha256_of_stdin():
    r = subprocess.run([router_binary(), "--hash-key"], input="sk-secret\n",
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == digest("sk-secret")


def test_keys_file_errors_name_the_field(keys_dir):
    path = os.path.join(keys_dir, "keys.json")
    cases = [
        ({"keys": [{"id": "a", "sha256": "abc"}]}, "keys[0].sha256"),
        ({"keys": [{"sha256": digest("x")}]}, "needs an `id`"),
        ({"keys": [{"id": "a", "sha256": digest("x")}, {"id": "a", "sha256": digest("y")}]}, "duplicate id"),
        ({"keys": [{"id": "a", "sha256": digest("x"), "rpm": -1}]}, "keys[0].rpm"),
        ({"keys": [{"id": "a", "sha256": digest("x"), "expires": "tomorrow"}]}, "keys[0].expires"),
        ({"keys": [{"id": "a", "sha256": digest("x"), "colour": "red"}]}, "keys[0].colour"),
        ({"keys": []}, "no key"),
    ]
    for doc, expected in cases:
        with open(path, "w") as f:
            json.dump(doc, f)
        r = run_router("--model", "m=http://127.0.0.1:1", "--keys-file", path, "--check-config")
        assert r.returncode != 0, (doc, r.stdout)
        assert expected in r.stderr, (doc, r.stderr)


def test_scope_limits_expiry_and_admin(sim, keys_dir):
    path = os.path.join(keys_dir, "keys.json")
    write_keys(path, [
        ("sk-scoped", {"id": "scoped", "models": ["other-*"]}),
        ("sk-open", {"id": "open", "models": ["facebook/*"]}),
        ("sk-rpm", {"id": "rpm3", "rpm": 3}),
        ("sk-old", {"id": "old", "expires": "2020-01-01T00:00:00Z"}),
        ("sk-admin", {"id": "ops", "admin": True}),
    ])
    config = os.path.join(keys_dir, "router.json")
    with open(config, "w") as f:
        json.dump({"admin_routes": ["/v1/load_lora_adapter"]}, f)
    with start_router("--config", config, "--model", "%s=%s" % (MODEL, sim.url), "--keys-file", path) as router:
        # No key, a wrong key, two keys: 401.
        for headers in ({}, bearer("sk-wrong"), {"Authorization": "Bearer sk-open, Bearer sk-open"}):
            status, _, raw = call(router, "POST", "/v1/chat/completions", chat_body(MODEL), headers)
            assert status == 401, raw
            assert_openai_error(raw, 401, "AuthenticationError")
        # Expired: 401 that says so.
        status, _, raw = call(router, "POST", "/v1/chat/completions", chat_body(MODEL), bearer("sk-old"))
        assert status == 401 and b"expired" in raw, raw
        # Outside the scope: 403; inside: 200 (the scheme in any case).
        status, _, raw = call(router, "POST", "/v1/chat/completions", chat_body(MODEL), bearer("sk-scoped"))
        assert status == 403, raw
        assert assert_openai_error(raw, 403, "PermissionDeniedError")["param"] == "model"
        status, _, raw = call(router, "POST", "/v1/chat/completions", chat_body(MODEL),
                              {"Authorization": "bearer sk-open"})
        assert status == 200, raw
        # Requests per minute: 3 pass, the 4th is 429 with Retry-After and OpenAI's shape.
        for _ in range(3):
            status, _, raw = call(router, "POST", "/v1/chat/completions", chat_body(MODEL), bearer("sk-rpm"))
            assert status == 200, raw
        status, headers, raw = call(router, "POST", "/v1/chat/completions", chat_body(MODEL), bearer("sk-rpm"))
        assert status == 429, raw
        assert 1 <= int(headers["retry-after"]) <= 120, headers
        assert "rpm3" in assert_rate_limited(raw)["message"]
        # A refused request does not count against another key.
        assert call(router, "POST", "/v1/chat/completions", chat_body(MODEL), bearer("sk-open"))[0] == 200
        # Admin routes: a non-admin key gets 403, the admin key is forwarded (the sim answers it).
        status, _, raw = call(router, "POST", "/v1/load_lora_adapter", {"model": MODEL, "lora_name": "x"},
                              bearer("sk-open"))
        assert status == 403, raw
        status, headers, raw = call(router, "POST", "/v1/load_lora_adapter", {"model": MODEL, "lora_name": "x"},
                                    bearer("sk-admin"))
        assert "x-sim-id" in headers, (status, raw)  # the engine answered, whatever it said
        # /metrics: an admin key only; usage per key id, never a key.
        assert call(router, "GET", "/metrics")[0] == 401
        assert call(router, "GET", "/metrics", headers=bearer("sk-open"))[0] == 403
        status, _, raw = call(router, "GET", "/metrics", headers=bearer("sk-admin"))
        assert status == 200
        text = raw.decode()
        by_key = {(l["key_id"], l["status"]): v for l, v in metric_samples(text, "vllm_router_key_requests_total")}
        assert by_key[("rpm3", "200")] == 3 and by_key[("rpm3", "429")] == 1, by_key
        assert by_key[("scoped", "403")] == 1, by_key
        tokens = {(l["key_id"], l["kind"]): v for l, v in metric_samples(text, "vllm_router_key_tokens_total")}
        assert tokens[("open", "completion")] >= 2 and tokens[("open", "prompt")] >= 2, tokens
        for secret in ("sk-open", "sk-rpm", "sk-admin", "sk-scoped"):
            assert secret not in text
            assert secret not in router.stderr_text()


def test_concurrency_limit_and_tokens_per_minute(sim, keys_dir):
    path = os.path.join(keys_dir, "keys.json")
    write_keys(path, [("sk-two", {"id": "two", "max_concurrent": 2}), ("sk-tpm", {"id": "tpm", "tpm": 30})])
    with start_router("--model", "%s=%s" % (MODEL, sim.url), "--keys-file", path) as router:
        body = {"model": MODEL, "prompt": "x", "max_tokens": 50, "stream": True}
        slow = dict(bearer("sk-two"), **{"x-sim-itl-ms": "100"})
        streams = [open_stream(router, "/v1/completions", body, slow) for _ in range(2)]
        try:
            status, headers, raw = call(router, "POST", "/v1/completions", body, bearer("sk-two"))
            assert status == 429, raw
            assert "concurrent" in assert_rate_limited(raw)["message"]
        finally:
            for s, _, _ in streams:
                s.close()
        # The places come back when the clients leave.
        assert wait_for(lambda: call(router, "POST", "/v1/completions", dict(body, max_tokens=2),
                                     bearer("sk-two"))[0] == 200, timeout=5)
        # Tokens per minute, counted from `usage`: 25 + 1 prompt tokens fit, the next request not.
        status, _, doc = post_json(router, "/v1/completions", {"model": MODEL, "prompt": "x", "max_tokens": 25},
                                   bearer("sk-tpm"))
        assert status == 200 and doc["usage"]["total_tokens"] >= 26, doc
        status, _, doc = post_json(router, "/v1/completions", {"model": MODEL, "prompt": "x", "max_tokens": 5},
                                   bearer("sk-tpm"))
        assert status == 200, doc  # 26 < 30: still allowed
        status, _, raw = call(router, "POST", "/v1/completions", {"model": MODEL, "prompt": "x", "max_tokens": 1},
                              bearer("sk-tpm"))
        assert status == 429, raw
        assert "tokens per minute" in assert_rate_limited(raw)["message"]


def test_keys_reload_without_restart(sim, keys_dir):
    path = os.path.join(keys_dir, "keys.json")
    write_keys(path, [("sk-first", {"id": "first"})])
    with start_router("--model", "%s=%s" % (MODEL, sim.url), "--keys-file", path) as router:
        pid = router.proc.pid
        assert call(router, "POST", "/v1/chat/completions", chat_body(MODEL), bearer("sk-first"))[0] == 200
        assert call(router, "POST", "/v1/chat/completions", chat_body(MODEL), bearer("sk-second"))[0] == 401
        # The file changes (as a Secret volume does): picked up without a signal.
        write_keys(path, [("sk-second", {"id": "second"})])
        assert wait_for(lambda: call(router, "POST", "/v1/chat/completions", chat_body(MODEL),
                                     bearer("sk-second"))[0] == 200, timeout=5)
        assert call(router, "POST", "/v1/chat/completions", chat_body(MODEL), bearer("sk-first"))[0] == 401
        # A broken file keeps the keys in force.
        with open(path, "w") as f:
            f.write("{not json")
        os.kill(pid, signal.SIGHUP)
        assert wait_for(lambda: "keys not reloaded" in router.stderr_text(), timeout=5)
        assert call(router, "POST", "/v1/chat/completions", chat_body(MODEL), bearer("sk-second"))[0] == 200
        assert router.proc.pid == pid and router.proc.poll() is None


# ------------------------------------------------------------------------------------ Redis

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture()
def redis_server():
    binary = shutil.which("redis-server")
    assert binary, "redis-server is missing (tools/install-deps.sh installs it)"
    port = free_port()
    d = tempfile.mkdtemp(prefix="vr-redis-")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", d], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def ping():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    assert wait_for(ping, timeout=10), "redis-server did not start"
    yield proc, port
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    shutil.rmtree(d, ignore_errors=True)


def test_three_routers_sharing_redis_hold_a_600_rpm_key(sim, keys_dir, redis_server):
    _, port = redis_server
    path = os.path.join(keys_dir, "keys.json")
    write_keys(path, [("sk-shared", {"id": "shared", "rpm": 600})])
    routers = [start_router("--model", "%s=%s" % (MODEL, sim.url), "--keys-file", path,
                            "--rate-limit-redis", "127.0.0.1:%d" % port, "--threads", "1") for _ in range(3)]
    try:
        ok = [0, 0, 0]
        limited = [0, 0, 0]
        errors = []

        def client(i):
            # Keep-alive clients, one per router, together far above 600 requests a minute.
            import http.client
            conn = http.client.HTTPConnection(routers[i].host, routers[i].port, timeout=10)
            body = json.dumps(chat_body(MODEL))
            for _ in range(400):
                conn.request("POST", "/v1/chat/completions", body,
                             dict(bearer("sk-shared"), **{"Content-Type": "application/json"}))
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    ok[i] += 1
                elif resp.status == 429:
                    limited[i] += 1
                else:
                    errors.append(resp.status)
            conn.close()

        threads = [threading.Thread(target=client, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
        total = sum(ok)
        # 1,200 requests within seconds: the shared minute admits 600 (sliding window: a request
        # near a minute boundary may see a little of the next), within 5 %.
        print("shared 600 rpm key over 3 routers: admitted", ok, "limited", limited)
        assert 570 <= total <= 630, (ok, limited)
        assert all(n > 0 for n in ok), ok  # every router admitted some: the count is shared
        assert sum(limited) == 1200 - total
        for r in routers:
            assert "rate limits are held per router" not in r.stderr_text()
    finally:
        for r in routers:
            r.stop()


def test_redis_down_falls_back_to_the_local_limiter(sim, keys_dir, redis_server):
    proc, port = redis_server
    path = os.path.join(keys_dir, "keys.json")
    write_keys(path, [("sk-k", {"id": "k", "rpm": 5})])
    with start_router("--model", "%s=%s" % (MODEL, sim.url), "--keys-file", path,
                      "--rate-limit-redis", "127.0.0.1:%d" % port) as router:
        assert call(router, "POST", "/v1/chat/completions", chat_body(MODEL), bearer("sk-k"))[0] == 200
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=5)
        # No request is lost or hung: the local limiter decides, and still holds the key.
        statuses = [call(router, "POST", "/v1/chat/completions", chat_body(MODEL), bearer("sk-k"))[0]
                    for _ in range(8)]
        assert set(statuses) <= {200, 429}, statuses
        assert statuses.count(200) == 4 and statuses[-1] == 429, statuses
        assert wait_for(lambda: "rate limits are held per router" in router.stderr_text(), timeout=5)
