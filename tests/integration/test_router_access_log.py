"""The access log (--access-log, --log-format): one line per finished request with its facts,
in text (logfmt) or JSON; every log line in JSON; rotation by SIGUSR1 and SIGHUP; the counters in
/metrics."""

import json
import os
import shutil
import signal
import tempfile
import time

import pytest

from routerproc import (call, chat_body, logfmt, metric_samples, open_stream, post_json, read_lines,  # noqa: E402
                        router_metrics, start_router, wait_for, wait_lines)
from simproc import start_sim

MODEL = "facebook/opt-125m"


@pytest.fixture(scope="module")
def sim():
    with start_sim("--io", "epoll", "--itl-ms", "20") as s:
        yield s


@pytest.fixture()
def logdir():
    d = tempfile.mkdtemp(prefix="vr-access-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_text_line_for_a_completion_has_every_field(sim, logdir):
    path = os.path.join(logdir, "access.log")
    with start_router("--model", "%s=%s" % (MODEL, sim.url), "--alias", "opt=" + MODEL, "--access-log", path) as r:
        status, hdrs, doc = post_json(r, "/v1/chat/completions?x=1", chat_body("opt", max_tokens=3),
                                      headers={"X-Request-Id": "acc-req-1"})
        assert status == 200, doc
        line = wait_lines(path, 1)[0]
    f = logfmt(line)
    assert f["msg"] == "access" and f["level"] == "info"
    assert f["request_id"] == "acc-req-1"
    assert f["client"] == "127.0.0.1"
    assert f["model"] == "opt" and f["resolved_model"] == MODEL
    assert f["endpoint"] == "/v1/chat/completions"
    assert f["upstream"].startswith("http://127.0.0.1:%d" % sim.port)
    assert f["status"] == "200" and f["outcome"] == "ok" and f["attempts"] == "1" and f["stream"] == "false"
    assert int(f["prompt_tokens"]) == doc["usage"]["prompt_tokens"]
    assert int(f["completion_tokens"]) == doc["usage"]["completion_tokens"] == 3
    assert f["tokens_estimated"] == "false"
    assert int(f["bytes_out"]) > 0 and int(f["bytes_in"]) == len(json.dumps(chat_body("opt", max_tokens=3)))
    assert float(f["duration_ms"]) >= float(f["ttfb_ms"]) > 0
    assert f["key_id"] == "" and f["error"] == ""
    time.strptime(f["time"], "%Y-%m-%dT%H:%M:%S.%fZ")


def test_json_lines_for_stream_rejection_and_cancel(sim, logdir):
    path = os.path.join(logdir, "access.jsonl")
    with start_router("--model", "%s=%s" % (MODEL, sim.url), "--access-log", path, "--log-format", "json") as r:
        # A stream with usage in its last event: tokens from it, time to the first event.
        body = chat_body(MODEL, max_tokens=4, stream=True, stream_options={"include_usage": True})
        status, _, raw = call(r, "POST", "/v1/chat/completions", body, headers={"X-Request-Id": "acc-stream"})
        assert status == 200 and b"[DONE]" in raw
        # An unknown model: rejected locally.
        status, _, _ = post_json(r, "/v1/completions", {"model": "nope", "prompt": "x"},
                                 headers={"X-Request-Id": "acc-404"})
        assert status == 404
        # A client that leaves mid-stream: cancelled.
        s, head, _ = open_stream(r, "/v1/chat/completions", chat_body(MODEL, max_tokens=200, stream=True),
                                 headers={"X-Request-Id": "acc-cancel"})
        assert " 200 " in head.split("\r\n")[0]
        s.close()
        lines = wait_lines(path, 3)
        stderr = r.stderr_text()
    by_id = {}
    for line in lines:
        doc = json.loads(line)
        assert doc["msg"] == "access"
        by_id[doc["request_id"]] = doc
    st = by_id["acc-stream"]
    assert st["stream"] is True and st["status"] == 200 and st["outcome"] == "ok"
    assert st["completion_tokens"] == 4 and st["prompt_tokens"] > 0 and st["tokens_estimated"] is False
    assert st["ttft_ms"] >= st["ttfb_ms"] and st["duration_ms"] >= st["ttft_ms"] + 3 * 20 * 0.9
    rej = by_id["acc-404"]
    assert rej["status"] == 404 and rej["outcome"] == "rejected" and rej["model"] == "nope"
    assert rej["resolved_model"] == "" and rej["upstream"] == "" and rej["error"]
    can = by_id["acc-cancel"]
    assert can["outcome"] == "cancelled" and can["stream"] is True and can["completion_tokens"] < 200
    # Every other log line is JSON too.
    other = [json.loads(l) for l in stderr.splitlines() if l.strip()]
    assert other and all({"time", "level", "msg"} <= set(d) for d in other)


def test_keys_appear_by_id_only_and_401s_are_logged(sim, logdir):
    import hashlib
    key = "sk-access-log-test-0123456789"
    keys = os.path.join(logdir, "keys.json")
    with open(keys, "w") as f:
        json.dump({"keys": [{"id": "team-a", "sha256": hashlib.sha256(key.encode()).hexdigest(), "admin": True}]}, f)
    path = os.path.join(logdir, "access.log")
    with start_router("--model", "%s=%s" % (MODEL, sim.url), "--keys-file", keys, "--access-log", path) as r:
        assert post_json(r, "/v1/chat/completions", chat_body(MODEL), headers={"Authorization": "Bearer " + key,
                                                                             "X-Request-Id": "acc-key"})[0] == 200
        assert post_json(r, "/v1/chat/completions", chat_body(MODEL), headers={"X-Request-Id": "acc-nokey"})[0] == 401
        lines = wait_lines(path, 2)
    text = "\n".join(lines)
    assert key not in text
    by_id = {logfmt(l)["request_id"]: logfmt(l) for l in lines}
    assert by_id["acc-key"]["key_id"] == "team-a"
    assert by_id["acc-nokey"]["status"] == "401" and by_id["acc-nokey"]["outcome"] == "rejected"


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGHUP])
def test_rotation_reopens_the_file(sim, logdir, sig):
    path = os.path.join(logdir, "access.log")
    with start_router("--model", "%s=%s" % (MODEL, sim.url), "--access-log", path) as r:
        assert post_json(r, "/v1/completions", {"model": MODEL, "prompt": "a"}, headers={"X-Request-Id": "rot-1"})[0] == 200
        wait_lines(path, 1)
        os.rename(path, path + ".1")
        os.kill(r.pid, sig)
        # The writer reopens before its next batch: the file appears at once, empty.
        assert wait_for(lambda: os.path.exists(path)), "no new file after %s" % sig
        assert post_json(r, "/v1/completions", {"model": MODEL, "prompt": "a"}, headers={"X-Request-Id": "rot-2"})[0] == 200
        new = wait_lines(path, 1)
        assert call(r, "GET", "/health")[0] == 200  # still serving
    old = read_lines(path + ".1")
    assert [logfmt(l)["request_id"] for l in old] == ["rot-1"]
    assert [logfmt(l)["request_id"] for l in new] == ["rot-2"]


def test_metrics_count_lines_and_off_writes_nothing(sim, logdir):
    path = os.path.join(logdir, "access.log")
    with start_router("--model", "%s=%s" % (MODEL, sim.url), "--access-log", path) as r:
        for i in range(5):
            assert post_json(r, "/v1/completions", {"model": MODEL, "prompt": "a"})[0] == 200
        wait_lines(path, 5)
        text = router_metrics(r)
        assert metric_samples(text, "vllm_router_access_log_lines_total") == [({}, 5.0)]
        assert metric_samples(text, "vllm_router_access_log_dropped_total") == [({}, 0.0)]
        # The lines are made on the observe queue's thread; nothing was dropped on the way there.
        assert metric_samples(text, "vllm_router_observe_queue_dropped_total") == [({}, 0.0)]
    with start_router("--model", "%s=%s" % (MODEL, sim.url)) as r:
        assert post_json(r, "/v1/completions", {"model": MODEL, "prompt": "a"})[0] == 200
        text = router_metrics(r)
        assert "vllm_router_access_log_lines_total" not in text
        assert "vllm_router_observe_queue_dropped_total" not in text  # no queue without a consumer
        assert r.stderr_text().count("msg=access") == 0


def test_stdout_access_log_and_bad_settings(sim, logdir):
    import select
    from routerproc import run_router
    with start_router("--model", "%s=%s" % (MODEL, sim.url), "--access-log", "-") as r:
        assert post_json(r, "/v1/completions", {"model": MODEL, "prompt": "a"}, headers={"X-Request-Id": "out-1"})[0] == 200
        ready, _, _ = select.select([r.proc.stdout], [], [], 5.0)
        assert ready, "no access line on standard output"
        line = r.proc.stdout.readline().decode()
        assert logfmt(line.strip())["request_id"] == "out-1"
    bad = run_router("--model", "%s=%s" % (MODEL, sim.url), "--access-log", "/nonexistent-dir/a.log")
    assert bad.returncode != 0 and "/nonexistent-dir/a.log" in bad.stderr
    bad = run_router("--model", "%s=%s" % (MODEL, sim.url), "--log-format", "yaml")
    assert bad.returncode != 0 and "text or json" in bad.stderr
    helptext = run_router("--help").stdout
    assert "--access-log" in helptext and "--log-format" in helptext
