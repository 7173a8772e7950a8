"""The Kubernetes examples of docs/deployment.md, as written there: your own overlay (image,
replicas, your gateway.yaml, the release label), the overlay without the Prometheus Operator and
the HorizontalPodAutoscaler render and validate like the repository's files."""

import re
import shutil

import pytest
import yaml

import kubernetes_checks as k8s
from deploy_common import DEPLOY, REPO


def yaml_blocks() -> list[str]:
    text = (REPO / "docs/deployment.md").read_text()
    return re.findall(r"```yaml\n(.*?)```", text, re.S)


def block_with(word: str) -> str:
    found = [b for b in yaml_blocks() if word in b]
    assert len(found) == 1, f"docs/deployment.md: expected one yaml block with {word!r}, found {len(found)}"
    return found[0]


@pytest.fixture
def kubernetes_copy(tmp_path):
    root = tmp_path / "kubernetes"
    shutil.copytree(DEPLOY / "kubernetes", root)
    return root


def write_overlay(root, name: str, kustomization: str):
    overlay = root / "overlays" / name
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(kustomization)
    shutil.copy(root / "base/gateway.yaml", overlay / "gateway.yaml")
    return f"overlays/{name}"


def test_your_own_overlay(kubernetes_copy):
    doc = block_with("behavior: replace")
    objs = k8s.render(write_overlay(kubernetes_copy, "prod", doc), kubernetes_copy)
    assert k8s.validate_schemas("docs overlay", objs) == []
    assert k8s.check_wiring("docs overlay", objs) == []
    dep = k8s.find(objs, "Deployment", "ai-gateway")[0]
    assert dep["spec"]["replicas"] == 3
    assert k8s.gateway_container(dep)["image"] == "registry.example.com/ai-gateway:0.1.0"
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert k8s.find(objs, kind)[0]["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert k8s.find(objs, "StatefulSet", "ai-gateway-redis")


def test_overlay_without_the_prometheus_operator(kubernetes_copy):
    patches = block_with("$patch: delete")
    doc = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../../base\n" + patches
    objs = k8s.render(write_overlay(kubernetes_copy, "plain", doc), kubernetes_copy)
    assert sorted(o["kind"] for o in objs) == ["ConfigMap", "ConfigMap", "Deployment", "PodDisruptionBudget", "Service"]


def test_autoscaler():
    hpa = yaml.safe_load(block_with("HorizontalPodAutoscaler"))
    assert k8s.validate_schemas("docs", [hpa]) == []
    assert hpa["spec"]["scaleTargetRef"]["name"] == "ai-gateway"
    assert hpa["spec"]["minReplicas"] >= 2  # the PodDisruptionBudget's minAvailable 1 needs two
