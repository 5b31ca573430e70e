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
        assert port["targetPort"] == "http"
        cport = [p for p in matching[0]["spec"]["template"]["spec"]["containers"][0]["ports"]
                 if p["name"] == "http"][0]
        assert cport["containerPort"] == port["port"]
    # Router: probes, config volume, identity, security.
    dep = r.router_deployment()
    spec = dep["spec"]["template"]["spec"]
    c = r.router_container()
    tls = "VLLM_ROUTER_TLS_CERT_FILE" in r.router_env()
    scheme = {"scheme": "HTTPS"} if tls else {}
    assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http", **scheme}
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http", **scheme}
    assert c["ports"] == [{"name": "http", "containerPort": int(r.router_env()["VLLM_ROUTER_PORT"]["value"]),
                           "protocol": "TCP"}]
    env = r.router_env()
    assert env["VLLM_ROUTER_CONFIG"]["value"] == "/etc/vllm-router/config.json"
    assert c["volumeMounts"][0] == {"name": "config", "mountPath": "/etc/vllm-router", "readOnly": True}
    assert spec["volumes"][0] == {"name": "config", "configMap": {"name": f"{FULL}-config"}}
    # Only the tenants' keys Secret and the TLS Secret may add a volume (in that order).
    assert [v["name"] for v in spec["volumes"][1:]] in ([], ["tenant-keys"], ["tls"], ["tenant-keys", "tls"])
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
    # RBAC: least privilege for discovery, bound to the router's ServiceAccount only.
    if r.all("Role"):
        role = r.get("Role", f"{FULL}-discovery")
        rules = sorted((tuple(x["apiGroups"]), tuple(x["resources"]), tuple(sorted(x["verbs"])))
                       for x in role["rules"])
        assert rules == [(("",), ("pods",), ("get", "list", "watch")),
                         (("discovery.k8s.io",), ("endpointslices",), ("get", "list", "watch"))]
        rb = r.get("RoleBinding", f"{FULL}-discovery")
        assert rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                 "name": f"{FULL}-discovery"}
        assert rb["subjects"] == [{"kind": "ServiceAccount", "name": FULL, "namespace": NS}]
    # Model pods get no API token.
    for dep in r.all("Deployment"):
        if dep is not r.router_deployment():
            assert dep["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


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


def test_two_models(tmp_path):
    r = Rendered(TWO_MODELS, tmp_path=tmp_path)
    assert_common(r)
    assert r.kinds() == {"Deployment": 3, "Service": 3, "ConfigMap": 1, "ServiceAccount": 1,
                         "Role": 1, "RoleBinding": 1, "PodDisruptionBudget": 1}
    assert r.names() == {
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
        "VLLM_ROUTER_HOST": "0.0.0.0",
        "VLLM_ROUTER_PORT": "8080",
        "VLLM_ROUTER_POLICY": "least_requests",
        "VLLM_ROUTER_DEFAULT_MODEL": "llama-7b",
        "VLLM_ROUTER_LOG_LEVEL": "debug",
        "VLLM_ROUTER_THREADS": "4",
        "VLLM_ROUTER_MAX_CONNECTIONS": "0",
        "VLLM_ROUTER_MAX_BODY_BYTES": "16777216",
        "VLLM_ROUTER_CONNECT_TIMEOUT_MS": "2000",
        "VLLM_ROUTER_READ_TIMEOUT_MS": "300000",
    }
    assert env["VLLM_ROUTER_API_KEYS"]["valueFrom"] == {"secretKeyRef": {"name": "router-keys", "key": "keys"}}
    assert not r.all("Secret")  # the existing Secret is not the chart's
    assert r.router_container()["resources"]["requests"] == {"cpu": "1", "memory": "512Mi"}

    # Router config: both models at their Service URLs, the alias, file-only settings.
    cfg = r.router_config()
    assert cfg["models"] == [
        {"name": "TheBloke/Llama-2-13B-chat-GPTQ",
         "endpoints": [f"http://{FULL}-llama-2-13b-chat-gptq.{NS}.svc.cluster.local:8000"]},
        {"name": "meta-llama/Llama-2-7B-chat-hf", "aliases": ["llama-7b"],
         "endpoints": [f"http://{FULL}-llama-2-7b-chat.{NS}.svc.cluster.local:8000"]},
    ]
    assert cfg["drain_timeout_ms"] == 20000 and cfg["timeouts"] == {"write_ms": 30000}
    out = check_config(r, tmp_path, with_env=False)
    assert "2 model(s)" in out and "TheBloke/Llama-2-13B-chat-GPTQ: 1 endpoint(s)" in out
    out = check_config(r, tmp_path, with_env=True)
    assert "policy least_requests" in out

    # Model Deployments: image, args, replicas, resources, scheduling, probes, HF token.
    dep, c = model_deployment(r, "llama-2-13b-chat-gptq")
    assert dep["spec"]["replicas"] == 2
    assert c["image"] == "vllm/vllm-openai:v0.6.3"
    assert c["args"] == ["--model", "TheBloke/Llama-2-13B-chat-GPTQ",
                         "--served-model-name", "TheBloke/Llama-2-13B-chat-GPTQ",
                         "--host", "0.0.0.0", "--port", "8000",
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
    assert {"name": "cache", "emptyDir": {}} in pod["volumes"]

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

    # NOTES: port-forward and an example request.
    assert f"port-forward svc/{FULL} 8080:8080" in r.notes
    assert "TheBloke/Llama-2-13B-chat-GPTQ" in r.notes and "Authorization: Bearer" in r.notes


def test_all_features(tmp_path):
    r = Rendered(TWO_MODELS, ALL_FEATURES, tmp_path=tmp_path)
    assert_common(r)
    assert r.kinds() == {"Deployment": 3, "Service": 3, "ConfigMap": 2, "ServiceAccount": 1,
                         "Role": 1, "RoleBinding": 1, "PodDisruptionBudget": 1,
                         "HorizontalPodAutoscaler": 1, "ServiceMonitor": 2, "Secret": 1,
                         "PersistentVolumeClaim": 1}

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
    assert c["env"] == [{"name": "HF_TOKEN",
                         "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "HF_TOKEN"}}}]
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
    assert "curl https://localhost:8080/v1/models" in r.notes
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
    assert not r.all("PodDisruptionBudget") and not r.all("Role") and not r.all("ServiceAccount")
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


def test_replicas_render_identically():
    """No per-replica state: two renderings are byte-identical (no random or time-based values)."""
    assert run_render(TWO_MODELS).stdout == run_render(TWO_MODELS).stdout


@pytest.mark.parametrize("values,message", [
    ("models:\n  - {name: Bad_Name, model: x/y}\n", "must be a DNS label"),
    ("models:\n  - {name: a, model: x/y}\n  - {name: a, model: x/z}\n", "used twice"),
    ("models:\n  - {name: a}\n", "models[0].model is required"),
    ("models:\n  - {name: a, model: x/y, deploy: false}\n", "endpoints must list"),
    ("router:\n  autoscaling: {enabled: true, minReplicas: 5, maxReplicas: 2}\n", "minReplicas"),
    ("router:\n  apiKeys: {keys: [k]}\n  serviceMonitor: {enabled: true}\n", "bearerTokenSecret is required"),
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
    r = Rendered(str(f))
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
    assert "kubectl -n llm port-forward svc/llm-vllm-router 8080:8080" in readme
    check_config(r, tmp_path, with_env=True)


def test_kubernetes_discovery_values(tmp_path):
    """discovery.kubernetes.enabled: the router watches this release's model pods (no Service
    URLs in its models), and the rendered config passes --check-config."""
    r = Rendered(TWO_MODELS, sets=["discovery.kubernetes.enabled=true",
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
    # Off by default: no discovery key, Service URLs as before.
    assert "discovery" not in Rendered(TWO_MODELS).router_config()
