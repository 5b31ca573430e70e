"""The status page in a real browser: Debian's headless Chromium loads GET /status from a router
with three simulated engines, the test kills one engine by PID and polls (fresh --dump-dom runs,
with a deadline) until the page renders that endpoint unhealthy, checks what the page shows
(model names as text, endpoint rows, states, the escaping of a hostile model name) and saves a
screenshot under the build tree ($STATUS_PAGE_OUT, else build/status-page).

Chromium runs in its own session with a fresh profile; on a timeout its process group (the one
this test started) is killed."""

import html.parser
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from routerproc import call, chat_body, post_json, start_router  # noqa: E402
from simproc import repo_root, start_sim  # noqa: E402

LLAMA = "org/llama-status"
QWEN = "org/qwen-status"
HOSTILE = '<img src=x onerror="document.title=1">&amp;<b>'  # must show as text, never as markup


def chromium_binary():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise AssertionError("no chromium on PATH: tools/install-deps.sh installs Debian's `chromium`")


def out_dir():
    d = os.environ.get("STATUS_PAGE_OUT") or os.path.join(repo_root(), "build", "status-page")
    os.makedirs(d, exist_ok=True)
    return d


def run_chromium(args, timeout=60):
    """Runs headless Chromium once with a throwaway profile; returns its stdout."""
    profile = tempfile.mkdtemp(prefix="vr-chromium-")
    cmd = [chromium_binary(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--no-default-browser-check", "--disable-dev-shm-usage", "--disable-extensions",
           "--hide-scrollbars", "--user-data-dir=" + profile] + args
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the session this call started: browser and children
        proc.communicate()
        raise
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert proc.returncode == 0, (proc.returncode, err.decode(errors="replace")[-2000:])
    return out.decode(errors="replace")


class PageModel(html.parser.HTMLParser):
    """What the rendered DOM shows: per model section its name, endpoint rows (state, cells),
    plus every element name seen (to prove data never became markup)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.models = {}       # data-model -> {"title": text, "rows": {endpoint: {...}}}
        self.tags = set()
        self.body_attrs = {}
        self.text = {}         # element id -> text
        self._model = None
        self._row = None
        self._cell = None
        self._in_h2 = False
        self._id = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.add(tag)
        if tag == "body":
            self.body_attrs = a
        if "id" in a:
            self._id = a["id"]
            self.text.setdefault(self._id, "")
        if tag == "section" and "data-model" in a:
            self._model = {"title": "", "rows": {}}
            self.models[a["data-model"]] = self._model
        elif tag == "h2" and self._model is not None:
            self._in_h2 = True
        elif tag == "tr" and "data-endpoint" in a and self._model is not None:
            self._row = {"state": a.get("data-state"), "cells": []}
            self._model["rows"][a["data-endpoint"]] = self._row
        elif tag == "td" and self._row is not None:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "h2":
            self._in_h2 = False
        elif tag == "td" and self._row is not None and self._cell is not None:
            self._row["cells"].append(self._cell.strip())
            self._cell = None
        elif tag == "tr":
            self._row = None
        elif tag == "section":
            self._model = None
        self._id = None

    def handle_data(self, data):
        if self._in_h2 and self._model is not None:
            self._model["title"] += data
        if self._cell is not None:
            self._cell += data
        if self._id is not None:
            self.text[self._id] += data


def render(url):
    """One page load: the DOM after the page fetched status.json (virtual time lets it run)."""
    dom = run_chromium(["--virtual-time-budget=3000", "--dump-dom", url])
    page = PageModel()
    page.feed(dom)
    return page, dom


def endpoint_id(sim):
    return "http://127.0.0.1:%d" % sim.port


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", head
    return struct.unpack(">II", head[16:24])


def test_status_page_renders_a_killed_engine_in_chromium():
    out = out_dir()
    with tempfile.TemporaryDirectory(prefix="vr-status-page-") as d, \
            start_sim("--io", "epoll", "--model", LLAMA, "--id", "a") as a, \
            start_sim("--io", "epoll", "--model", QWEN, "--id", "c") as c:
        victim = start_sim("--io", "epoll", "--model", LLAMA, "--id", "b")
        try:
            config = os.path.join(d, "router.json")
            with open(config, "w") as f:
                json.dump({
                    "models": [
                        {"name": LLAMA, "aliases": ["llama"], "endpoints": [a.url, victim.url]},
                        {"name": QWEN, "policy": "least_requests", "endpoints": [c.url]},
                        {"name": HOSTILE, "endpoints": [c.url]},
                    ],
                    "health_check": {"interval_ms": 200, "timeout_ms": 500, "unhealthy_threshold": 1},
                    "policy_options": {"scrape_interval_ms": 200},
                }, f)
            with start_router("--config", config) as router:
                for model in ("llama", LLAMA, QWEN):
                    for _ in range(2):
                        status, _, answer = post_json(router, "/v1/chat/completions", chat_body(model))
                        assert status == 200, answer
                url = router.url + "/status"

                # Before the kill: every model and endpoint row, all healthy, figures shown.
                deadline = time.monotonic() + 60
                while True:
                    page, dom = render(url)
                    rows = page.models.get(LLAMA, {}).get("rows", {})
                    if len(rows) == 2 and all(r["state"] == "healthy" for r in rows.values()):
                        break
                    assert time.monotonic() < deadline, dom[-3000:]
                assert int(page.body_attrs.get("data-refreshes", "0")) >= 1, dom[-3000:]
                assert set(page.models) == {LLAMA, QWEN, HOSTILE}, page.models.keys()
                assert page.models[LLAMA]["title"] == LLAMA
                assert set(rows) == {endpoint_id(a), endpoint_id(victim)}
                assert rows[endpoint_id(a)]["cells"][0] == endpoint_id(a)
                assert rows[endpoint_id(a)]["cells"][1] == "healthy"
                assert page.text.get("router-state") == "serving", page.text
                assert "aliases: llama" in dom
                assert list(page.models[QWEN]["rows"]) == [endpoint_id(c)]
                # The hostile name is text: no <img> element, the title untouched.
                assert page.models[HOSTILE]["title"] == HOSTILE
                assert "img" not in page.tags, sorted(page.tags)
                assert "<title>vllm-router status</title>" in dom

                # Kill one engine by PID; poll the page until it shows that endpoint down.
                os.kill(victim.pid, signal.SIGKILL)
                victim.proc.wait(timeout=5)
                deadline = time.monotonic() + 60
                while True:
                    page, dom = render(url)
                    rows = page.models.get(LLAMA, {}).get("rows", {})
                    down = rows.get(endpoint_id(victim))
                    if down is not None and down["state"] == "unhealthy":
                        break
                    assert time.monotonic() < deadline, dom[-3000:]
                assert down["cells"][1] == "unhealthy", down
                assert rows[endpoint_id(a)]["state"] == "healthy", rows
                assert page.models[QWEN]["rows"][endpoint_id(c)]["state"] == "healthy"
                text = " ".join(re.sub(r"<[^>]*>", " ", dom).split())
                assert "healthy 1 / 2" in text, text

                # The screenshot, for the record (and a check that it is a real image).
                shot = os.path.join(out, "status-page.png")
                if os.path.exists(shot):
                    os.remove(shot)
                run_chromium(["--virtual-time-budget=3000", "--window-size=1280,720",
                              "--screenshot=" + shot, url])
                width, height = png_size(shot)
                assert (width, height) == (1280, 720), (width, height)
                assert os.path.getsize(shot) > 10000
                print("status page screenshot: %s" % shot)
                # The router still serves through the survivor.
                assert call(router, "GET", "/health")[0] == 200
                status, _, answer = post_json(router, "/v1/chat/completions", chat_body(LLAMA))
                assert status == 200, answer
        finally:
            victim.stop()
