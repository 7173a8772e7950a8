"""The deploy checker's own tests: the repository's files pass, and each kind of mistake in a
copy of them is caught (so a check that cannot fail would show here). Run by
scripts/check-deploy.sh with AI_GATEWAY_BIN set; kubectl and promtool must be installed."""

import copy
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import check_deploy
import kubernetes_checks as k8s
from compose_checks import check_compose
from deploy_common import DEPLOY


@pytest.fixture(scope="session")
def base_objs() -> list[dict]:
    return k8s.render("base")


@pytest.fixture(scope="session")
def overlay_objs() -> list[dict]:
    return k8s.render("overlays/with-redis-nats")


def the(objs: list[dict], kind: str, name: str | None = None) -> dict:
    found = k8s.find(objs, kind, name)
    assert len(found) == 1, (kind, name, found)
    return found[0]


def gateway_pod(objs: list[dict]) -> dict:
    return the(objs, "Deployment", "ai-gateway")["spec"]["template"]["spec"]


def mutated(objs: list[dict], change) -> list[dict]:
    """A deep copy of `objs` after `change(copy)`."""
    out = copy.deepcopy(objs)
    change(out)
    return out


def assert_caught(problems: list[str], *words: str) -> None:
    assert any(all(w in p for w in words) for p in problems), (words, problems)


# ---------------------------------------------------------------- the files as committed


def test_repository_files_pass(binary):
    assert check_deploy.check_all(binary) == []


def test_render_has_every_object(base_objs, overlay_objs):
    kinds = sorted(o["kind"] for o in base_objs)
    assert kinds == sorted(
        ["ConfigMap", "ConfigMap", "Deployment", "PodDisruptionBudget", "PrometheusRule", "Service", "ServiceMonitor"]
    )
    extra = sorted(o["kind"] for o in overlay_objs if o not in base_objs and o["kind"] != "Deployment")
    assert extra == sorted(["Service", "Service", "StatefulSet", "StatefulSet", "NetworkPolicy", "NetworkPolicy"])
    assert {o["metadata"]["namespace"] for o in overlay_objs} == {"ai-gateway"}


def test_a_missing_tool_is_a_problem(base_objs, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # neither kubectl nor promtool there
    with pytest.raises(RuntimeError, match="kubectl is not installed"):
        k8s.render("base")
    assert_caught(k8s.promtool_rules(the(base_objs, "PrometheusRule")), "promtool is not installed")


# ---------------------------------------------------------------- schemas


def test_unknown_field_fails_kubernetes_schema(base_objs):
    def change(objs):
        gateway_pod(objs)["containers"][0]["lifecycle"]["preStop"]["sleep"]["secnds"] = 5

    assert_caught(k8s.validate_schemas("t", mutated(base_objs, change), ("1.30.0",)), "Deployment/ai-gateway", "secnds")


def test_wrong_type_fails_kubernetes_schema(base_objs):
    def change(objs):
        the(objs, "PodDisruptionBudget")["spec"]["minAvailable"] = [1]

    assert_caught(k8s.validate_schemas("t", mutated(base_objs, change), ("1.37.0",)), "PodDisruptionBudget", "minAvailable")


def test_validation_uses_each_versions_schema(base_objs):
    # The schemas of 1.28 have no `sleep` handler: the validation does look at the version.
    assert_caught(k8s.validate_schemas("t", base_objs, ("1.28.0",)), "Deployment/ai-gateway", "sleep")


def test_servicemonitor_against_the_operators_schema(base_objs):
    def wrong_values(objs):
        the(objs, "ServiceMonitor")["spec"]["endpoints"][0]["interval"] = "15 seconds"
        the(objs, "ServiceMonitor")["spec"]["selector"]["matchExpressions"] = [{"key": "a"}]

    problems = k8s.validate_schemas("t", mutated(base_objs, wrong_values))
    assert_caught(problems, "ServiceMonitor", "endpoints/0/interval", "should match pattern")
    assert_caught(problems, "ServiceMonitor", "matchExpressions/0/operator", "Field required")

    def unknown_fields(objs):  # reported once the object is otherwise valid
        the(objs, "ServiceMonitor")["spec"]["endpoints"][0]["pathh"] = "/metrics"
        the(objs, "ServiceMonitor")["metadata"]["labelz"] = {}

    problems = k8s.validate_schemas("t", mutated(base_objs, unknown_fields))
    assert_caught(problems, "ServiceMonitor", "/spec/endpoints/0/pathh: no such field")
    assert_caught(problems, "ServiceMonitor", "/metadata/labelz: no such field")


def test_prometheusrule_against_the_operators_schema(base_objs):
    def wrong_values(objs):
        rules = the(objs, "PrometheusRule")["spec"]["groups"][0]["rules"]
        del rules[1]["expr"]
        rules[3]["for"] = "5 minutes"

    problems = k8s.validate_schemas("t", mutated(base_objs, wrong_values))
    assert_caught(problems, "PrometheusRule", "groups/0/rules/1/expr", "Field required")
    assert_caught(problems, "PrometheusRule", "groups/0/rules/3/for", "should match pattern")

    def unknown_field(objs):
        the(objs, "PrometheusRule")["spec"]["groups"][0]["rules"][2]["fr"] = "5m"

    problems = k8s.validate_schemas("t", mutated(base_objs, unknown_field))
    assert_caught(problems, "PrometheusRule", "/spec/groups/0/rules/2/fr: no such field")


def test_promtool_checks_the_rules(base_objs):
    rule = copy.deepcopy(the(base_objs, "PrometheusRule"))
    rule["spec"]["groups"][0]["rules"][0]["expr"] = "rate(ai_gateway_requests_total[5m]"
    assert_caught(k8s.promtool_rules(rule), "promtool check rules", "parse error")
    rule = copy.deepcopy(the(base_objs, "PrometheusRule"))
    rule["spec"]["groups"][0]["rules"][0]["record"] = "and_an_alert"  # the CRD allows it, Prometheus not
    assert_caught(k8s.promtool_rules(rule), "promtool check rules", "in recording rule")


# ---------------------------------------------------------------- generated objects


def test_generated_objects_follow_their_sources(base_objs):
    def change(objs):
        the(objs, "PrometheusRule")["spec"]["groups"][0]["rules"].pop()
        cm = the(objs, "ConfigMap", "ai-gateway-dashboard")
        cm["data"]["ai-gateway.json"] = json.dumps({**json.loads(cm["data"]["ai-gateway.json"]), "title": "x"})

    problems = k8s.check_generated(mutated(base_objs, change))
    assert_caught(problems, "PrometheusRule", "alerts.yml")
    assert_caught(problems, "dashboard ConfigMap", "ai-gateway.json")


def test_generate_check_notices_an_edited_source(tmp_path):
    copy_of_deploy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy_of_deploy)
    script = copy_of_deploy / "kubernetes/generate.sh"
    assert subprocess.run([script, "--check"], capture_output=True).returncode == 0
    alerts = copy_of_deploy / "prometheus/alerts.yml"
    alerts.write_text(alerts.read_text().replace("for: 1m", "for: 2m", 1))
    out = subprocess.run([script, "--check"], capture_output=True, text=True)
    assert out.returncode == 1 and "prometheusrule.yaml is out of date" in out.stderr
    subprocess.run([script], check=True, capture_output=True)
    assert subprocess.run([script, "--check"], capture_output=True).returncode == 0
    assert "for: 2m" in (copy_of_deploy / "kubernetes/base/prometheusrule.yaml").read_text()


# ---------------------------------------------------------------- the gateway against its configuration


def with_config(objs: list[dict], edit) -> list[dict]:
    def change(out):
        cm = [c for c in k8s.find(out, "ConfigMap") if "gateway.yaml" in c.get("data", {})][0]
        cfg = yaml.safe_load(cm["data"]["gateway.yaml"])
        edit(cfg)
        cm["data"]["gateway.yaml"] = yaml.safe_dump(cfg)

    return mutated(objs, change)


def test_shutdown_arithmetic(base_objs, binary):
    def short(objs):
        gateway_pod(objs)["terminationGracePeriodSeconds"] = 30

    assert_caught(k8s.check_gateway("t", mutated(base_objs, short), binary), "terminationGracePeriodSeconds 30 < preStop 5 + shutdown_grace 30")
    longer_grace = with_config(base_objs, lambda c: c["server"].update(shutdown_grace="2m"))
    assert_caught(k8s.check_gateway("t", longer_grace, binary), "shutdown_grace 120")

    def no_prestop(objs):
        del gateway_pod(objs)["containers"][0]["lifecycle"]

    assert_caught(k8s.check_gateway("t", mutated(base_objs, no_prestop), binary), "no preStop sleep")


def test_probes_and_ports(base_objs, binary):
    def change(objs):
        c = gateway_pod(objs)["containers"][0]
        c["readinessProbe"]["httpGet"]["path"] = "/health"
        c["livenessProbe"]["httpGet"]["port"] = "metrics"

    problems = k8s.check_gateway("t", mutated(base_objs, change), binary)
    assert_caught(problems, "readinessProbe must GET /ready")
    assert_caught(problems, "livenessProbe must GET /health")
    loopback = with_config(base_objs, lambda c: c["server"].update(listen="127.0.0.1:8080"))
    assert_caught(k8s.check_gateway("t", loopback, binary), "listen host 127.0.0.1")
    other_port = with_config(base_objs, lambda c: c["server"].update(listen="0.0.0.0:9000"))
    assert_caught(k8s.check_gateway("t", other_port, binary), "server.listen says 9000")


def test_config_mount_and_data_dir(base_objs, binary):
    def elsewhere(objs):
        gateway_pod(objs)["containers"][0]["env"][0]["value"] = "/etc/gateway.yaml"

    assert_caught(k8s.check_gateway("t", mutated(base_objs, elsewhere), binary), "no ConfigMap is mounted at /etc/gateway.yaml")
    on_root = with_config(base_objs, lambda c: c["state"].update(data_dir="/var/lib/gw"))
    assert_caught(k8s.check_gateway("t", on_root, binary), "data_dir /var/lib/gw is on no writable volume")
    # A relative data_dir resolves against the image's WORKDIR (/data): inside the emptyDir.
    relative = with_config(base_objs, lambda c: c["state"].update(data_dir="./data"))
    assert k8s.check_gateway("t", relative, binary) == []


def test_config_goes_through_ai_gateway_check(base_objs, binary):
    typo = with_config(base_objs, lambda c: c["models"][0]["deployments"][0].update(provider="lcal"))
    assert_caught(k8s.check_gateway("t", typo, binary), "ai-gateway check failed", 'no provider named "lcal"')
    unset = with_config(base_objs, lambda c: c["auth"].update(master_key="${NOT_IN_THE_SECRET}"))
    assert_caught(k8s.check_gateway("t", unset, binary), "NOT_IN_THE_SECRET")


def test_overlay_urls_name_its_services(overlay_objs, binary):
    def change(objs):
        env = gateway_pod(objs)["containers"][0]["env"]
        for e in env:
            if e["name"] == "REDIS_URL":
                e["value"] = "redis://redis-typo:6379"
            if e["name"] == "NATS_URL":
                e["value"] = "nats://ai-gateway-nats:4223"

    problems = k8s.check_gateway("t", mutated(overlay_objs, change), binary)
    assert_caught(problems, "REDIS_URL names Service redis-typo")
    assert_caught(problems, "NATS_URL: Service ai-gateway-nats has no port 4223")


# ---------------------------------------------------------------- objects against each other


def test_wiring(overlay_objs):
    def change(objs):
        the(objs, "Service", "ai-gateway")["spec"]["selector"]["app.kubernetes.io/component"] = "gatway"
        the(objs, "PodDisruptionBudget")["spec"]["minAvailable"] = 2
        the(objs, "ServiceMonitor")["spec"]["endpoints"][0]["port"] = "metrics"
        the(objs, "NetworkPolicy", "ai-gateway-redis")["spec"]["ingress"][0]["ports"][0]["port"] = "rediss"
        del the(objs, "StatefulSet", "ai-gateway-nats")["spec"]["volumeClaimTemplates"]
        the(objs, "Service", "ai-gateway-redis")["spec"]["clusterIP"] = "10.0.0.1"

    problems = k8s.check_wiring("t", mutated(overlay_objs, change))
    assert_caught(problems, "Service/ai-gateway", "matches no pod template")
    assert_caught(problems, "PodDisruptionBudget", "minAvailable leaves no pod")
    assert_caught(problems, "ServiceMonitor", "port metrics is no named port")
    assert_caught(problems, "NetworkPolicy/ai-gateway-redis", "port rediss")
    assert_caught(problems, "StatefulSet/ai-gateway-nats", "no volumeClaimTemplates")
    assert_caught(problems, "StatefulSet/ai-gateway-redis", "no headless Service")


def test_hardening(overlay_objs):
    def change(objs):
        sc = gateway_pod(objs)["containers"][0]["securityContext"]
        sc["readOnlyRootFilesystem"] = False
        del sc["capabilities"]
        nats = the(objs, "StatefulSet", "ai-gateway-nats")["spec"]["template"]["spec"]
        del nats["securityContext"]["runAsNonRoot"]
        del nats["containers"][0]["resources"]["limits"]

    problems = k8s.check_container_hardening("t", mutated(overlay_objs, change))
    assert_caught(problems, "ai-gateway container gateway", "not read-only")
    assert_caught(problems, "ai-gateway container gateway", "capabilities")
    assert_caught(problems, "ai-gateway-nats container nats", "runAsNonRoot")
    assert_caught(problems, "ai-gateway-nats container nats", "limits.memory")


# ---------------------------------------------------------------- compose


def compose_copy(tmp_path: Path, name: str, edit) -> Path:
    """deploy/ copied (so the bind mounts resolve), with `edit` applied to one compose file."""
    copy_of_deploy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy_of_deploy)
    path = copy_of_deploy / name
    doc = yaml.safe_load(path.read_text())
    edit(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_compose_services(tmp_path, binary):
    def edit(doc):
        s = doc["services"]
        s["redis"]["image"] = "redis"
        s["nats"]["ports"] = ["127.0.0.1:8080:4222", "4222:4222:4222"]
        del s["nats"]["healthcheck"]
        s["redis"]["volumes"] = ["redis-dat:/data", "./missing.conf:/etc/redis.conf"]
        s["gateway"]["depends_on"]["redis"].pop("required")
        s["redis"]["healthcheck"]["interval"] = "5 s"

    problems = check_compose(compose_copy(tmp_path, "docker-compose.yml", edit), binary)
    assert_caught(problems, "service redis", "image redis has no pinned tag")
    assert_caught(problems, "service nats", "host port 127.0.0.1:8080:4222 is also published by gateway")
    assert_caught(problems, "service nats", "'4222:4222:4222' is not")
    assert_caught(problems, "service gateway", "waits for nats to be healthy, but nats has no healthcheck")
    assert_caught(problems, "service gateway", "depends on redis", "required: false")
    assert_caught(problems, "service redis", "volume redis-dat is not declared")
    assert_caught(problems, "service redis", "bind mount ./missing.conf does not exist")
    assert_caught(problems, "service redis", "healthcheck interval")


def test_compose_gateway(tmp_path, binary):
    def edit(doc):
        g = doc["services"]["gateway"]
        g["ports"] = ["127.0.0.1:8080:9000"]
        g["healthcheck"]["test"] = ["CMD-SHELL", "curl -f localhost:8080/health"]

    problems = check_compose(compose_copy(tmp_path, "docker-compose.yml", edit), binary)
    assert_caught(problems, "service gateway", "listens on port 8080, publishes [9000]")
    assert_caught(problems, "service gateway", "healthcheck must be [CMD, /usr/local/bin/ai-gateway")


def test_compose_gateway_configuration(tmp_path, binary):
    path = compose_copy(tmp_path, "docker-compose-full.yml", lambda doc: None)
    gateway_yaml = path.parent / "gateway.yaml"
    gateway_yaml.write_text(gateway_yaml.read_text().replace('listen: "0.0.0.0:8080"', 'listen: "127.0.0.1:8080"').replace("type: mock", "type: mok"))
    problems = check_compose(path, binary)
    assert_caught(problems, "service gateway-1", "listens on 127.0.0.1")
    assert_caught(problems, "service gateway-2", "ai-gateway check failed", "mok")
    # The minimal file, run as its comment says with AI_GATEWAY_CONFIG, checks that file too.
    minimal = path.parent / "docker-compose.yml"
    assert_caught(check_compose(minimal, binary, {"AI_GATEWAY_CONFIG": "/etc/ai-gateway/stack.yaml"}), "listens on 127.0.0.1")
    assert_caught(check_compose(minimal, binary, {"AI_GATEWAY_CONFIG": "/etc/ai-gateway/other.yaml"}), "not a file mounted")
