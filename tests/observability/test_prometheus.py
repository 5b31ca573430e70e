"""The router's /metrics against the real tools: `promtool check metrics`, and Debian's
`prometheus` server scraping a router under a short load, evaluating every query of the Grafana
dashboard (deploy/grafana/vllm-router-dashboard.json) through its HTTP API.

The router runs with a keys file (tenants' tokens per key id; Prometheus scrapes with the admin
key), two models (`m` on two engines with a small per-endpoint cap so requests queue, `n` on
one), streams and non-streamed requests, errors (unknown models, no key, bad JSON), and one of
`m`'s engines killed mid-way (retries, an ejection). Then:
- promtool finds nothing to say about the exposition;
- every metric the dashboard names is in it; no label value a client made up is;
- each panel query (Grafana's variables replaced by what "All" and $__rate_interval stand for)
  is valid PromQL and returns at least one series with a finite value;
- each template variable's label_values() finds values, and `model` lists exactly the models.

prometheus and promtool come from tools/install-deps.sh; without them the test fails.
Every process is started here on 127.0.0.1 and stopped by PID; waits poll with deadlines.
"""

import concurrent.futures
import hashlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from routerproc import call, chat_body, dead_port, metric_samples, start_router, wait_for  # noqa: E402
from simproc import repo_root, start_sim  # noqa: E402

DASHBOARD = os.path.join(repo_root(), "deploy", "grafana", "vllm-router-dashboard.json")
TENANT, OPS = "sk-tenant-metrics-test", "sk-ops-metrics-test"
RATE_INTERVAL = "1m"  # what $__rate_interval stands for here: covers the whole load
MADE_UP = ["made-up-model-%d" % i for i in range(20)]


def tool(name):
    path = shutil.which(name)
    if path is None:
        pytest.fail("%s not found: tools/install-deps.sh installs Debian's prometheus package" % name)
    return path


def digest(key):
    return hashlib.sha256(key.encode()).hexdigest()


def auth(key=TENANT):
    return {"Authorization": "Bearer " + key}


class Prometheus:
    """Debian's prometheus on 127.0.0.1, scraping `target` every second; storage in `work`."""

    def __init__(self, work, target_port, token):
        self.work = work
        config = os.path.join(work, "prometheus.yml")
        with open(config, "w") as f:
            f.write(
                "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n"
                "scrape_configs:\n"
                "  - job_name: vllm-router\n"
                "    authorization: {credentials: %s}\n"
                "    static_configs: [{targets: ['127.0.0.1:%d']}]\n" % (json.dumps(token), target_port))
        # A free port is picked, then bound by prometheus: another process may take it in
        # between, so a start that cannot listen is tried again on another port.
        for _ in range(3):
            self.port = dead_port()
            self.log = open(os.path.join(work, "prometheus-%d.log" % self.port), "wb")
            self.proc = subprocess.Popen(
                [tool("prometheus"), "--config.file=" + config, "--storage.tsdb.path=" + os.path.join(work, "data"),
                 "--web.listen-address=127.0.0.1:%d" % self.port, "--log.level=warn"],
                stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, cwd=work)
            if wait_for(lambda: self.proc.poll() is not None or self.ready(), timeout=30, interval=0.1) and \
                    self.proc.poll() is None:
                return
            self.stop()
        pytest.fail("prometheus did not start: %s" % self.log_text()[-2000:])

    def ready(self):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/-/ready" % self.port, timeout=2) as r:
                return r.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def api(self, path, **params):
        url = "http://127.0.0.1:%d/api/v1/%s?%s" % (self.port, path, urllib.parse.urlencode(params))
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:  # 400/422: an invalid query; the body says why
            return json.loads(e.read())

    def query(self, expr):
        return self.api("query", query=expr)

    def log_text(self):
        self.log.flush()
        with open(self.log.name, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def dashboard_queries(dash):
    """[(panel title, expr)] of every panel target, rows' nested panels included."""
    out = []

    def walk(panels):
        for p in panels:
            walk(p.get("panels", []))
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((p["title"], t["expr"]))
    walk(dash["panels"])
    return out


def substitute(expr, variables):
    """Grafana's variables as the dashboard's "All" and a 1 s scrape make them."""
    expr = expr.replace("$__rate_interval", RATE_INTERVAL).replace("$__interval", "1s")
    for name, value in variables.items():
        expr = expr.replace("${%s}" % name, value).replace("$" + name, value)
    assert "$" not in expr, "a variable the test does not know: %s" % expr
    return expr


def finite_values(result):
    values = []
    for series in result["data"]["result"]:
        v = float(series["value"][1])
        if math.isfinite(v):
            values.append(v)
    return values


def send(router, indices, statuses):
    """Request `i` of the bounded mix for each i, on 8 threads; counts the statuses."""
    def one(i):
        kind = i % 12
        if kind in (0, 1, 2, 3):
            return call(router, "POST", "/v1/chat/completions", chat_body("m", max_tokens=4), auth())[0]
        if kind in (4, 5, 6):  # streams: TTFT and the gaps between events
            body = chat_body("m" if kind != 6 else "n", max_tokens=6, stream=True)
            status, _, raw = call(router, "POST", "/v1/chat/completions", body, auth())
            assert raw.rstrip().endswith(b"data: [DONE]"), raw[-200:]
            return status
        if kind == 7:
            return call(router, "POST", "/v1/completions", {"model": "n", "prompt": "hello", "max_tokens": 3}, auth())[0]
        if kind == 8:
            return call(router, "POST", "/v1/chat/completions", chat_body(MADE_UP[i % len(MADE_UP)]), auth())[0]
        if kind == 9:
            return call(router, "POST", "/v1/chat/completions", chat_body("m"))[0]  # no key
        if kind == 10:
            return call(router, "POST", "/v1/chat/completions", b"{not json", auth())[0]
        return call(router, "POST", "/v1/chat/completions", chat_body("n"), auth())[0]

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        for status in pool.map(one, indices, timeout=120):
            statuses[status] = statuses.get(status, 0) + 1


def test_dashboard_queries_against_prometheus(tmp_path):
    promtool = tool("promtool")
    tool("prometheus")
    with open(DASHBOARD) as f:
        dash = json.load(f)
    queries = dashboard_queries(dash)
    assert len(queries) >= 20, queries

    sims = [start_sim("--model", "m", "--io", "epoll", "--ttft-ms", "5", "--itl-ms", "3"),
            start_sim("--model", "m", "--io", "epoll", "--ttft-ms", "5", "--itl-ms", "3"),
            start_sim("--model", "n", "--io", "epoll", "--itl-ms", "2")]
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"keys": [{"id": "tenant", "sha256": digest(TENANT)},
                                         {"id": "ops", "sha256": digest(OPS), "admin": True}]}))
    config = tmp_path / "router.json"
    config.write_text(json.dumps({
        "keys_file": str(keys),
        "models": [{"name": "m", "endpoints": [sims[0].url, sims[1].url], "max_in_flight_per_endpoint": 2},
                   {"name": "n", "endpoints": [sims[2].url]}]}))
    router = start_router("--config", str(config), "--threads", "2", "--log-level", "error")
    prom = None
    try:
        prom = Prometheus(str(tmp_path), router.port, OPS)
        # Scraped before the load, so the rates see it happen.
        assert wait_for(lambda: prom.query('up{job="vllm-router"} == 1')["data"]["result"], timeout=30), \
            prom.api("targets")

        # rate() sees what changed between two samples of a series: a warm-up creates every
        # series (as steady traffic would), then the load runs across later scrapes.
        scrapes = lambda: finite_values(prom.query('count_over_time(up{job="vllm-router"}[10m])'))[0]  # noqa: E731
        statuses = {}
        send(router, range(24), statuses)
        seen = scrapes()
        assert wait_for(lambda: scrapes() >= seen + 2, timeout=30)
        send(router, range(24, 240), statuses)
        os.kill(sims[1].pid, signal.SIGKILL)  # a replica dies: retries move its requests, it gets ejected
        sims[1].proc.wait()
        for _ in range(40):
            status = call(router, "POST", "/v1/chat/completions", chat_body("m"), auth())[0]
            statuses[status] = statuses.get(status, 0) + 1
        assert statuses.get(200, 0) >= 150 and statuses.get(404, 0) == 20, statuses
        assert statuses.get(401, 0) == 20 and statuses.get(400, 0) == 20, statuses

        status, _, raw = call(router, "GET", "/metrics", headers=auth(OPS))
        assert status == 200
        text = raw.decode()
        check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
        assert check.returncode == 0 and check.stdout.strip() == "" and check.stderr.strip() == "", \
            (check.returncode, check.stdout, check.stderr)
        for name in MADE_UP:
            assert name not in text  # only resolved models become label values
        dead = sims[1].url
        assert any(v >= 1 for labels, v in metric_samples(text, "vllm_router_endpoint_ejections_total")
                   if labels["endpoint"] == dead), "the killed engine was not ejected"
        assert sum(v for _, v in metric_samples(text, "vllm_router_retries_total")) >= 1
        waited = {l["le"]: v for l, v in metric_samples(text, "vllm_router_queue_wait_seconds_bucket")}
        assert waited["+Inf"] > waited["0.001"], "no request waited for capacity: %r" % waited

        # Every metric the dashboard uses is exposed (a rename breaks this before Prometheus does).
        exposed = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
        used = set()
        for _, expr in queries:
            for name in re.findall(r"\b((?:vllm_router|process)_[a-z_]+)", expr):
                used.add(re.sub(r"_(bucket|sum|count)$", "", name))
        assert used <= exposed, "the dashboard uses metrics /metrics lacks: %s" % sorted(used - exposed)

        # Wait until Prometheus scraped after the load (the last killed-engine request counted).
        total = sum(v for l, v in metric_samples(text, "vllm_router_requests_total"))
        assert wait_for(lambda: finite_values(prom.query("sum(vllm_router_requests_total)")) and
                        finite_values(prom.query("sum(vllm_router_requests_total)"))[0] >= total, timeout=30)
        # ...and twice more, so even a series born in that scrape has the two samples rate() needs.
        seen = scrapes()
        assert wait_for(lambda: scrapes() >= seen + 2, timeout=30)

        # The template variables: label_values(expr, label) is Grafana's; group by is PromQL's.
        variables = {}
        for var in dash["templating"]["list"]:
            if var["type"] == "datasource":
                continue
            variables[var["name"]] = var["allValue"]
        for var in dash["templating"]["list"]:
            if var["type"] != "query":
                continue
            definition = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", definition)
            assert m, definition
            result = prom.query("group by (%s) (%s)" % (m.group(2), substitute(m.group(1), variables)))
            assert result["status"] == "success", (definition, result)
            values = {s["metric"].get(m.group(2), "") for s in result["data"]["result"]}
            assert values, "variable %s finds no values" % var["name"]
            if var["name"] == "model":
                assert values == {"m", "n", ""}, values  # "" = requests that resolved no model
            if var["name"] == "job":
                assert values == {"vllm-router"}, values

        failures = []
        for title, expr in queries:
            concrete = substitute(expr, variables)
            result = prom.query(concrete)
            if result.get("status") != "success":
                failures.append("%s: invalid: %s (%s)" % (title, concrete, result.get("error")))
            elif not result["data"]["result"]:
                failures.append("%s: no series: %s" % (title, concrete))
            elif not finite_values(result):
                failures.append("%s: no finite value: %s -> %s" % (title, concrete, result["data"]["result"][:3]))
        assert not failures, "\n".join(failures)
        print("%d panel queries evaluated, every one with series" % len(queries))
    finally:
        if prom is not None:
            prom.stop()
        router.stop()
        for sim in sims:
            sim.stop()
