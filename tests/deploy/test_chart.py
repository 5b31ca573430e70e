"""The Helm chart (deploy/helm/vllm-router), rendered by tools/helm-render like `helm template`.

Checks: every document is valid YAML with apiVersion/kind/metadata.name; the expected objects
for the default values, the seed's two-model values file and a values file with every optional
feature; selectors that connect objects; probes on /health and /ready; the router's environment
from values; least-privilege RBAC; and the rendered router config accepted by
`vllm-router --check-config` (alone, and with the Deployment's environment applied).

Environment: HELM_RENDER (the renderer binary, built by the ctest fixture), VLLM_ROUTER.
"""

import json
import os
import re
import subprocess
import sys
import tempfile

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CHART = os.path.join(ROOT, "deploy", "helm", "vllm-router")
TWO_MODELS = os.path.join(HERE, "two-models.values.yaml")
ALL_FEATURES = os.path.join(HERE, "all-features.values.yaml")
RELEASE, NS = "prod", "llm"
FULL = "prod-vllm-router"

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def renderer():
    path = os.environ.get("HELM_RENDER") or os.path.join(ROOT, "build", "tests", "deploy", "helm-render")
    if not os.path.exists(path):
        pytest.fail(f"helm-render not built at {path} (ctest runs tools/helm-render/build.sh first)")
    return path


def router_binary():
    return os.environ.get("VLLM_ROUTER") or os.path.join(ROOT, "build", "server", "vllm-router")


def run_render(*values, sets=(), release=RELEASE, namespace=NS, notes=None, check=True):
    cmd = [renderer(), CHART, "--release", release, "--namespace", namespace]
    for v in values:
        cmd += ["-f", v]
    for s in sets:
        cmd += ["--set", s]
    if notes:
        cmd += ["--notes", notes]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


class Rendered:
    """The parsed documents of one rendering, with lookups by kind and name."""

    def __init__(self, *values, sets=(), tmp_path=None):
        notes = str(tmp_path / "NOTES.txt") if tmp_path else None
        self.text = run_render(*values, sets=sets, notes=notes).stdout
        self.notes = open(notes).read() if notes else ""
        self.docs = [d for d in yaml.safe_load_all(self.text) if d is not None]
        for d in self.docs:
            assert isinstance(d, dict), d
            assert d.get("apiVersion") and d.get("kind"), d
            assert d["metadata"]["name"], d

    def kinds(self):
        out = {}
        for d in self.docs:
            out[d["kind"]] = out.get(d["kind"], 0) + 1
        return out

    def all(self, kind):
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind, name):
        found = [d for d in self.docs if d["kind"] == kind and d["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind}/{name}: found {len(found)} in {sorted(self.names())}"
        return found[0]

    def names(self):
        return {(d["kind"], d["metadata"]["name"]) for d in self.docs}

    def router_deployment(self):
        return self.get("Deployment", FULL)

    def router_container(self):
        return self.router_deployment()["spec"]["template"]["spec"]["containers"][0]

    def router_env(self):
        return {e["name"]: e for e in self.router_container()["env"]}

    def router_config_text(self):
        return self.get("ConfigMap", f"{FULL}-config")["data"]["config.json"]

    def router_config(self):
        return json.loads(self.router_config_text())


def check_config(rendered, tmp_path, with_env):
    """vllm-router --check-config on the ConfigMap's JSON (optionally with the pod's env)."""
    cfg = tmp_path / "config.json"
    cfg.write_text(rendered.router_config_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLLM_ROUTER_")}
    args = [router_binary(), "--check-config"]
    if with_env:
        for name, e in rendered.router_env().items():
            if "value" in e:
                env[name] = str(e["value"])
            else:  # secretKeyRef: the Secret's content is not in the chart
                assert "secretKeyRef" in e["valueFrom"], e
                env[name] = "test-key"
        assert env["VLLM_ROUTER_CONFIG"] == "/etc/vllm-router/config.json"
        env["VLLM_ROUTER_CONFIG"] = str(cfg)
        if "VLLM_ROUTER_KEYS_FILE" in env:  # the tenants' Secret, as the pod would mount it
            keys = tmp_path / "keys.json"
            keys.write_text('{"keys": [{"id": "t", "sha256": "%s"}]}' % ("ab" * 32))
            env["VLLM_ROUTER_KEYS_FILE"] = str(keys)
    else:
        args += ["--config", str(cfg)]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=10)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def assert_common(r):
    """Invariants of every rendering."""
    for d in r.docs:
        meta = d["metadata"]
        if d["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert meta.get("namespace") == NS, (d["kind"], meta["name"])
        assert len(meta["name"]) <= 63 and DNS_SUBDOMAIN.match(meta["name"]), meta["name"]
        if d["kind"] in ("Service", "Deployment"):
            assert DNS_LABEL.match(meta["name"]), meta["name"]
        for k, v in meta.get("labels", {}).items():
            assert isinstance(v, str) and len(v) <= 63 and LABEL_VALUE.match(v), (k, v)
        assert meta["labels"]["app.kubernetes.io/instance"] == RELEASE
    # No cluster-scoped RBAC, no workload kinds that keep state.
    assert not r.all("ClusterRole") and not r.all("ClusterRoleBinding")
    assert not r.all("StatefulSet")
    # Every Deployment's selector matches its pod labels; every Service selects some pods.
    pods = []
    for dep in r.all("Deployment"):
        sel = dep["spec"]["selector"]["matchLabels"]
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert sel.items() <= labels.items(), dep["metadata"]["name"]
        pods.append((dep, labels))
    for svc in r.all("Service"):
        sel = svc["spec"]["selector"]
        matching = [dep for dep, labels in pods if sel.items() <= labels.items()]
        assert len(matching) == 1, (svc["metadata"]["name"], [d["metadata"]["name"] for d in matching])
        port = svc["spec"]["ports"][0]
        if svc["metadata"]["name"] == f"{FULL}-sync":  # replica sync: UDP between router pods
            assert matching[0] is r.router_deployment()
            assert port["targetPort"] == "replica-sync" and port["protocol"] == "UDP"
            continue
        assert port["targetPort"] == "http"
        cport = [p for p in matching[0]["spec"]["template"]["spec"]["containers"][0]["ports"]
                 if p["name"] == "http"][0]
        if matching[0] is not r.router_deployment():  # the router's Service port is its own (8000)
            assert cport["containerPort"] == port["port"]
    # Router: probes, config volume, identity, security.
    dep = r.router_deployment()
    spec = dep["spec"]["template"]["spec"]
    c = r.router_container()
    tls = "VLLM_ROUTER_TLS_CERT_FILE" in r.router_env()
    scheme = {"scheme": "HTTPS"} if tls else {}
    assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http", **scheme}
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http", **scheme}
    env = r.router_env()
    ports = [{"name": "http", "containerPort": int(env["VLLM_ROUTER_PORT"]["value"]), "protocol": "TCP"}]
    if "VLLM_ROUTER_REPLICA_SYNC_LISTEN" in env:
        sync_port = int(env["VLLM_ROUTER_REPLICA_SYNC_LISTEN"]["value"].rsplit(":", 1)[1])
        ports.append({"name": "replica-sync", "containerPort": sync_port, "protocol": "UDP"})
        assert r.get("Service", f"{FULL}-sync")["spec"]["ports"][0]["port"] == sync_port
    assert c["ports"] == ports
    assert ("VLLM_ROUTER_REPLICA_SYNC_LISTEN" in env) == (("Service", f"{FULL}-sync") in r.names())
    assert env["VLLM_ROUTER_CONFIG"]["value"] == "/etc/vllm-router/config.json"
    assert c["volumeMounts"][0] == {"name": "config", "mountPath": "/etc/vllm-router", "readOnly": True}
    assert spec["volumes"][0] == {"name": "config", "configMap": {"name": f"{FULL}-config"}}
    # Only the tenants' keys Secret and the TLS Secret may add a volume (in that order).
    assert [v["name"] for v in spec["volumes"][1:] if v["name"] != "vllm-key"] in (
        [], ["tenant-keys"], ["tls"], ["tenant-keys", "tls"])
    assert [m["name"] for m in c["volumeMounts"]] == [v["name"] for v in spec["volumes"]]
    assert ("tls" in [v["name"] for v in spec["volumes"]]) == tls
    assert spec["serviceAccountName"] == FULL
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    # Drain: the grace period covers the preStop sleep and the router's drain timeout.
    drain_ms = r.router_config()["drain_timeout_ms"]
    sleep_s = int(c["lifecycle"]["preStop"]["exec"]["command"][1])
    assert spec["terminationGracePeriodSeconds"] * 1000 > drain_ms + sleep_s * 1000
    # Every env value is a string (Kubernetes rejects numbers there).
    for e in c["env"]:
        assert isinstance(e.get("value", ""), str), e
    # The config's deployed endpoints are the model Services' cluster DNS names and ports.
    services = {s["metadata"]["name"]: s for s in r.all("Service")}
    for m in r.router_config()["models"]:
        for ep in m["endpoints"]:
            url = ep if isinstance(ep, str) else ep["url"]
            host = re.match(r"^http://([^:/]+):(\d+)$", url)
            assert host, url
            if host.group(1).endswith(".svc.cluster.local"):
                svc, ns = host.group(1).split(".")[:2]
                assert ns == NS and svc in services, url
                assert services[svc]["spec"]["ports"][0]["port"] == int(host.group(2))
    # RBAC: least privilege for discovery (the watched resource only), bound to the router's
    # ServiceAccount only; the router's token is mounted only when discovery needs it.
    sources = [d for d in r.router_config().get("discovery", []) if d["type"] == "kubernetes"]
    assert spec["automountServiceAccountToken"] is bool(sources)
    if not sources:
        assert not r.all("Role") and not r.all("RoleBinding")
    if r.all("Role"):
        role = r.get("Role", f"{FULL}-discovery")
        rules = sorted((tuple(x["apiGroups"]), tuple(x["resources"]), tuple(sorted(x["verbs"])))
                       for x in role["rules"])
        group = {"pods": "", "endpointslices": "discovery.k8s.io"}
        assert rules == [((group[sources[0]["resource"]],), (sources[0]["resource"],), ("get", "list", "watch"))]
        rb = r.get("RoleBinding", f"{FULL}-discovery")
        assert rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                 "name": f"{FULL}-discovery"}
        assert rb["subjects"] == [{"kind": "ServiceAccount", "name": FULL, "namespace": NS}]
    # Pod templates carry no chart or app version: a chart upgrade must not restart pods whose
    # spec did not change (for vLLM: reload the weights).
    for dep in r.all("Deployment"):
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert "helm.sh/chart" not in labels and "app.kubernetes.io/version" not in labels, labels
    # Model pods: no API token; rollouts that keep serving and streams that finish.
    read_s = int(r.router_env()["VLLM_ROUTER_READ_TIMEOUT_MS"]["value"]) / 1000
    for dep in r.all("Deployment"):
        if dep is r.router_deployment():
            continue
        pod = dep["spec"]["template"]["spec"]
        c = pod["containers"][0]
        assert pod["automountServiceAccountToken"] is False
        sleep_s = int(c["lifecycle"]["preStop"]["exec"]["command"][1])
        assert sleep_s > 0 and pod["terminationGracePeriodSeconds"] > sleep_s + read_s
        sp = c["startupProbe"]
        allowance = sp.get("initialDelaySeconds", 0) + sp["periodSeconds"] * sp["failureThreshold"]
        assert dep["spec"]["progressDeadlineSeconds"] > allowance
        ru = dep["spec"]["strategy"].get("rollingUpdate", {})
        if dep["spec"].get("replicas", 1) == 1 and dep["spec"]["strategy"]["type"] == "RollingUpdate":
            assert ru["maxUnavailable"] == 0 and ru["maxSurge"] >= 1  # never down while loading
        assert c["args"][c["args"].index("--host") + 1] in ("::", "0.0.0.0")
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        cache = [v for v in pod["volumes"] if v["name"] == "cache"][0]
        if "emptyDir" in cache:
            assert cache["emptyDir"]["sizeLimit"]


def model_deployment(r, name):
    dep = r.get("Deployment", f"{FULL}-{name}")
    return dep, dep["spec"]["template"]["spec"]["containers"][0]


# ---------------------------------------------------------------------------------------------


def test_default_values(tmp_path):
    r = Rendered(tmp_path=tmp_path)
    assert_common(r)
    assert r.kinds() == {"Deployment": 2, "Service": 2, "ConfigMap": 1, "ServiceAccount": 1,
                         "Role": 1, "RoleBinding": 1, "PodDisruptionBudget": 1}
    assert r.router_deployment()["spec"]["replicas"] == 2
    env = r.router_env()
    assert env["VLLM_ROUTER_POLICY"]["value"] == "round_robin"
    assert env["VLLM_ROUTER_MAX_BODY_BYTES"]["value"] == "33554432"  # not 3.3554432e+07
    assert "VLLM_ROUTER_API_KEYS" not in env
    assert "no API keys" in r.notes
    out = check_config(r, tmp_path, with_env=True)
    assert "1 model(s)" in out
    # Pods by default: the router watches the model Services' EndpointSlices (headless: no
    # virtual IP needed) and maps each slice's model label to the served name.
    assert r.router_config()["discovery"] == [{
        "type": "kubernetes", "namespace": NS, "resource": "endpointslices", "port": "http",
        "label_selector": "app.kubernetes.io/name=vllm-router,app.kubernetes.io/instance=prod,"
                          "app.kubernetes.io/component=model",
        "resync_ms": 300000, "model_label_names": {"llama-2-7b-chat": "meta-llama/Llama-2-7B-chat-hf"}}]
    assert r.router_config()["models"] == [{"name": "meta-llama/Llama-2-7B-chat-hf", "endpoints": []}]
    svc = r.get("Service", f"{FULL}-llama-2-7b-chat")
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["metadata"]["labels"]["vllm-router.io/model"] == "llama-2-7b-chat"  # copied to its slices
    assert env["VLLM_ROUTER_HOST"]["value"] == "::"
    assert r.get("Service", FULL)["spec"]["ports"][0]["port"] == 8000


def test_two_models(tmp_path):
    r = Rendered(TWO_MODELS, tmp_path=tmp_path)
    assert_common(r)
    assert r.kinds() == {"Deployment": 3, "Service": 3, "ConfigMap": 1, "ServiceAccount": 1,
                         "Role": 1, "RoleBinding": 1, "PodDisruptionBudget": 2}
    assert r.names() == {
        ("PodDisruptionBudget", f"{FULL}-llama-2-13b-chat-gptq"),  # 2 replicas: a model PDB
        ("Deployment", FULL), ("Service", FULL), ("ConfigMap", f"{FULL}-config"),
        ("ServiceAccount", FULL), ("Role", f"{FULL}-discovery"),
        ("RoleBinding", f"{FULL}-discovery"), ("PodDisruptionBudget", FULL),
        ("Deployment", f"{FULL}-llama-2-13b-chat-gptq"), ("Service", f"{FULL}-llama-2-13b-chat-gptq"),
        ("Deployment", f"{FULL}-llama-2-7b-chat"), ("Service", f"{FULL}-llama-2-7b-chat"),
    }

    # Router: replicas, env from values, API keys from the existing Secret.
    assert r.router_deployment()["spec"]["replicas"] == 3
    env = r.router_env()
    plain = {k: v["value"] for k, v in env.items() if "value" in v}
    assert plain == {
        "VLLM_ROUTER_CONFIG": "/etc/vllm-router/config.json",
        "VLLM_ROUTER_HOST": "::",
        "VLLM_ROUTER_PORT": "8080",
        "VLLM_ROUTER_POLICY": "least_requests",
        "VLLM_ROUTER_DEFAULT_MODEL": "llama-7b",
        "VLLM_ROUTER_LOG_LEVEL": "debug",
        "VLLM_ROUTER_LOG_FORMAT": "text",
        "VLLM_ROUTER_ACCESS_LOG": "-",  # on by default in a cluster: kubectl logs shows it
        "VLLM_ROUTER_THREADS": "4",
        "VLLM_ROUTER_MAX_CONNECTIONS": "0",
        "VLLM_ROUTER_MAX_BODY_BYTES": "16777216",
        "VLLM_ROUTER_CONNECT_TIMEOUT_MS": "2000",
        "VLLM_ROUTER_READ_TIMEOUT_MS": "300000",
    }
    assert env["VLLM_ROUTER_API_KEYS"]["valueFrom"] == {"secretKeyRef": {"name": "router-keys", "key": "keys"}}
    assert not r.all("Secret")  # the existing Secret is not the chart's
    assert r.router_container()["resources"]["requests"] == {"cpu": "1", "memory": "512Mi"}

    # Router config: both models (found through their EndpointSlices), the alias, file-only
    # settings; with discovery off, the models' Service URLs instead.
    cfg = r.router_config()
    assert cfg["models"] == [
        {"name": "TheBloke/Llama-2-13B-chat-GPTQ", "endpoints": []},
        {"name": "meta-llama/Llama-2-7B-chat-hf", "aliases": ["llama-7b"], "endpoints": []},
    ]
    assert cfg["discovery"][0]["model_label_names"] == {
        "llama-2-13b-chat-gptq": "TheBloke/Llama-2-13B-chat-GPTQ", "llama-2-7b-chat": "meta-llama/Llama-2-7B-chat-hf"}
    assert cfg["drain_timeout_ms"] == 20000 and cfg["timeouts"] == {"write_ms": 30000}
    services = Rendered(TWO_MODELS, sets=["discovery.kubernetes.enabled=false"])
    assert_common(services)
    assert services.router_config()["models"] == [
        {"name": "TheBloke/Llama-2-13B-chat-GPTQ",
         "endpoints": [f"http://{FULL}-llama-2-13b-chat-gptq.{NS}.svc.cluster.local:8000"]},
        {"name": "meta-llama/Llama-2-7B-chat-hf", "aliases": ["llama-7b"],
         "endpoints": [f"http://{FULL}-llama-2-7b-chat.{NS}.svc.cluster.local:8000"]},
    ]
    assert "clusterIP" not in services.get("Service", f"{FULL}-llama-2-7b-chat")["spec"]
    out = check_config(services, tmp_path, with_env=False)
    assert "2 model(s)" in out and "TheBloke/Llama-2-13B-chat-GPTQ: 1 endpoint(s)" in out
    out = check_config(r, tmp_path, with_env=False)
    assert "discovery[0]: kubernetes source" in out
    out = check_config(r, tmp_path, with_env=True)
    assert "policy least_requests" in out

    # Model Deployments: image, args, replicas, resources, scheduling, probes, HF token.
    dep, c = model_deployment(r, "llama-2-13b-chat-gptq")
    assert dep["spec"]["replicas"] == 2
    assert c["image"] == "vllm/vllm-openai:v0.6.3"
    assert c["args"] == ["--model", "TheBloke/Llama-2-13B-chat-GPTQ",
                         "--served-model-name", "TheBloke/Llama-2-13B-chat-GPTQ",
                         "--host", "::", "--port", "8000",
                         "--quantization", "gptq", "--max-model-len", "4096",
                         "--gpu-memory-utilization", "0.90"]
    assert c["resources"]["limits"] == {"memory": "24Gi", "nvidia.com/gpu": 1}
    pod = dep["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "llm",
                                   "effect": "NoSchedule"}]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/health", "port": "http"}
    assert "env" not in c
    assert {"name": "cache", "emptyDir": {"sizeLimit": "100Gi"}} in pod["volumes"]
    assert r.get("PodDisruptionBudget", f"{FULL}-llama-2-13b-chat-gptq")["spec"] == {
        "maxUnavailable": 1, "selector": dep["spec"]["selector"]}

    dep, c = model_deployment(r, "llama-2-7b-chat")
    assert dep["spec"]["replicas"] == 1
    assert c["env"] == [{"name": "HF_TOKEN",
                         "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}}]
    assert dep["spec"]["template"]["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"  # default
    assert dep["spec"]["template"]["metadata"]["labels"]["vllm-router.io/model"] == "llama-2-7b-chat"
    assert dep["spec"]["template"]["metadata"]["annotations"]["vllm-router.io/served-model-names"] == \
        "meta-llama/Llama-2-7B-chat-hf"

    # Several identical router replicas: only a ConfigMap volume, PDB over them, spread over nodes.
    pdb = r.get("PodDisruptionBudget", FULL)
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": r.router_deployment()["spec"]["selector"]}
    spread = r.router_deployment()["spec"]["template"]["spec"]["topologySpreadConstraints"][0]
    assert spread["labelSelector"] == r.router_deployment()["spec"]["selector"]

    # NOTES: port-forward and an example request per model.
    assert f"port-forward service/{FULL} 8000:8000" in r.notes
    assert "TheBloke/Llama-2-13B-chat-GPTQ" in r.notes and "Authorization: Bearer" in r.notes
    assert '"model":"meta-llama/Llama-2-7B-chat-hf"' in r.notes


def test_all_features(tmp_path):
    r = Rendered(TWO_MODELS, ALL_FEATURES, tmp_path=tmp_path)
    assert_common(r)
    assert r.kinds() == {"Deployment": 3, "Service": 4, "ConfigMap": 2, "ServiceAccount": 1,
                         "Role": 1, "RoleBinding": 1, "PodDisruptionBudget": 1,
                         "HorizontalPodAutoscaler": 1, "ServiceMonitor": 2, "Secret": 1,
                         "PersistentVolumeClaim": 1, "ScaledObject": 1, "Ingress": 1, "HTTPRoute": 1}

    # KEDA scales the 7b model on its queue (vllm:num_requests_waiting from Prometheus) and owns
    # its replica count; the model's keys merge over modelDefaults.keda.
    so = r.get("ScaledObject", f"{FULL}-llama-2-7b-chat")
    assert so["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                            "name": f"{FULL}-llama-2-7b-chat"}
    assert (so["spec"]["minReplicaCount"], so["spec"]["maxReplicaCount"]) == (1, 6)
    assert so["spec"]["triggers"] == [{"type": "prometheus", "metricType": "AverageValue", "metadata": {
        "serverAddress": "http://prometheus-operated.monitoring.svc:9090",
        "query": 'sum(vllm:num_requests_waiting{namespace="llm",model_name="meta-llama/Llama-2-7B-chat-hf"})',
        "threshold": "3"}}]
    assert "replicas" not in r.get("Deployment", f"{FULL}-llama-2-7b-chat")["spec"]
    assert r.get("Deployment", f"{FULL}-llama-2-13b-chat-gptq")["spec"]["replicas"] == 1
    # Ingress and HTTPRoute: to the router's Service port.
    router_port = r.get("Service", FULL)["spec"]["ports"][0]["port"]
    ing = r.get("Ingress", FULL)
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert ing["metadata"]["annotations"] == {"nginx.ingress.kubernetes.io/proxy-read-timeout": "600"}
    assert ing["spec"]["tls"] == [{"secretName": "llm-tls", "hosts": ["llm.example.com"]}]
    assert ing["spec"]["rules"] == [{"host": "llm.example.com", "http": {"paths": [{
        "path": "/", "pathType": "Prefix",
        "backend": {"service": {"name": FULL, "port": {"number": router_port}}}}]}}]
    route = r.get("HTTPRoute", FULL)
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"] == {
        "parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "https"}],
        "hostnames": ["llm.example.com"],
        "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                   "backendRefs": [{"name": FULL, "port": router_port}]}]}

    # The Grafana dashboard for the sidecar: its label, the folder asked for, and the
    # repository's dashboard (deploy/grafana) byte for byte.
    dash = r.get("ConfigMap", f"{FULL}-dashboard")
    assert dash["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dash["metadata"]["annotations"] == {"grafana_folder": "LLM"}
    with open(os.path.join(ROOT, "deploy", "grafana", "vllm-router-dashboard.json")) as f:
        assert dash["data"]["vllm-router.json"] == f.read()
    assert json.loads(dash["data"]["vllm-router.json"])["uid"] == "vllm-router"

    # HPA owns the replica count.
    assert "replicas" not in r.router_deployment()["spec"]
    hpa = r.get("HorizontalPodAutoscaler", FULL)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": FULL}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)
    assert [(m["resource"]["name"], m["resource"]["target"]["averageUtilization"])
            for m in hpa["spec"]["metrics"]] == [("cpu", 60), ("memory", 80)]
    assert r.get("PodDisruptionBudget", FULL)["spec"]["minAvailable"] == 2

    # ServiceMonitors select the router Service and the model Services.
    sm = r.get("ServiceMonitor", FULL)
    assert sm["metadata"]["labels"]["release"] == "prometheus"
    # The router has API keys: its /metrics is scraped with one (the models' /metrics needs none).
    assert sm["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s",
                                        "scrapeTimeout": "10s",
                                        "authorization": {"type": "Bearer", "credentials": {
                                            "name": "router-metrics-key", "key": "token"}}}]
    router_svc = r.get("Service", FULL)
    assert sm["spec"]["selector"]["matchLabels"].items() <= router_svc["metadata"]["labels"].items()
    sm_models = r.get("ServiceMonitor", f"{FULL}-models")
    selected = [s["metadata"]["name"] for s in r.all("Service")
                if sm_models["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
    assert sorted(selected) == [f"{FULL}-llama-2-13b-chat-gptq", f"{FULL}-llama-2-7b-chat"]

    # The chart-made API key Secret feeds VLLM_ROUTER_API_KEYS; pods roll when it changes.
    secret = r.get("Secret", f"{FULL}-api-keys")
    assert secret["stringData"] == {"api-keys": "key-one,key-two"}
    assert r.router_env()["VLLM_ROUTER_API_KEYS"]["valueFrom"] == {
        "secretKeyRef": {"name": f"{FULL}-api-keys", "key": "api-keys"}}
    ann = r.router_deployment()["spec"]["template"]["metadata"]["annotations"]
    assert re.match(r"^[0-9a-f]{64}$", ann["checksum/api-keys"])
    assert r.router_env()["VLLM_ROUTER_ALIASES"]["value"] == "chat=meta-llama/Llama-2-7B-chat-hf"
    # Tenants' keys from a Secret, mounted as a directory (updates reach the router), and Redis.
    env = r.router_env()
    assert env["VLLM_ROUTER_KEYS_FILE"]["value"] == "/etc/vllm-router-keys/keys.json"
    assert env["VLLM_ROUTER_RATE_LIMIT_REDIS"]["value"] == "redis.cache.svc:6379"
    assert env["VLLM_ROUTER_REDIS_PASSWORD"]["valueFrom"] == {
        "secretKeyRef": {"name": "redis-auth", "key": "password"}}
    pod = r.router_deployment()["spec"]["template"]["spec"]
    assert {"name": "tenant-keys", "secret": {"secretName": "tenant-keys"}} in pod["volumes"]
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["tenant-keys"] == {"name": "tenant-keys", "mountPath": "/etc/vllm-router-keys", "readOnly": True}
    assert "subPath" not in mounts["tenant-keys"]

    # PVCs: one created (kept on uninstall), one existing; HF token Secret with its own key.
    pvc = r.get("PersistentVolumeClaim", f"{FULL}-llama-2-13b-chat-gptq-cache")
    assert pvc["spec"]["resources"]["requests"]["storage"] == "40Gi"
    assert pvc["spec"]["storageClassName"] == "fast-ssd"
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    dep, c = model_deployment(r, "llama-2-13b-chat-gptq")
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert vols == {"cache": {"name": "cache", "persistentVolumeClaim": {"claimName": pvc["metadata"]["name"]}}}
    assert "--served-model-name" in c["args"] and c["args"][3:5] == ["TheBloke/Llama-2-13B-chat-GPTQ", "llama-13b"]
    assert dep["spec"]["replicas"] == 1  # lists are replaced, not merged, across values files (helm)
    dep, c = model_deployment(r, "llama-2-7b-chat")
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert vols["cache"]["persistentVolumeClaim"] == {"claimName": "shared-hf-cache"}
    assert vols["shm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "8Gi"}
    assert c["env"] == [{"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": "vllm-key", "key": "key"}}},
                        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "HF_TOKEN"}}}]
    # --lora-modules sql-lora=/adapters/sql: the volume, its mount, the init container filling it.
    pod = dep["spec"]["template"]["spec"]
    assert vols["adapters"] == {"name": "adapters", "emptyDir": {"sizeLimit": "1Gi"}}
    assert {"name": "adapters", "mountPath": "/adapters", "readOnly": True} in c["volumeMounts"]
    assert pod["initContainers"][0]["name"] == "fetch-adapters"
    assert c["envFrom"] == [{"configMapRef": {"name": "vllm-tuning"}}]
    assert pod["priorityClassName"] == "llm-serving"
    # The same key reaches the router as a mounted file its discovery source reads (never the
    # ConfigMap).
    rpod = r.router_deployment()["spec"]["template"]["spec"]
    assert {"name": "vllm-key", "secret": {"secretName": "vllm-key", "defaultMode": 0o440}} in rpod["volumes"]
    assert {"name": "vllm-key", "mountPath": "/etc/vllm-router-vllm-key", "readOnly": True} in \
        rpod["containers"][0]["volumeMounts"]
    assert r.router_config()["discovery"][0]["api_key_file"] == "/etc/vllm-router-vllm-key/key"
    assert "vllm-key" not in r.router_config_text().replace("/etc/vllm-router-vllm-key/", "")
    assert r.get("Service", f"{FULL}-llama-2-7b-chat")["spec"]["clusterIP"] == "None"
    assert ("Deployment", f"{FULL}-external-mistral") not in r.names()
    assert not any("disabled" in name for _, name in r.names())

    cfg = r.router_config()
    assert [m["name"] for m in cfg["models"]] == [
        "TheBloke/Llama-2-13B-chat-GPTQ", "meta-llama/Llama-2-7B-chat-hf", "mistralai/Mistral-7B-Instruct-v0.2"]
    assert cfg["models"][0]["aliases"] == ["llama-13b"]
    assert cfg["models"][1]["aliases"] == ["llama-7b"] and cfg["models"][1]["loras"] == ["sql-lora"]
    assert cfg["models"][2]["endpoints"] == ["http://10.0.0.50:8000", {"url": "http://10.0.0.51:8000", "weight": 2}]
    out = check_config(r, tmp_path, with_env=False)
    assert "3 model(s)" in out
    check_config(r, tmp_path, with_env=True)
    # Discovery off: each deployed model's Service becomes a static source naming the key file.
    services = Rendered(TWO_MODELS, ALL_FEATURES, sets=["discovery.kubernetes.enabled=false"])
    assert_common(services)
    static = [d for d in services.router_config()["discovery"] if d["type"] == "static"]
    assert static[0] == {"type": "static", "model": "TheBloke/Llama-2-13B-chat-GPTQ",
                         "endpoints": [f"http://{FULL}-llama-2-13b-chat-gptq.{NS}.svc.cluster.local:8000"],
                         "api_key_file": "/etc/vllm-router-vllm-key/key"}
    check_config(services, tmp_path, with_env=False)


def test_tls_secret(tmp_path):
    """router.tls.secretName: the Secret mounted, the files given by variable, probes and the
    ServiceMonitor on https; a router with that environment and a real pair starts on https."""
    r = Rendered(TWO_MODELS, sets=["router.tls.secretName=router-tls", "router.serviceMonitor.enabled=true",
                                   "router.serviceMonitor.tlsConfig.serverName=router.example",
                                   "router.serviceMonitor.bearerTokenSecret.name=m",
                                   "router.serviceMonitor.bearerTokenSecret.key=t"], tmp_path=tmp_path)
    assert_common(r)
    env = r.router_env()
    assert env["VLLM_ROUTER_TLS_CERT_FILE"]["value"] == "/etc/vllm-router-tls/tls.crt"
    assert env["VLLM_ROUTER_TLS_KEY_FILE"]["value"] == "/etc/vllm-router-tls/tls.key"
    c = r.router_container()
    assert c["volumeMounts"][1] == {"name": "tls", "mountPath": "/etc/vllm-router-tls", "readOnly": True}
    vol = r.router_deployment()["spec"]["template"]["spec"]["volumes"][1]
    assert vol == {"name": "tls", "secret": {"secretName": "router-tls", "defaultMode": 0o440}}
    ep = r.get("ServiceMonitor", FULL)["spec"]["endpoints"][0]
    assert ep["scheme"] == "https" and ep["tlsConfig"] == {"serverName": "router.example"}
    assert "curl https://localhost:8000/v1/models" in r.notes
    # Without it: plain HTTP everywhere.
    plain = Rendered(TWO_MODELS, sets=["router.serviceMonitor.enabled=true", "router.serviceMonitor.bearerTokenSecret.name=m",
                                       "router.serviceMonitor.bearerTokenSecret.key=t"])
    assert "VLLM_ROUTER_TLS_CERT_FILE" not in plain.router_env()
    assert "scheme" not in plain.get("ServiceMonitor", FULL)["spec"]["endpoints"][0]
    # --check-config with the pod's environment, the Secret's files made by openssl.
    sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
    from tlscerts import make_certs
    certs = make_certs(str(tmp_path))
    cfg = tmp_path / "config.json"
    cfg.write_text(r.router_config_text())
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("VLLM_ROUTER_")}
    run_env.update(VLLM_ROUTER_CONFIG=str(cfg), VLLM_ROUTER_TLS_CERT_FILE=certs.cert, VLLM_ROUTER_TLS_KEY_FILE=certs.key)
    proc = subprocess.run([router_binary(), "--check-config"], env=run_env, capture_output=True, text=True, timeout=10)
    assert proc.returncode == 0, proc.stderr
    run_env["VLLM_ROUTER_TLS_KEY_FILE"] = certs.other_key
    proc = subprocess.run([router_binary(), "--check-config"], env=run_env, capture_output=True, text=True, timeout=10)
    assert proc.returncode != 0 and "is not the PEM private key" in proc.stderr, proc.stderr


def test_replica_sync(tmp_path):
    """router.replicaSync: off by default; on, a headless Service (UDP, not-ready pods published)
    naming the router pods, a UDP containerPort, the listen and peers variables (the secret's from
    a Secret when named), and the router accepts that environment (--check-config)."""
    off = Rendered(TWO_MODELS)
    assert ("Service", f"{FULL}-sync") not in off.names()
    assert not [k for k in off.router_env() if k.startswith("VLLM_ROUTER_REPLICA_SYNC_")]
    assert [p["name"] for p in off.router_container()["ports"]] == ["http"]

    r = Rendered(TWO_MODELS, sets=["router.replicaSync.enabled=true", "router.replicaSync.port=7171",
                                   "router.replicaSync.secretName=sync-key"], tmp_path=tmp_path)
    assert_common(r)
    svc = r.get("Service", f"{FULL}-sync")
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["publishNotReadyAddresses"] is True
    assert svc["spec"]["ports"] == [{"name": "replica-sync", "port": 7171, "targetPort": "replica-sync",
                                     "protocol": "UDP"}]
    assert svc["spec"]["selector"] == r.router_deployment()["spec"]["selector"]["matchLabels"]
    assert svc["metadata"]["labels"]["app.kubernetes.io/component"] == "router"
    assert r.router_container()["ports"][1] == {"name": "replica-sync", "containerPort": 7171, "protocol": "UDP"}
    env = r.router_env()
    assert env["VLLM_ROUTER_REPLICA_SYNC_LISTEN"] == {"name": "VLLM_ROUTER_REPLICA_SYNC_LISTEN", "value": "0.0.0.0:7171"}
    assert env["VLLM_ROUTER_REPLICA_SYNC_PEERS"]["value"] == f"{FULL}-sync.{NS}.svc.cluster.local:7171"
    assert env["VLLM_ROUTER_REPLICA_SYNC_SECRET"]["valueFrom"] == {
        "secretKeyRef": {"name": "sync-key", "key": "replica-sync-secret"}}
    # The clients' Service is unchanged: TCP to the http port only.
    assert [p["name"] for p in r.get("Service", FULL)["spec"]["ports"]] == ["http"]
    check_config(r, tmp_path, with_env=True)

    # Defaults: port 7071, no Secret (unsigned), the cluster's own domain.
    d = Rendered(TWO_MODELS, sets=["router.replicaSync.enabled=true", "clusterDomain=k8s.example"])
    assert_common(d)
    denv = d.router_env()
    assert denv["VLLM_ROUTER_REPLICA_SYNC_LISTEN"]["value"] == "0.0.0.0:7071"
    assert denv["VLLM_ROUTER_REPLICA_SYNC_PEERS"]["value"] == f"{FULL}-sync.{NS}.svc.k8s.example:7071"
    assert "VLLM_ROUTER_REPLICA_SYNC_SECRET" not in denv
    assert d.get("Service", f"{FULL}-sync")["spec"]["ports"][0]["port"] == 7071


def test_set_overrides_and_passthrough(tmp_path):
    """--set like helm; extraConfig reaches the file; a changed config changes the pod checksum."""
    base = Rendered(TWO_MODELS)
    r = Rendered(TWO_MODELS, sets=["router.replicas=5", "router.maxAttempts=2",
                                   "router.extraConfig.max_idle_connections=8",
                                   "router.podDisruptionBudget.enabled=false",
                                   "rbac.create=false", "serviceAccount.create=false",
                                   "serviceAccount.name=shared-sa"])
    assert r.router_deployment()["spec"]["replicas"] == 5
    cfg = r.router_config()
    assert cfg["max_attempts"] == 2 and cfg["max_idle_connections"] == 8
    assert [p["metadata"]["name"] for p in r.all("PodDisruptionBudget")] == [f"{FULL}-llama-2-13b-chat-gptq"]
    assert not r.all("Role") and not r.all("ServiceAccount")
    assert r.router_deployment()["spec"]["template"]["spec"]["serviceAccountName"] == "shared-sa"
    ann = lambda x: x.router_deployment()["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    assert ann(base) != ann(r)
    check_config(r, tmp_path, with_env=True)


def test_grafana_dashboard_namespace_and_label():
    """Off by default; on, it may go where Grafana's sidecar looks, with the sidecar's label."""
    assert ("ConfigMap", f"{FULL}-dashboard") not in Rendered().names()
    r = Rendered(sets=["grafana.dashboard.enabled=true", "grafana.dashboard.namespace=monitoring",
                       "grafana.dashboard.label=my_dashboards", "grafana.dashboard.labelValue=yes"])
    dash = r.get("ConfigMap", f"{FULL}-dashboard")
    assert dash["metadata"]["namespace"] == "monitoring"
    assert dash["metadata"]["labels"]["my_dashboards"] == "yes"
    assert "grafana_dashboard" not in dash["metadata"]["labels"]


def test_ingress_without_hosts_and_optional_objects_off_by_default():
    """Off by default: no ScaledObject, Ingress or HTTPRoute; an Ingress without hosts has one
    rule for any host."""
    assert not {"ScaledObject", "Ingress", "HTTPRoute"} & set(Rendered(TWO_MODELS).kinds())
    r = Rendered(TWO_MODELS, sets=["router.ingress.enabled=true"])
    ing = r.get("Ingress", FULL)
    assert ing["spec"]["rules"] == [{"http": {"paths": [{
        "path": "/", "pathType": "Prefix", "backend": {"service": {"name": FULL, "port": {"number": 8000}}}}]}}]
    assert "ingressClassName" not in ing["spec"] and "tls" not in ing["spec"]


def test_replicas_render_identically():
    """No per-replica state: two renderings are byte-identical (no random or time-based values)."""
    assert run_render(TWO_MODELS).stdout == run_render(TWO_MODELS).stdout


@pytest.mark.parametrize("values,message", [
    ("models:\n  - {name: Bad_Name, model: x/y}\n", "must be a DNS label"),
    # Objects are named <release>-vllm-router-<name> cut to 63 characters: two long names that
    # differ only beyond the cut would share one Deployment and one Service.
    ("models:\n  - {name: %s-a, model: x/y}\n  - {name: %s-b, model: x/z}\n" % ("m" * 50, "m" * 50),
     "like those of model"),
    # values.schema.json: typos and wrong types fail the render (as helm install/template/lint do).
    ("router:\n  replica: 3\n", 'router: unknown key "replica"'),
    ("models:\n  - {name: a, model: x/y, replica: 2}\n", 'models[0]: unknown key "replica"'),
    ("modelDefaults:\n  strategy: {}\n  gpus: 1\n", 'modelDefaults: unknown key "gpus"'),
    ("router:\n  policy: fastest\n", "router.policy"),
    ("discovery:\n  kubernetes: {resource: services}\n", "discovery.kubernetes.resource"),
    ("router:\n  port: \"8080\"\n", "router.port: expected integer"),
    ("models:\n  - {name: a, model: x/y, progressDeadlineSeconds: 60}\n", "must exceed the startup probe"),
    ("models:\n  - {name: a, model: x/y}\n  - {name: a, model: x/z}\n", "used twice"),
    ("models:\n  - {name: a}\n", "models[0].model is required"),
    ("models:\n  - {name: a, model: x/y, deploy: false}\n", "endpoints must list"),
    ("router:\n  autoscaling: {enabled: true, minReplicas: 5, maxReplicas: 2}\n", "minReplicas"),
    ("router:\n  apiKeys: {keys: [k]}\n  serviceMonitor: {enabled: true}\n", "bearerTokenSecret is required"),
    ("modelDefaults:\n  keda: {enabled: true}\n", "keda.serverAddress is required"),
    ("modelDefaults:\n  keda: {enabled: true, serverAddress: x, minReplicas: 5, maxReplicas: 2}\n", "keda.minReplicas"),
    ("modelDefaults:\n  keda: {enable: true}\n", 'unknown key "enable"'),
    ("router:\n  httpRoute: {enabled: true}\n", "parentRefs is required"),
    ("router:\n  ingress: {enabled: true, host: a.example}\n", 'unknown key "host"'),
    ("router:\n  replicaSync: {enable: true}\n", 'unknown key "enable"'),
    ("router:\n  replicaSync: {enabled: true, port: 70000}\n", "router.replicaSync.port"),
])
def test_invalid_values_fail(tmp_path, values, message):
    f = tmp_path / "bad.yaml"
    f.write_text(values)
    proc = run_render(str(f), check=False)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


def test_duplicate_client_names_rejected_by_router(tmp_path):
    """The router, not the chart, owns name validation: --check-config catches a clash."""
    f = tmp_path / "clash.yaml"
    f.write_text("models:\n  - {name: a, model: x/y, aliases: [same]}\n"
                 "  - {name: b, model: x/z, aliases: [same]}\n")
    # With the Service URLs (models with endpoints): --check-config validates the catalog of
    # models that have endpoints; discovered ones are checked when they appear.
    r = Rendered(str(f), sets=["discovery.kubernetes.enabled=false"])
    cfg = tmp_path / "config.json"
    cfg.write_text(r.router_config_text())
    proc = subprocess.run([router_binary(), "--check-config", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=10)
    assert proc.returncode != 0 and "already used" in proc.stderr + proc.stdout


def test_readme_example_values(tmp_path):
    """The values file in the README's Kubernetes section renders and its config is valid."""
    readme = open(os.path.join(ROOT, "README.md")).read()
    m = re.search(r"```yaml\n# llm\.values\.yaml\n(.*?)```", readme, re.S)
    assert m, "README: no ```yaml block starting with '# llm.values.yaml'"
    f = tmp_path / "llm.values.yaml"
    f.write_text(m.group(1))
    r = Rendered(str(f))
    names = [x["name"] for x in r.router_config()["models"]]
    assert names == ["TheBloke/Llama-2-13B-chat-GPTQ", "meta-llama/Llama-2-7B-chat-hf"]
    for name in names:  # the README's requests name these models
        assert f'"model":"{name}"' in readme
    # The README's port-forward and endpoint naming match what the chart renders for release llm.
    llm = subprocess.run([renderer(), CHART, "--release", "llm", "--namespace", "llm", "-f", str(f)],
                         capture_output=True, text=True, timeout=30)
    assert llm.returncode == 0, llm.stderr
    docs = [d for d in yaml.safe_load_all(llm.stdout) if d]
    assert ("Service", "llm-vllm-router") in {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert "kubectl -n llm port-forward service/llm-vllm-router 8000:8000" in readme
    check_config(r, tmp_path, with_env=True)


def test_kubernetes_discovery_values(tmp_path):
    """discovery.kubernetes.resource=pods: the router watches this release's model pods (no
    Service URLs in its models), and the rendered config passes --check-config."""
    r = Rendered(TWO_MODELS, sets=["discovery.kubernetes.resource=pods",
                                   "discovery.kubernetes.discoverModels.enabled=true"])
    cfg = r.router_config()
    assert cfg["discovery"] == [{
        "type": "kubernetes", "namespace": NS, "resource": "pods", "port": "http",
        "label_selector": "app.kubernetes.io/name=vllm-router,app.kubernetes.io/instance=prod,"
                          "app.kubernetes.io/component=model",
        "resync_ms": 300000, "discover_models": {"interval_ms": 10000}}]
    for m in cfg["models"]:
        assert not any(".svc." in e if isinstance(e, str) else False for e in m["endpoints"]), m
    # The selector matches the model pods the chart renders, which carry the served names.
    selector = dict(t.split("=") for t in cfg["discovery"][0]["label_selector"].split(","))
    pods = [d["spec"]["template"] for d in r.all("Deployment") if d["metadata"]["name"] != FULL]
    assert pods
    for p in pods:
        assert selector.items() <= p["metadata"]["labels"].items()
        assert p["metadata"]["annotations"]["vllm-router.io/served-model-names"]
    # The Role lets the router list and watch them.
    rules = r.all("Role")[0]["rules"]
    assert any("pods" in rule["resources"] and {"list", "watch"} <= set(rule["verbs"]) for rule in rules)
    out = check_config(r, tmp_path, with_env=True)
    assert "discovery[0]: kubernetes source" in out
    # Off: no discovery key, Service URLs, no Role, no token.
    off = Rendered(TWO_MODELS, sets=["discovery.kubernetes.enabled=false"])
    assert "discovery" not in off.router_config()
    assert not off.all("Role")
    assert off.router_deployment()["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_release_names_starting_with_a_digit():
    """Service names are DNS-1035 labels (a letter first): release "1st" renders vllm-router-1st."""
    proc = run_render(TWO_MODELS, release="1st")
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    names = {d["metadata"]["name"] for d in docs if d["kind"] in ("Service", "Deployment")}
    assert "vllm-router-1st" in names and "vllm-router-1st-llama-2-7b-chat" in names, names
    for n in names:
        assert re.match(r"^[a-z]([-a-z0-9]*[a-z0-9])?$", n) and len(n) <= 63, n


def test_chart_upgrade_keeps_model_pod_templates():
    """A new chart version or appVersion changes no model pod template (no restart of vLLM)."""
    import shutil
    with tempfile.TemporaryDirectory() as d:
        chart = os.path.join(d, "vllm-router")
        shutil.copytree(CHART, chart)
        meta = open(os.path.join(chart, "Chart.yaml")).read()
        meta = re.sub(r"^version: .*$", "version: 9.9.9", meta, flags=re.M)
        meta = re.sub(r"^appVersion: .*$", 'appVersion: "9.9.9"', meta, flags=re.M)
        open(os.path.join(chart, "Chart.yaml"), "w").write(meta)
        cmd = lambda c: [renderer(), c, "--release", RELEASE, "--namespace", NS, "-f", TWO_MODELS,
                         "--set", "router.image.tag=0.1.0"]
        old = [d for d in yaml.safe_load_all(subprocess.run(cmd(CHART), capture_output=True, text=True, check=True).stdout) if d]
        new = [d for d in yaml.safe_load_all(subprocess.run(cmd(chart), capture_output=True, text=True, check=True).stdout) if d]
    templates = lambda docs: {d["metadata"]["name"]: d["spec"]["template"] for d in docs if d["kind"] == "Deployment"}
    a, b = templates(old), templates(new)
    assert a.keys() == b.keys() and len(a) == 3
    for name in a:
        assert a[name] == b[name], name  # the router's too: its image tag is pinned here


def values_files():
    files = [os.path.join(CHART, "values.yaml"), TWO_MODELS, ALL_FEATURES,
             os.path.join(CHART, "demo.values.yaml")]
    return files


def test_values_schema_is_valid_json_schema_and_every_values_file_meets_it():
    """values.schema.json checked by python3-jsonschema (a real implementation, draft 7): it is a
    valid schema, every values file of the chart and the tests meets it, and the negative
    controls fail it (so the schema, not only helm-render's reading of it, rejects typos)."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.load(open(os.path.join(CHART, "values.schema.json")))
    jsonschema.Draft7Validator.check_schema(schema)
    v = jsonschema.Draft7Validator(schema)
    defaults = yaml.safe_load(open(os.path.join(CHART, "values.yaml")))
    for f in values_files():
        merged = json.loads(json.dumps(defaults))
        for k, val in (yaml.safe_load(open(f)) or {}).items():  # top-level keys are enough here
            if isinstance(val, dict) and isinstance(merged.get(k), dict):
                merged[k] = {**merged[k], **val}
            else:
                merged[k] = val
        errors = [e.message for e in v.iter_errors(merged)]
        assert not errors, (f, errors)
    for bad in ({"router": {"replica": 3}}, {"models": [{"name": "a", "model": "b", "gpu": 1}]},
                {"modelDefaults": {"strategy": {}, "typo": 1}}, {"discovery": {"kubernetes": {"addressType": "v6"}}}):
        merged = {**defaults, **{k: ({**defaults[k], **val} if isinstance(val, dict) and isinstance(defaults.get(k), dict) else val)
                                 for k, val in bad.items()}}
        assert list(v.iter_errors(merged)), bad


def test_demo_values_serve_the_seed_models(tmp_path):
    """demo.values.yaml with release vllm-router: Service vllm-router on port 8000 (the seed's
    `kubectl port-forward service/vllm-router 8000:8000`), the seed's two model ids, vllm-sim from
    the router image; its simulated engines start with the rendered command and arguments."""
    demo = os.path.join(CHART, "demo.values.yaml")
    proc = subprocess.run([renderer(), CHART, "--release", "vllm-router", "--namespace", NS, "-f", demo],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    svc = [d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "vllm-router"]
    assert svc and svc[0]["spec"]["ports"][0]["port"] == 8000
    cfg = json.loads([d for d in docs if d["kind"] == "ConfigMap"][0]["data"]["config.json"])
    assert [m["name"] for m in cfg["models"]] == ["TheBloke/Llama-2-13B-chat-GPTQ", "meta-llama/Llama-2-7B-chat-hf"]
    sim = os.environ.get("VLLM_SIM") or os.path.join(ROOT, "build", "tools", "vllm-sim")
    for dep in [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] != "vllm-router"]:
        c = dep["spec"]["template"]["spec"]["containers"][0]
        assert c["command"] == ["vllm-sim"] and c["image"] == "vllm-router:latest"
        args = list(c["args"])
        args[args.index("--port") + 1] = "0"
        args[args.index("--host") + 1] = "127.0.0.1"
        p = subprocess.Popen([sim] + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            line = p.stdout.readline()
            assert "listening" in line.lower() or "http://" in line, line
        finally:
            p.terminate()
            p.wait(timeout=10)


# ---------------------------------------------------------------------------------------------
# Strict validation: every rendered object against the Kubernetes schemas of npm's
# kubernetes-models (+ @kubernetes-models/prometheus-operator, keda, gateway-api), pinned in
# tests/deploy/validate/package-lock.json, unknown fields rejected (see validate.mjs).

VALIDATE_DIR = os.path.join(HERE, "validate")


def _lock_matches():
    try:
        want = json.load(open(os.path.join(VALIDATE_DIR, "package-lock.json")))["packages"]
        have = json.load(open(os.path.join(VALIDATE_DIR, "node_modules", ".package-lock.json")))["packages"]
    except (OSError, ValueError, KeyError):
        return False
    want.pop("", None)
    return want == have


@pytest.fixture(scope="module")
def validate_objects(tmp_path_factory):
    """Returns validate(objects) -> [{kind, name, ok, errors}] from validate.mjs. Installs the
    pinned packages with `npm ci` unless node_modules already matches the lock file (then no
    network is needed), like tests/e2e/run.sh."""
    if not _lock_matches():
        proc = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--prefer-offline"], cwd=VALIDATE_DIR,
                              capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    tmp = tmp_path_factory.mktemp("validate")

    def validate(objects):
        f = tmp / "objects.json"
        f.write_text(json.dumps(objects))
        proc = subprocess.run(["node", os.path.join(VALIDATE_DIR, "validate.mjs"), str(f)],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        results = json.loads(proc.stdout)
        assert len(results) == len(objects)
        return results
    return validate


# (values files, release): every values file of the chart and the tests, the test ones also
# layered as test_all_features does.
STRICT_RENDERINGS = [
    ((), RELEASE),
    ((TWO_MODELS,), RELEASE),
    ((ALL_FEATURES,), RELEASE),
    ((TWO_MODELS, ALL_FEATURES), RELEASE),
    ((os.path.join(CHART, "demo.values.yaml"),), "vllm-router"),
]


def _render_docs(values, release):
    proc = run_render(*values, release=release)
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


@pytest.mark.parametrize("values,release", STRICT_RENDERINGS,
                         ids=["+".join(os.path.basename(v) for v in vs) or "defaults" for vs, _ in STRICT_RENDERINGS])
def test_rendered_objects_are_strictly_valid(validate_objects, values, release):
    docs = _render_docs(values, release)
    assert docs
    results = validate_objects(docs)
    bad = [r for r in results if not r["ok"]]
    assert not bad, bad
    counts = {}
    for r in results:
        counts[r["kind"]] = counts.get(r["kind"], 0) + 1
    print(f"strict validation {'+'.join(os.path.basename(v) for v in values) or 'defaults'}: "
          f"{len(results)} objects {counts}")


def _mutate(doc, path, value=None, delete=False):
    doc = json.loads(json.dumps(doc))
    node = doc
    for k in path[:-1]:
        node = node[k]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


def test_strict_validation_negative_controls(validate_objects):
    """Broken copies of rendered objects must fail: misspelled fields at several depths, wrong
    types, a missing required field, an unknown kind, and the same for the optional kinds."""
    docs = _render_docs((TWO_MODELS, ALL_FEATURES), RELEASE)
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], d)
    dep = by_kind["Deployment"]
    pod = ["spec", "template", "spec"]
    controls = [
        (_mutate(dep, ["spec", "replica"], 3), "/spec/replica: unknown field"),
        (_mutate(dep, pod + ["containers", 0, "imagee"], "x"), "containers[0]/imagee: unknown field"),
        (_mutate(dep, pod + ["containers", 0, "livenessProbe", "httpGet", "paht"], "/"), "paht: unknown field"),
        (_mutate(dep, pod + ["securityContext", "runAsNonroot"], True), "runAsNonroot: unknown field"),
        (_mutate(dep, ["metadata", "label"], {"a": "b"}), "/metadata/label: unknown field"),
        (_mutate(dep, ["spec", "replicas"], "3"), "replicas must be integer"),
        (_mutate(dep, pod + ["containers", 0, "ports", 0, "containerPort"], "8000"), "must be integer"),
        (_mutate(dep, pod + ["containers"], None, delete=True), "containers"),
        (_mutate(by_kind["Service"], ["spec", "ports", 0, "port"], "http"), "must be integer"),
        (_mutate(by_kind["Service"], ["spec", "selectors"], {}), "/spec/selectors: unknown field"),
        (_mutate(by_kind["ConfigMap"], ["data", "config.json"], {"a": 1}), "must be string"),
        (_mutate(by_kind["ServiceMonitor"], ["spec", "endpoints", 0, "intervall"], "30s"), "intervall: unknown field"),
        (_mutate(by_kind["HorizontalPodAutoscaler"], ["spec", "maxReplica"], 3), "maxReplica: unknown field"),
        (_mutate(by_kind["Role"], ["rules", 0, "verb"], ["get"]), "verb: unknown field"),
        (_mutate(dep, ["kind"], "Deploymnet"), "no model"),
    ]
    for kind, path, value, message in [
        ("ScaledObject", ["spec", "maxReplicas"], 3, "maxReplicas: unknown field"),
        ("ScaledObject", ["spec", "maxReplicaCount"], "3", "must be integer"),
        ("Ingress", ["spec", "rules", 0, "http", "path"], [], "path: unknown field"),
        ("HTTPRoute", ["spec", "parentRef"], [], "parentRef: unknown field"),
        ("HTTPRoute", ["spec", "rules", 0, "backendRefs", 0, "port"], "8000", "must be integer"),
    ]:
        assert kind in by_kind, f"all-features renders no {kind}"
        controls.append((_mutate(by_kind[kind], path, value), message))
    results = validate_objects([c[0] for c in controls])
    for (doc, message), r in zip(controls, results):
        assert not r["ok"], (message, r)
        assert any(message in e for e in r["errors"]), (message, r["errors"])
    print(f"strict validation: {len(controls)} negative controls rejected")


def test_prefill_decode_roles(tmp_path):
    """role: prefill makes an entry the prefill pool of the entry with the same served name; both
    Deployments' pods and Services carry vllm-router.io/role; with Kubernetes discovery the pods
    join the pools by that label."""
    pd_values = os.path.join(HERE, "pd.values.yaml")
    r = Rendered(pd_values, sets=["discovery.kubernetes.enabled=false"])
    models = r.router_config()["models"]
    assert [m["name"] for m in models] == ["llama"]
    llama = models[0]
    assert llama["policy"] == "load_aware"
    assert llama["endpoints"] == [f"http://{FULL}-llama-decode.{NS}.svc.cluster.local:8000"]
    assert llama["prefill"] == {"endpoints": [f"http://{FULL}-llama-prefill.{NS}.svc.cluster.local:8000"],
                                "policy": "prefix_aware"}
    for name, role in (("llama-decode", "decode"), ("llama-prefill", "prefill")):
        dep = r.get("Deployment", f"{FULL}-{name}")
        assert dep["spec"]["template"]["metadata"]["labels"]["vllm-router.io/role"] == role
        assert "vllm-router.io/role" not in dep["spec"]["selector"]["matchLabels"]  # selectors stay as they were
        assert r.get("Service", f"{FULL}-{name}")["metadata"]["labels"]["vllm-router.io/role"] == role
    check_config(r, tmp_path, with_env=False)

    d = Rendered(pd_values, sets=["discovery.kubernetes.enabled=true", "discovery.kubernetes.resource=pods"])
    llama = d.router_config()["models"][0]
    assert llama["endpoints"] == [] and llama["prefill"] == {"endpoints": [], "policy": "prefix_aware"}
    check_config(d, tmp_path, with_env=False)

    plain = Rendered(TWO_MODELS)
    for dep in plain.all("Deployment"):
        assert "vllm-router.io/role" not in dep["spec"]["template"]["metadata"]["labels"]
    assert all("prefill" not in m for m in plain.router_config()["models"])
