"""The Kubernetes manifests: rendered by the real `kubectl kustomize`; every object validated
against the Kubernetes JSON schemas of each version we support (kubernetes-validate, strict:
unknown fields fail), the Prometheus Operator objects against the operator's CRD schema (the
models generated from it; unknown fields fail too) and their rules by `promtool check rules`;
the generated objects compared with their sources; the objects checked against each other
(selectors, named ports, probes, mounts, the shutdown arithmetic, security context) and the
gateway configuration inside the ConfigMap checked by `ai-gateway check`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import kubernetes_validate
import pydantic
import yaml

from deploy_common import DEPLOY, GATEWAY_IMAGE, Problems, duration_seconds, listen_port, run_check

K8S = DEPLOY / "kubernetes"
KUSTOMIZATIONS = ("base", "overlays/with-redis-nats")
# preStop `sleep` is on by default from 1.30; kubernetes-validate carries schemas up to 1.37.
K8S_VERSIONS = tuple(f"1.{minor}.0" for minor in range(30, 38))
OPERATOR_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "ServiceMonitor",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "PrometheusRule",
}
# What docs/deployment.md's `kubectl create secret` puts into the Secret (placeholder values).
SECRET_ENV = {
    "GATEWAY_MASTER_KEY": "sk-admin-deploy-check",
    "GATEWAY_API_KEY": "sk-client-deploy-check",
    "WEBHOOK_SECRET": "whsec_ZGVwbG95LWNoZWNrLW9ubHktbm90LWEtcmVhbC1zZWNyZXQ=",
}
# The image's WORKDIR: relative paths in a configuration resolve against it.
IMAGE_WORKDIR = "/data"
# Seconds terminationGracePeriodSeconds must leave after preStop + shutdown_grace (job release,
# spend flush, trace export).
SHUTDOWN_MARGIN = 5


def matches(selector: dict, labels: dict) -> bool:
    """A LabelSelector's matchLabels (our files use no expressions) against a label set."""
    want = selector.get("matchLabels", selector)
    return bool(want) and all(labels.get(k) == v for k, v in want.items())


def render(kustomization: str, root: Path = K8S) -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise RuntimeError(
            "kubectl is not installed: `kubectl kustomize` renders the manifests "
            "(kubectl >= 1.27, kustomize v5; Debian's kubernetes-client 1.20 is too old)"
        )
    out = subprocess.run(
        [kubectl, "kustomize", str(root / kustomization)], capture_output=True, text=True
    )
    if out.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {kustomization} failed:\n{out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def unknown_fields(given, kept, path: str = ""):
    """Paths in `given` that a model dropped on validation (its fields are the CRD's: whatever
    it did not keep is no field of the CRD)."""
    if isinstance(given, dict) and isinstance(kept, dict):
        for key, value in given.items():
            if key not in kept:
                yield f"{path}/{key}"
            else:
                yield from unknown_fields(value, kept[key], f"{path}/{key}")
    elif isinstance(given, list) and isinstance(kept, list):
        for i, (a, b) in enumerate(zip(given, kept)):
            yield from unknown_fields(a, b, f"{path}/{i}")


def validate_operator_object(obj: dict) -> list[str]:
    """A Prometheus Operator object against the operator's CRD schema, as the models generated
    from it (cloudcoil-models-prometheus-operator): types, patterns, enums, required fields; and
    no field the CRD does not have."""
    from cloudcoil.models.prometheus_operator import v1  # ~4 s to import: only when needed

    model = getattr(v1, OPERATOR_KINDS[(obj.get("apiVersion"), obj.get("kind"))])
    try:
        kept = model.model_validate(obj).model_dump(mode="json", by_alias=True, exclude_unset=True)
    except pydantic.ValidationError as e:
        return ["/".join(str(p) for p in err["loc"]) + f": {err['msg']}" for err in e.errors()]
    return [f"{path}: no such field" for path in unknown_fields(obj, kept)]


def validate_schemas(where: str, objs: list[dict], versions=K8S_VERSIONS) -> Problems:
    problems = Problems()
    for obj in objs:
        name = f"{where} {obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        if (obj.get("apiVersion"), obj.get("kind")) in OPERATOR_KINDS:
            for message in validate_operator_object(obj):
                problems.add(name, message)
            continue
        for version in versions:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                problems.add(name, f"no schema for {obj.get('apiVersion')} in Kubernetes {version}")
            except kubernetes_validate.ValidationError as e:
                path = "/".join(str(p) for p in e.path)
                problems.add(name, f"Kubernetes {version}: {path}: {e.message}")
    return problems


def find(objs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [
        o
        for o in objs
        if o.get("kind") == kind and (name is None or o["metadata"]["name"] == name)
    ]


def workloads(objs: list[dict]) -> list[dict]:
    return [o for o in objs if o.get("kind") in ("Deployment", "StatefulSet")]


def pod_labels(workload: dict) -> dict:
    return workload["spec"]["template"]["metadata"].get("labels", {})


def container_ports(workload: dict) -> dict[str, int]:
    ports = {}
    for c in workload["spec"]["template"]["spec"]["containers"]:
        for p in c.get("ports", []):
            ports[p.get("name", str(p["containerPort"]))] = p["containerPort"]
    return ports


def gateway_container(deployment: dict) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    for c in containers:
        if GATEWAY_IMAGE.match(c.get("image", "")):
            return c
    raise ValueError(f"Deployment {deployment['metadata']['name']} runs no ai-gateway image")


def has_port(workload: dict, port: str | int) -> bool:
    """A container port of the workload, by name or number."""
    known = container_ports(workload)
    return port in known if isinstance(port, str) else port in known.values()


def selected(problems: Problems, name: str, selector: dict, pods: list[dict]) -> list[dict]:
    """The workloads whose pods `selector` selects; none is a problem."""
    targets = [w for w in pods if matches(selector, pod_labels(w))]
    if not targets:
        problems.add(name, "its selector matches no pod template")
    return targets


def check_wiring(where: str, objs: list[dict]) -> Problems:
    """Selectors select something, named ports exist, StatefulSets have their Service."""
    problems = Problems()
    pods = workloads(objs)
    for w in pods:
        name = f"{where} {w['kind']}/{w['metadata']['name']}"
        if not matches(w["spec"]["selector"], pod_labels(w)):
            problems.add(name, "the selector does not match the pod template's labels")
        if w["kind"] == "StatefulSet":
            svc = find(objs, "Service", w["spec"].get("serviceName"))
            if not svc or svc[0]["spec"].get("clusterIP") != "None":
                problems.add(name, "serviceName names no headless Service")
            if not w["spec"].get("volumeClaimTemplates"):
                problems.add(name, "no volumeClaimTemplates: its data would not outlive the pod")
    for svc in find(objs, "Service"):
        name = f"{where} Service/{svc['metadata']['name']}"
        for w in selected(problems, name, svc["spec"].get("selector", {}), pods):
            for port in svc["spec"]["ports"]:
                if not has_port(w, port.get("targetPort", port["port"])):
                    problems.add(name, f"targetPort {port.get('targetPort')} is no port of {w['metadata']['name']}")
    for pdb in find(objs, "PodDisruptionBudget"):
        name = f"{where} PodDisruptionBudget/{pdb['metadata']['name']}"
        for w in selected(problems, name, pdb["spec"]["selector"], pods):
            if pdb["spec"].get("minAvailable", 0) >= w["spec"].get("replicas", 1):
                problems.add(name, f"minAvailable leaves no pod of {w['metadata']['name']} to evict")
    for sm in find(objs, "ServiceMonitor"):
        name = f"{where} ServiceMonitor/{sm['metadata']['name']}"
        svcs = [s for s in find(objs, "Service") if matches(sm["spec"]["selector"], s["metadata"].get("labels", {}))]
        if not svcs:
            problems.add(name, "its selector matches no Service's labels")
        for ep, s in ((ep, s) for ep in sm["spec"]["endpoints"] for s in svcs):
            if ep.get("port") not in {p.get("name") for p in s["spec"]["ports"]}:
                problems.add(name, f"port {ep.get('port')} is no named port of Service/{s['metadata']['name']}")
    for np in find(objs, "NetworkPolicy"):
        name = f"{where} NetworkPolicy/{np['metadata']['name']}"
        targets = selected(problems, name, np["spec"]["podSelector"], pods)
        for rule in np["spec"].get("ingress", []):
            for peer in rule.get("from", []):
                if "podSelector" in peer:
                    selected(problems, f"{name} (from)", peer["podSelector"], pods)
            for port, w in ((p.get("port"), w) for p in rule.get("ports", []) for w in targets):
                if not has_port(w, port):
                    problems.add(name, f"port {port} is no port of {w['metadata']['name']}")
    return problems


def check_container_hardening(where: str, objs: list[dict]) -> Problems:
    problems = Problems()
    for w in workloads(objs):
        spec = w["spec"]["template"]["spec"]
        pod_sc = spec.get("securityContext", {})
        for c in spec["containers"]:
            name = f"{where} {w['kind']}/{w['metadata']['name']} container {c['name']}"
            sc = c.get("securityContext", {})
            if not sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")):
                problems.add(name, "runAsNonRoot is not set")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.add(name, "the root filesystem is not read-only")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.add(name, "allowPrivilegeEscalation is not false")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                problems.add(name, "capabilities are not all dropped")
            res = c.get("resources", {})
            for need in ("requests.cpu", "requests.memory", "limits.memory"):
                section, key = need.split(".")
                if key not in res.get(section, {}):
                    problems.add(name, f"resources.{need} is not set")
            if spec.get("automountServiceAccountToken") is not False:
                problems.add(name, "the service account token is mounted (nothing here uses it)")
    return problems


def configmap_file(objs: list[dict], container: dict, pod_spec: dict, path: str) -> str | None:
    """The content a ConfigMap volume puts at `path` in `container`, if any."""
    for mount in container.get("volumeMounts", []):
        mount_path = mount["mountPath"].rstrip("/")
        if not path.startswith(mount_path + "/"):
            continue
        key = mount.get("subPath") or path[len(mount_path) + 1 :]
        vols = [v for v in pod_spec.get("volumes", []) if v["name"] == mount["name"]]
        if vols and "configMap" in vols[0]:
            cms = find(objs, "ConfigMap", vols[0]["configMap"]["name"])
            if cms:
                return cms[0].get("data", {}).get(key)
    return None


def writable_mount(container: dict, pod_spec: dict, path: str) -> bool:
    for mount in container.get("volumeMounts", []):
        mount_path = mount["mountPath"].rstrip("/")
        if (path == mount_path or path.startswith(mount_path + "/")) and not mount.get("readOnly"):
            vols = [v for v in pod_spec.get("volumes", []) if v["name"] == mount["name"]]
            if vols and ("emptyDir" in vols[0] or "persistentVolumeClaim" in vols[0]):
                return True
    return False


def check_gateway(where: str, objs: list[dict], binary: Path) -> Problems:
    """The gateway Deployment against its own configuration and the Services around it."""
    problems = Problems()
    deployments = [d for d in find(objs, "Deployment") if any(GATEWAY_IMAGE.match(c.get("image", "")) for c in d["spec"]["template"]["spec"]["containers"])]
    if len(deployments) != 1:
        problems.add(where, f"expected one gateway Deployment, found {len(deployments)}")
        return problems
    dep = deployments[0]
    name = f"{where} Deployment/{dep['metadata']['name']}"
    spec = dep["spec"]["template"]["spec"]
    c = gateway_container(dep)
    env = {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}
    config_path = env.get("AI_GATEWAY_CONFIG")
    if not config_path:
        problems.add(name, "AI_GATEWAY_CONFIG is not set")
        return problems
    text = configmap_file(objs, c, spec, config_path)
    if text is None:
        problems.add(name, f"no ConfigMap is mounted at {config_path} (AI_GATEWAY_CONFIG)")
        return problems
    cfg = yaml.safe_load(text) or {}
    problems.extend(run_check(f"{name} {config_path}", binary, text, {**SECRET_ENV, **env}))

    server = cfg.get("server", {})
    host, port = listen_port(server.get("listen", "127.0.0.1:8080"))
    if host not in ("0.0.0.0", "::"):
        problems.add(name, f"server.listen host {host}: probes and the Service cannot reach it")
    ports = container_ports(dep)
    if ports.get("http") != port:
        problems.add(name, f"container port `http` is {ports.get('http')}, server.listen says {port}")
    for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/health")):
        got = c.get(probe, {}).get("httpGet", {})
        if got.get("path") != path or got.get("port") not in ("http", port):
            problems.add(name, f"{probe} must GET {path} on port http, has {got}")

    data_dir = cfg.get("state", {}).get("data_dir", "./data")
    data_dir = os.path.normpath(os.path.join(IMAGE_WORKDIR, data_dir))
    if not writable_mount(c, spec, data_dir):
        problems.add(name, f"state.data_dir {data_dir} is on no writable volume (the root is read-only)")

    grace = duration_seconds(server.get("shutdown_grace", "30s"))
    sleep = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    total = spec.get("terminationGracePeriodSeconds", 30)
    if sleep <= 0:
        problems.add(name, "no preStop sleep: endpoints are still being removed at SIGTERM")
    if total < sleep + grace + SHUTDOWN_MARGIN:
        problems.add(
            name,
            f"terminationGracePeriodSeconds {total} < preStop {sleep} + shutdown_grace "
            f"{grace:g} + {SHUTDOWN_MARGIN}: pods would be killed mid-drain",
        )
    problems.extend(check_state_urls(name, objs, env))
    return problems


def check_state_urls(name: str, objs: list[dict], env: dict) -> Problems:
    """REDIS_URL / NATS_URL set in the Deployment name a Service of the render and its port."""
    problems = Problems()
    for var, scheme in (("REDIS_URL", "redis"), ("NATS_URL", "nats")):
        url = env.get(var)
        if not url:
            continue
        m = re.fullmatch(rf"{scheme}://([a-z0-9-]+)(?:\.[a-z0-9.-]+)?:(\d+)/?", url)
        if not m:
            problems.add(name, f"{var} {url!r} is not {scheme}://service:port")
            continue
        svc = find(objs, "Service", m.group(1))
        if not svc:
            problems.add(name, f"{var} names Service {m.group(1)}, which is not in the render")
        elif int(m.group(2)) not in {p["port"] for p in svc[0]["spec"]["ports"]}:
            problems.add(name, f"{var}: Service {m.group(1)} has no port {m.group(2)}")
    return problems


def check_generated_files() -> Problems:
    """The committed generated files are what generate.sh makes of the sources now."""
    problems = Problems()
    out = subprocess.run([str(K8S / "generate.sh"), "--check"], capture_output=True, text=True)
    if out.returncode != 0:
        problems.add("deploy/kubernetes/generate.sh --check", out.stdout + out.stderr)
    return problems


def check_generated(objs: list[dict]) -> Problems:
    """The rendered PrometheusRule and dashboard ConfigMap hold their sources; the rules are valid."""
    problems = Problems()
    alerts = yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())
    rules = find(objs, "PrometheusRule")
    if len(rules) != 1 or rules[0]["spec"] != alerts:
        problems.add("PrometheusRule", "its spec is not deploy/prometheus/alerts.yml")
    dashboard = json.loads((DEPLOY / "grafana/dashboards/ai-gateway.json").read_text())
    cms = [c for c in find(objs, "ConfigMap") if c["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    if len(cms) != 1:
        problems.add("dashboard ConfigMap", f"expected one with label grafana_dashboard=\"1\", found {len(cms)}")
    elif [json.loads(v) for v in cms[0]["data"].values()] != [dashboard]:
        problems.add("dashboard ConfigMap", "its data is not deploy/grafana/dashboards/ai-gateway.json")
    for rule in rules:
        problems.extend(promtool_rules(rule))
    return problems


def promtool_rules(rule: dict) -> Problems:
    problems = Problems()
    promtool = shutil.which("promtool")
    if promtool is None:
        problems.add("PrometheusRule", "promtool is not installed (Debian package prometheus)")
        return problems
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
        yaml.safe_dump(rule["spec"], f)
        f.flush()
        out = subprocess.run([promtool, "check", "rules", f.name], capture_output=True, text=True)
    if out.returncode != 0:
        problems.add(f"PrometheusRule/{rule['metadata']['name']}", "promtool check rules:\n" + out.stdout + out.stderr)
    return problems
