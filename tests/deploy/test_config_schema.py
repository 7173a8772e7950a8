"""The configuration's JSON Schema (`ai-gateway config schema`) against the repository's
configuration files: examples/gateway.yaml and every gateway configuration under deploy/ validate;
a file with a mistyped key, a bad duration or an unknown provider type does not; the committed
docs/reference/gateway.schema.json is what the binary prints."""

import json
import subprocess

import jsonschema
import pytest
import yaml

from deploy_common import DEPLOY, REPO

# Every gateway configuration file of the repository: a one-document YAML file whose top-level
# keys are all sections of the gateway's configuration (Grafana's provisioning file has
# `apiVersion`, Loki's `auth_enabled`, the compose files `services`).
SECTIONS = set(json.loads((REPO / "docs/reference/gateway.schema.json").read_text())["properties"])


def gateway_configs() -> list:
    found = []
    for path in sorted([REPO / "examples/gateway.yaml", *DEPLOY.rglob("*.y*ml")]):
        docs = list(yaml.safe_load_all(path.read_text()))
        if len(docs) == 1 and isinstance(docs[0], dict) and docs[0].keys() <= SECTIONS:
            found.append(path)
    return found


@pytest.fixture(scope="module")
def schema(binary) -> dict:
    out = subprocess.run([str(binary), "config", "schema"], capture_output=True, text=True, check=True)
    schema = json.loads(out.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def errors(schema: dict, doc) -> list[str]:
    v = jsonschema.Draft202012Validator(schema)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(doc)]


def test_the_files_are_found():
    names = {str(p.relative_to(REPO)) for p in gateway_configs()}
    assert {"examples/gateway.yaml", "deploy/gateway.yaml", "deploy/kubernetes/base/gateway.yaml"} <= names


@pytest.mark.parametrize("path", gateway_configs(), ids=lambda p: str(p.relative_to(REPO)))
def test_repository_configs_validate(schema, path):
    assert errors(schema, yaml.safe_load(path.read_text())) == []


@pytest.mark.parametrize(
    "doc, where",
    [
        ({"server": {"listn": "0.0.0.0:8080"}}, "server"),
        ({"server": {"request_timeout": "30 seconds"}}, "server.request_timeout"),
        ({"server": {"max_body_size": "10XB"}}, "server.max_body_size"),
        ({"providers": [{"name": "x", "type": "opnai"}]}, "providers.0.type"),
        ({"models": [{"name": "m"}]}, "models.0"),
        ({"cache": {"scope": "everyone"}}, "cache.scope"),
        ({"auth": {"keys": [{"name": "k", "rpm": -1}]}}, "auth"),
    ],
)
def test_mistakes_are_refused(schema, doc, where):
    found = errors(schema, doc)
    assert any(e.startswith(where + ":") for e in found), found


def test_the_committed_schema_is_current(schema):
    committed = json.loads((REPO / "docs/reference/gateway.schema.json").read_text())
    assert committed == schema
