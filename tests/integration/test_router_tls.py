"""TLS on the listener (--tls-cert/--tls-key): curl and Python's ssl client with the right CA,
refusals (wrong CA, TLS 1.1, h2 only), ALPN, plain HTTP on the TLS port, certificate reload on
SIGHUP with open connections kept, and start-up errors. Certificates come from the openssl tool
(tlscerts.py); every process listens on 127.0.0.1 with a free port."""

import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from routerproc import (assert_openai_error, call, chat_body, metric_samples, run_router, start_router,  # noqa: E402
                        wait_for)
from simproc import start_sim  # noqa: E402
from tlscerts import make_certs  # noqa: E402

CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def certs():
    with tempfile.TemporaryDirectory(prefix="vllm-router-tls-") as d:
        yield make_certs(d)


@pytest.fixture(scope="module")
def sim():
    s = start_sim("--model", "m", "--output-tokens", "3", "--max-model-len", "1000000")
    yield s
    s.stop()


@pytest.fixture
def live_certs(certs):
    """A copy of the server pair at paths a test may overwrite (SIGHUP tests)."""
    with tempfile.TemporaryDirectory(prefix="vllm-router-live-") as d:
        cert, key = os.path.join(d, "live.pem"), os.path.join(d, "live.key")
        shutil.copy(certs.cert, cert)
        shutil.copy(certs.key, key)
        yield cert, key


@pytest.fixture
def live_router(sim, live_certs):
    """A router on the live_certs pair (a test may replace the files)."""
    cert, key = live_certs
    r = start_router("--model", "m=" + sim.url, "--tls-cert", cert, "--tls-key", key)
    yield r, cert, key
    r.stop()


@pytest.fixture
def router(sim, certs):
    r = start_router("--model", "m=" + sim.url, "--tls-cert", certs.cert, "--tls-key", certs.key,
                     "--log-level", "debug")
    yield r
    r.stop()


def https(router, cafile, host="localhost", **kw):
    ctx = ssl.create_default_context(cafile=cafile)
    for name, value in kw.items():
        setattr(ctx, name, value)
    return http.client.HTTPSConnection(host, router.port, context=ctx, timeout=5)


def get(conn, path="/health"):
    """GET on `conn` (kept open for the next request); returns (status, body)."""
    conn.request("GET", path)
    resp = conn.getresponse()
    return resp.status, resp.read()


def curl(*args):
    return subprocess.run(["curl", "-sS", "--max-time", "10"] + list(args), capture_output=True, text=True, timeout=20)


def tls_failures(router, cafile):
    conn = https(router, cafile)
    text = get(conn, "/metrics")[1].decode()
    conn.close()
    samples = metric_samples(text, "vllm_router_tls_handshake_failures_total")
    assert len(samples) == 1, text[-500:]
    return samples[0][1]


def test_announces_https_and_curl_gets_answers_streamed_and_not(router, certs):
    assert router.url == "https://127.0.0.1:%d" % router.port
    url = "https://localhost:%d%s" % (router.port, CHAT)
    r = curl("--cacert", certs.ca, "-H", "Content-Type: application/json", "-d", json.dumps(chat_body("m")), url)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["object"] == "chat.completion" and doc["model"] == "m"

    r = curl("--cacert", certs.ca, "-N", "-H", "Content-Type: application/json",
             "-d", json.dumps(chat_body("m", stream=True, max_tokens=5)), url)
    assert r.returncode == 0, r.stderr
    events = [line for line in r.stdout.splitlines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    assert len(events) == 1 + 5 + 1  # role, tokens, [DONE]
    # The address the certificate lists works too.
    r = curl("--cacert", certs.ca, "https://127.0.0.1:%d/health" % router.port, "-o", "/dev/null",
             "-w", "%{http_code}")
    assert r.stdout == "200", r.stderr


def test_keep_alive_requests_on_one_tls_connection(router, certs):
    conn = https(router, certs.ca)
    for i in range(5):
        conn.request("POST", CHAT, body=json.dumps(chat_body("m", max_tokens=2)),
                     headers={"Content-Type": "application/json", "X-Request-Id": "tls-%d" % i})
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200, body
        assert resp.getheader("X-Request-Id") == "tls-%d" % i
    # A body larger than one TLS record and one socket read.
    big = chat_body("m", max_tokens=1)
    big["messages"][0]["content"] = "x" * 300000
    conn.request("POST", CHAT, body=json.dumps(big), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200, resp.read()
    resp.read()
    conn.close()


def test_wrong_ca_is_refused_and_counted(router, certs):
    before = tls_failures(router, certs.ca)
    r = curl("--cacert", certs.other_ca, "https://localhost:%d/health" % router.port)
    assert r.returncode == 60, (r.returncode, r.stderr)  # peer certificate cannot be authenticated
    with pytest.raises(ssl.SSLCertVerificationError):
        get(https(router, certs.other_ca))
    # curl's alert (unknown ca) ends the handshake on the router's side: counted, logged once.
    assert wait_for(lambda: tls_failures(router, certs.ca) >= before + 1)
    assert "TLS handshake(s) failed since the last report" in router.stderr_text()


def test_tls_1_1_is_refused(router, certs):
    r = curl("--cacert", certs.ca, "--tlsv1.0", "--tls-max", "1.1", "https://localhost:%d/health" % router.port)
    assert r.returncode == 35, (r.returncode, r.stderr)  # SSL connect error
    conn = https(router, certs.ca, minimum_version=ssl.TLSVersion.TLSv1_2, maximum_version=ssl.TLSVersion.TLSv1_2)
    assert get(conn)[0] == 200
    assert conn.sock.version() == "TLSv1.2"
    conn.close()


def test_alpn_selects_http_1_1_and_refuses_h2_only(router, certs):
    r = curl("-v", "--http2", "--cacert", certs.ca, "https://localhost:%d/health" % router.port, "-o", "/dev/null")
    assert r.returncode == 0, r.stderr
    assert "ALPN: server accepted http/1.1" in r.stderr, r.stderr
    ctx = ssl.create_default_context(cafile=certs.ca)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", router.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            assert s.selected_alpn_protocol() == "http/1.1"
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", router.port), timeout=5) as raw:
        with pytest.raises(ssl.SSLError, match="no application protocol"):
            ctx.wrap_socket(raw, server_hostname="localhost")
    # Without ALPN at all: HTTP/1.1.
    ctx.set_alpn_protocols([])
    conn = http.client.HTTPSConnection("localhost", router.port, context=ssl.create_default_context(cafile=certs.ca))
    assert get(conn)[0] == 200


def test_plain_http_on_the_tls_port_is_closed_and_the_router_serves_on(router, certs):
    before = tls_failures(router, certs.ca)
    with socket.create_connection(("127.0.0.1", router.port), timeout=5) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    assert not data.startswith(b"HTTP/")  # no plain answer: at most a TLS alert
    assert wait_for(lambda: tls_failures(router, certs.ca) == before + 1)
    assert "failed: http request" in router.stderr_text()
    assert get(https(router, certs.ca))[0] == 200


def test_sighup_reloads_the_certificate_and_open_connections_keep_theirs(live_router, certs):
    router, cert, key = live_router
    old = https(router, certs.ca)
    assert get(old)[0] == 200
    # A renewed certificate (another CA's): files replaced, then SIGHUP.
    shutil.copy(certs.other_cert, cert)
    shutil.copy(certs.other_key, key)
    os.kill(router.pid, signal.SIGHUP)
    assert wait_for(lambda: "TLS certificate and key re-read" in router.stderr_text())
    # The connection made before keeps its session and is served.
    old.request("POST", CHAT, body=json.dumps(chat_body("m")), headers={"Content-Type": "application/json"})
    resp = old.getresponse()
    assert resp.status == 200, resp.read()
    resp.read()
    # A new connection sees the new certificate: the old CA no longer verifies it.
    assert get(https(router, certs.other_ca))[0] == 200
    with pytest.raises(ssl.SSLCertVerificationError):
        get(https(router, certs.ca))

    # A broken certificate: the reload is refused, the current pair stays.
    with open(cert, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    os.kill(router.pid, signal.SIGHUP)
    assert wait_for(lambda: "TLS certificate reload failed, keeping the current one" in router.stderr_text())
    assert get(https(router, certs.other_ca))[0] == 200
    assert get(old)[0] == 200
    assert router.proc.poll() is None


@pytest.mark.parametrize("case", ["cert_without_key", "key_without_cert", "missing_key", "mismatched", "garbage"])
def test_startup_errors_name_the_file(sim, certs, case):
    garbage = os.path.join(certs.dir, "garbage.pem")
    with open(garbage, "w") as f:
        f.write("not a certificate\n")
    args, code, words = {
        "cert_without_key": (["--tls-cert", certs.cert], 2, "tls_cert_file is set but tls_key_file is not"),
        "key_without_cert": (["--tls-key", certs.key], 2, "tls_key_file is set but tls_cert_file is not"),
        "missing_key": (["--tls-cert", certs.cert, "--tls-key", certs.dir + "/absent.key"], 1,
                        "tls_key_file: cannot read '%s/absent.key': No such file or directory" % certs.dir),
        "mismatched": (["--tls-cert", certs.cert, "--tls-key", certs.other_key], 1,
                       "is not the PEM private key of the certificate"),
        "garbage": (["--tls-cert", garbage, "--tls-key", certs.key], 1, "tls_cert_file: no PEM certificate in"),
    }[case]
    for extra in ([], ["--check-config"]):
        r = run_router("--host", "127.0.0.1", "--port", "0", "--model", "m=" + sim.url, *(args + extra))
        assert r.returncode == code, (r.returncode, r.stderr)
        assert words in r.stderr, r.stderr
    r = run_router("--model", "m=" + sim.url, "--tls-cert", certs.cert, "--tls-key", certs.key, "--check-config")
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------- https:// endpoints

@pytest.fixture(scope="module")
def tls_sim(certs):
    """An engine behind TLS with a certificate for localhost and 127.0.0.1 (signed by certs.ca)."""
    s = start_sim("--model", "m", "--id", "tls-sim", "--output-tokens", "3", "--tls-cert", certs.cert,
                  "--tls-key", certs.key)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def wrong_name_sim(certs):
    """An engine behind TLS whose certificate (signed by certs.ca) names wrong.example only."""
    s = start_sim("--model", "m", "--id", "wrong-name", "--tls-cert", certs.wrong_name, "--tls-key",
                  certs.wrong_name_key)
    yield s
    s.stop()


def router_with(tmp, endpoints, upstream_tls=None, extra=(), **keys):
    doc = {"models": [{"name": "m", "endpoints": endpoints}]}
    doc.update(keys)
    if upstream_tls is not None:
        doc["upstream_tls"] = upstream_tls
    path = os.path.join(tmp, "config.json")
    with open(path, "w") as f:
        json.dump(doc, f)
    return start_router("--config", path, *extra)


def sim_stats_https(sim, cafile):
    conn = http.client.HTTPSConnection("localhost", sim.port, context=ssl.create_default_context(cafile=cafile))
    return json.loads(get(conn, "/sim/stats")[1])


def healthy(router):
    _, _, raw = call(router, "GET", "/metrics")
    return [v for _, v in metric_samples(raw.decode(), "vllm_router_endpoint_healthy")]


def test_https_endpoint_with_the_right_ca(tls_sim, certs, tmp_path):
    assert tls_sim.url.startswith("https://")
    endpoint = "https://localhost:%d" % tls_sim.port
    router = router_with(str(tmp_path), [endpoint], {"ca_file": certs.ca},
                         health_check={"interval_ms": 50, "timeout_ms": 1000})
    try:
        status, hdrs, body = call(router, "POST", CHAT, chat_body("m"))
        assert status == 200, body
        assert hdrs["x-sim-id"] == "tls-sim"
        stats = sim_stats_https(tls_sim, certs.ca)
        assert stats["last_headers"]["host"] == "localhost:%d" % tls_sim.port
        status, hdrs, body = call(router, "POST", CHAT, chat_body("m", stream=True, max_tokens=4))
        assert status == 200, body
        assert hdrs["content-type"].startswith("text/event-stream")
        assert body.count(b"data: ") == 1 + 4 + 1 and body.endswith(b"data: [DONE]\n\n")
        assert healthy(router) == [1]
        assert "failed" not in router.stderr_text()
    finally:
        router.stop()


@pytest.mark.parametrize("case", ["wrong_ca", "host_name_mismatch", "ip_mismatch"])
def test_https_endpoint_that_fails_verification_is_a_502_in_openai_shape(tls_sim, wrong_name_sim, certs,
                                                                          tmp_path, case):
    endpoint, ca, reason = {
        "wrong_ca": ("https://localhost:%d" % tls_sim.port, certs.other_ca,
                     "certificate verify failed: unable to get local issuer certificate"),
        "host_name_mismatch": ("https://localhost:%d" % wrong_name_sim.port, certs.ca,
                               "certificate verify failed: hostname mismatch"),
        "ip_mismatch": ("https://127.0.0.1:%d" % wrong_name_sim.port, certs.ca,
                        "certificate verify failed: IP address mismatch"),
    }[case]
    router = router_with(str(tmp_path), [endpoint], {"ca_file": ca},
                         health_check={"interval_ms": 50, "timeout_ms": 1000})
    try:
        # The health probes verify the same way: the endpoint turns unhealthy.
        assert wait_for(lambda: healthy(router) == [0], timeout=5.0)
        status, _, body = call(router, "POST", CHAT, chat_body("m"))
        assert status == 502, body
        err = assert_openai_error(body, 502)
        assert "cannot connect to %s" % endpoint in err["message"]
        assert "TLS handshake failed: " + reason in err["message"], err["message"]
        status, _, body = call(router, "POST", CHAT, chat_body("m", stream=True))
        assert status == 502, body
        assert_openai_error(body, 502)
    finally:
        router.stop()


def test_a_failed_handshake_moves_to_another_endpoint_and_verification_can_be_turned_off(
        tls_sim, wrong_name_sim, certs, tmp_path):
    good = "https://127.0.0.1:%d" % tls_sim.port
    bad = "https://localhost:%d" % wrong_name_sim.port
    router = router_with(str(tmp_path), [bad, good], {"ca_file": certs.ca})
    try:
        for _ in range(6):  # round robin: every other pick is the bad one, retried on the good one
            status, hdrs, body = call(router, "POST", CHAT, chat_body("m"))
            assert status == 200, body
            assert hdrs["x-sim-id"] == "tls-sim"
    finally:
        router.stop()
    router = router_with(str(tmp_path), [bad], {"ca_file": certs.other_ca, "insecure_skip_verify": True})
    try:
        status, hdrs, body = call(router, "POST", CHAT, chat_body("m"))
        assert status == 200, body
        assert hdrs["x-sim-id"] == "wrong-name"
    finally:
        router.stop()


def test_an_unreadable_ca_file_is_a_startup_error(tls_sim, tmp_path):
    path = os.path.join(str(tmp_path), "config.json")
    with open(path, "w") as f:
        json.dump({"models": [{"name": "m", "endpoints": ["https://localhost:%d" % tls_sim.port]}],
                   "upstream_tls": {"ca_file": "/nonexistent/ca.pem"}}, f)
    r = run_router("--config", path, "--check-config")
    assert r.returncode != 0
    assert "upstream_tls.ca_file: cannot read '/nonexistent/ca.pem'" in r.stderr, r.stderr


def test_tls_at_both_ends(tls_sim, certs, tmp_path):
    path = os.path.join(str(tmp_path), "config.json")
    with open(path, "w") as f:
        json.dump({"models": [{"name": "m", "endpoints": ["https://localhost:%d" % tls_sim.port]}],
                   "upstream_tls": {"ca_file": certs.ca}}, f)
    router = start_router("--config", path, "--tls-cert", certs.cert, "--tls-key", certs.key)
    try:
        r = curl("--cacert", certs.ca, "-H", "Content-Type: application/json",
                 "-d", json.dumps(chat_body("m", stream=True, max_tokens=3)),
                 "https://localhost:%d%s" % (router.port, CHAT))
        assert r.returncode == 0, r.stderr
        assert r.stdout.rstrip().endswith("data: [DONE]")
    finally:
        router.stop()


def test_a_changed_certificate_file_is_taken_up_without_a_signal(live_router, certs):
    """A Kubernetes Secret update replaces the files: the router notices within seconds."""
    router, cert, key = live_router
    conn = https(router, certs.ca)
    assert get(conn)[0] == 200
    # Written elsewhere and renamed into place, both files, as the kubelet swaps a Secret.
    for src, dst in ((certs.other_cert, cert), (certs.other_key, key)):
        shutil.copy(src, dst + ".new")
        os.replace(dst + ".new", dst)
    assert wait_for(lambda: "TLS certificate and key re-read" in router.stderr_text(), timeout=10.0)
    assert get(https(router, certs.other_ca))[0] == 200
    assert get(conn)[0] == 200  # the connection made before still works
