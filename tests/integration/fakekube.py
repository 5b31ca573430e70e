"""A small fake Kubernetes API server for discovery tests (stdlib only).

Serves list and watch of EndpointSlices (discovery.k8s.io/v1) and Pods (v1) in any namespace,
filtered by an equality label selector ("k=v,k2=v2"):

    GET /apis/discovery.k8s.io/v1/namespaces/NS/endpointslices[?labelSelector=..&limit=..&continue=..]
    GET /api/v1/namespaces/NS/pods[...]
    ...?watch=1&resourceVersion=RV[&timeoutSeconds=N]   chunked JSON lines {"type","object"}

Every change gets the next resourceVersion. A watch from an RV older than the compacted history
gets a 410: by default an ERROR event (what the API server sends on a live watch), or an HTTP 410
status with `gone_as_status = True`. Lists are paged when `page_size` is set (the `continue`
token is the offset).

API:
    FakeKube(host="127.0.0.1") -> started on host:0 (an IPv6 address too); .url, .port, .stop();
                                 context manager; .hosts_seen: the Host headers received.
    .put(kind, name, obj_dict, namespace="default")   ADDED or MODIFIED event
    .delete(kind, name, namespace="default")          DELETED event
    .fail_lists = N              answer the next N lists with 500
    .page_size = N               page lists (limit/continue)
    .compact()                   forget history: watches from older RVs get 410
    .send_gone()                 send an ERROR 410 event on every open watch (then close it)
    .drop_watches()              cut every open watch connection (no terminating chunk)
    .requests                    [(kind, "list"|"watch", query dict)] served so far
    .open_watches                number of watch connections being served
    .rv                          the current resourceVersion (int)
    endpoint_slice(name, endpoints=[(ip, ready) | slice_endpoint(...)], port=8000, port_name="http",
                   labels=, annotations=, address_type=)   addressType from the first address
    slice_endpoint(ip, pod_name, ready=True, serving=, terminating=)   with a targetRef to the pod
    pod(name, ip, ready=True, port=8000, port_name="http", labels=, annotations=, phase="Running")
"""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

__all__ = ["FakeKube", "endpoint_slice", "pod", "slice_endpoint"]

KINDS = {"endpointslices": "EndpointSlice", "pods": "Pod"}


def endpoint_slice(name, endpoints, port=8000, port_name="http", labels=None, annotations=None,
                   address_type=None):
    """endpoints: "ip", (ip, ready) or a full endpoint dict (conditions, targetRef...)."""
    eps = []
    for entry in endpoints:
        if isinstance(entry, dict):
            eps.append(entry)
            continue
        ip, ready = entry if isinstance(entry, tuple) else (entry, True)
        ep = {"addresses": [ip], "conditions": {}}
        if ready is not None:
            ep["conditions"]["ready"] = bool(ready)
        eps.append(ep)
    if address_type is None:
        first = eps[0]["addresses"][0] if eps else ""
        address_type = "IPv6" if ":" in first else "IPv4"
    return {"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
            "metadata": {"name": name, "labels": dict(labels or {}),
                         "annotations": dict(annotations or {})},
            "addressType": address_type, "endpoints": eps,
            "ports": [{"name": port_name, "port": port, "protocol": "TCP"}]}


def slice_endpoint(ip, pod_name, ready=True, serving=None, terminating=None):
    """One endpoint as the EndpointSlice controller writes it (conditions, targetRef to a pod)."""
    cond = {"ready": ready}
    if serving is not None:
        cond["serving"] = serving
    if terminating is not None:
        cond["terminating"] = terminating
    return {"addresses": [ip], "conditions": cond,
            "targetRef": {"kind": "Pod", "namespace": "default", "name": pod_name,
                          "uid": "uid-" + pod_name}}


def pod(name, ip, ready=True, port=8000, port_name="http", labels=None, annotations=None,
        phase="Running"):
    return {"kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": name, "labels": dict(labels or {}),
                         "annotations": dict(annotations or {})},
            "spec": {"containers": [{"name": "vllm", "ports": [
                {"name": port_name, "containerPort": port, "protocol": "TCP"}]}]},
            "status": {"phase": phase, "podIP": ip,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def _matches(obj, selector):
    labels = obj["metadata"].get("labels") or {}
    for term in filter(None, (selector or "").split(",")):
        key, _, value = term.partition("=")
        if labels.get(key.strip()) != value.strip():
            return False
    return True


class FakeKube:
    def __init__(self, host="127.0.0.1"):
        self.lock = threading.Condition()
        self.rv = 1
        self.objects = {}        # (kind, ns, name) -> obj
        self.history = []        # (rv, kind, ns, type, obj)
        self.compacted_rv = 0    # watches from an RV below this get 410
        self.generation = 0      # bumped by drop_watches / send_gone
        self.gone_generation = 0
        self.requests = []
        self.open_watches = 0
        self.gone_as_status = False
        self.page_size = 0
        self.fail_lists = 0      # answer this many next lists with 500
        self._sockets = set()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                fake._handle(self)

        class Server(ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        self.server = Server((host, 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda *args: None  # cut connections are the point here
        self.port = self.server.server_address[1]
        self.host = host
        self.url = "http://%s:%d" % ("[%s]" % host if ":" in host else host, self.port)
        self.hosts_seen = []     # Host headers of the requests
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    # ------------------------------------------------------------------ control
    def put(self, kind, name, obj, namespace="default"):
        with self.lock:
            obj = json.loads(json.dumps(obj))
            obj["metadata"]["name"] = name
            obj["metadata"]["namespace"] = namespace
            key = (kind, namespace, name)
            etype = "MODIFIED" if key in self.objects else "ADDED"
            self.rv += 1
            obj["metadata"]["resourceVersion"] = str(self.rv)
            self.objects[key] = obj
            self.history.append((self.rv, kind, namespace, etype, obj))
            self.lock.notify_all()

    def delete(self, kind, name, namespace="default"):
        with self.lock:
            obj = self.objects.pop((kind, namespace, name))
            self.rv += 1
            obj = json.loads(json.dumps(obj))
            obj["metadata"]["resourceVersion"] = str(self.rv)
            self.history.append((self.rv, kind, namespace, "DELETED", obj))
            self.lock.notify_all()

    def compact(self):
        with self.lock:
            self.history = []
            self.compacted_rv = self.rv

    def send_gone(self):
        with self.lock:
            self.gone_generation += 1
            self.lock.notify_all()

    def drop_watches(self):
        with self.lock:
            self.generation += 1
            socks = list(self._sockets)
            self.lock.notify_all()
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def watch_requests(self, kind="endpointslices"):
        with self.lock:
            return [q for k, op, q in self.requests if k == kind and op == "watch"]

    def list_requests(self, kind="endpointslices"):
        with self.lock:
            return [q for k, op, q in self.requests if k == kind and op == "list"]

    def stop(self):
        self.drop_watches()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # ------------------------------------------------------------------ serving
    def _handle(self, h):
        url = urlparse(h.path)
        parts = url.path.strip("/").split("/")
        # api/v1/namespaces/NS/pods or apis/discovery.k8s.io/v1/namespaces/NS/endpointslices
        try:
            i = parts.index("namespaces")
            ns, kind = parts[i + 1], parts[i + 2]
        except (ValueError, IndexError):
            return self._send_json(h, 404, {"kind": "Status", "code": 404})
        if kind not in KINDS:
            return self._send_json(h, 404, {"kind": "Status", "code": 404})
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        watch = query.get("watch") in ("1", "true")
        with self.lock:
            self.requests.append((kind, "watch" if watch else "list", query))
            self.hosts_seen.append(h.headers.get("Host"))
        selector = query.get("labelSelector", "")
        if not watch:
            with self.lock:
                failing = self.fail_lists > 0
                self.fail_lists -= 1 if failing else 0
            if failing:
                return self._send_json(h, 500, {"kind": "Status", "code": 500})
            with self.lock:
                items = [o for (k, n, _), o in sorted(self.objects.items())
                         if k == kind and n == ns and _matches(o, selector)]
                rv = self.rv
            start = int(query.get("continue") or 0)
            meta = {"resourceVersion": str(rv)}
            if self.page_size:
                page = items[start:start + self.page_size]
                if start + self.page_size < len(items):
                    meta["continue"] = str(start + self.page_size)
                items = page
            return self._send_json(h, 200, {"kind": KINDS[kind] + "List", "apiVersion": "v1",
                                            "metadata": meta, "items": items})
        self._watch(h, kind, ns, selector, int(query.get("resourceVersion") or 0),
                    float(query.get("timeoutSeconds") or 300))

    def _send_json(self, h, status, doc):
        body = json.dumps(doc).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _watch(self, h, kind, ns, selector, since, timeout):
        gone_status = {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                       "message": "too old resource version", "reason": "Expired", "code": 410}
        with self.lock:
            too_old = since < self.compacted_rv
            if too_old and self.gone_as_status:
                return self._send_json(h, 410, gone_status)
            generation, gone_generation = self.generation, self.gone_generation
            self.open_watches += 1
            self._sockets.add(h.connection)
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()

        def chunk(data):
            h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            h.wfile.flush()

        deadline = time.monotonic() + timeout
        sent = since
        try:
            if too_old:
                chunk(json.dumps({"type": "ERROR", "object": gone_status}).encode() + b"\n")
                h.wfile.write(b"0\r\n\r\n")
                return
            while True:
                with self.lock:
                    while True:
                        if self.generation != generation:
                            h.close_connection = True
                            return  # dropped: no terminating chunk
                        if self.gone_generation != gone_generation:
                            pending = [("ERROR", gone_status)]
                            break
                        pending = [(t, o) for (rv, k, n, t, o) in self.history
                                   if rv > sent and k == kind and n == ns and _matches(o, selector)]
                        if pending:
                            sent = self.history[-1][0]
                            break
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self.lock.wait(min(left, 0.5))
                if not pending:
                    h.wfile.write(b"0\r\n\r\n")  # timeoutSeconds reached: a clean end
                    h.wfile.flush()
                    return
                # One chunk carrying every pending event (a burst).
                chunk(b"".join(json.dumps({"type": t, "object": o}).encode() + b"\n"
                               for t, o in pending))
                if pending[0][0] == "ERROR":
                    h.wfile.write(b"0\r\n\r\n")
                    h.wfile.flush()
                    return
        except OSError:
            h.close_connection = True
        finally:
            with self.lock:
                self.open_watches -= 1
                self._sockets.discard(h.connection)
