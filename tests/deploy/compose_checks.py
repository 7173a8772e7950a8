"""The compose files: each service's image, ports, healthcheck, dependencies and mounts, and each
gateway's configuration through `ai-gateway check`, without Docker."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from deploy_common import GATEWAY_BINARY, GATEWAY_IMAGE, REPO, Problems, duration_seconds, listen_port, run_check

PORT = re.compile(r"^(?:(?P<ip>\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-f:]+\]):)?(?:(?P<host>\d+):)?(?P<container>\d+)(?:/(?P<proto>tcp|udp))?$")
HEALTH_KEYS = {"test", "interval", "timeout", "retries", "start_period", "start_interval", "disable"}


def interpolate(value: str, env: dict) -> str:
    """Compose's `${VAR}` / `${VAR:-default}` / `${VAR-default}`, from `env` only."""
    def one(m: re.Match) -> str:
        name, op, default = m.group(1), m.group(2), m.group(3) or ""
        got = env.get(name)
        if op == ":-":
            return got if got else default
        if op == "-":
            return default if got is None else got
        return got or ""
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}", one, str(value))


def check_compose(path: Path, binary: Path, env: dict | None = None) -> Problems:
    """`env` plays the shell's environment for compose's interpolation (empty by default)."""
    env = env or {}
    problems = Problems()
    where = str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)
    doc = yaml.safe_load(path.read_text())
    services = doc.get("services") or {}
    if not services:
        problems.add(where, "no services")
    volumes = set((doc.get("volumes") or {}).keys())
    published: dict[tuple[str, int], str] = {}
    for name, svc in services.items():
        at = f"{where} service {name}"
        image = svc.get("image")
        if not image:
            problems.add(at, "no image")
        elif ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest"):
            problems.add(at, f"image {image} has no pinned tag")
        for entry in svc.get("ports", []):
            m = PORT.match(str(entry))
            if not m or not all(0 < int(p) < 65536 for p in (m["host"] or "1", m["container"])):
                problems.add(at, f"port {entry!r} is not [ip:]host:container[/proto]")
                continue
            if m["host"]:
                key = (m["ip"] or "0.0.0.0", int(m["host"]))
                if key in published:
                    problems.add(at, f"host port {entry} is also published by {published[key]}")
                published[key] = name
        problems.extend(check_healthcheck(at, svc))
        deps = svc.get("depends_on") or {}
        for dep, cond in (deps.items() if isinstance(deps, dict) else ((d, {}) for d in deps)):
            target = services.get(dep)
            if target is None:
                problems.add(at, f"depends on {dep}, which is not a service")
                continue
            if cond.get("condition") == "service_healthy" and "healthcheck" not in target:
                problems.add(at, f"waits for {dep} to be healthy, but {dep} has no healthcheck")
            if set(target.get("profiles", [])) - set(svc.get("profiles", [])) and cond.get("required", True):
                problems.add(at, f"depends on {dep} (profiles {target['profiles']}) without `required: false`")
        for vol in svc.get("volumes", []):
            source = str(vol).split(":", 1)[0]
            if source.startswith((".", "/")):
                if source.startswith(".") and not (path.parent / source).exists():
                    problems.add(at, f"bind mount {source} does not exist")
            elif source not in volumes:
                problems.add(at, f"volume {source} is not declared under volumes:")
        if GATEWAY_IMAGE.match(image or ""):
            problems.extend(check_compose_gateway(at, path, svc, binary, env))
    return problems


def check_healthcheck(at: str, svc: dict) -> Problems:
    problems = Problems()
    hc = svc.get("healthcheck")
    if hc is None:
        return problems
    unknown = set(hc) - HEALTH_KEYS
    if unknown:
        problems.add(at, f"unknown healthcheck keys {sorted(unknown)}")
    test = hc.get("test")
    if not (isinstance(test, list) and test and test[0] in ("CMD", "CMD-SHELL", "NONE")) and not isinstance(test, str):
        problems.add(at, f"healthcheck test {test!r} is not [CMD, ...], [CMD-SHELL, ...] or a string")
    for key in ("interval", "timeout", "start_period", "start_interval"):
        if key in hc:
            try:
                duration_seconds(hc[key])
            except ValueError as e:
                problems.add(at, f"healthcheck {key}: {e}")
    if "retries" in hc and not (isinstance(hc["retries"], int) and hc["retries"] > 0):
        problems.add(at, "healthcheck retries must be a positive integer")
    return problems


def check_compose_gateway(at: str, path: Path, svc: dict, binary: Path, shell_env: dict) -> Problems:
    """The gateway's port is the one its configuration listens on; that configuration passes
    `ai-gateway check`; its healthcheck runs the binary itself (the image has no shell)."""
    problems = Problems()
    env = {k: interpolate(v, shell_env) for k, v in (svc.get("environment") or {}).items()}
    mounts = {}
    for vol in svc.get("volumes", []):
        parts = str(vol).split(":")
        if parts[0].startswith("."):
            mounts[parts[1]] = path.parent / parts[0]
        elif len(parts) > 1 and not parts[0].startswith("/"):
            mounts[parts[1]] = None
    config = env.get("AI_GATEWAY_CONFIG", "")  # the image sets none: the built-in default
    if config:
        if mounts.get(config) is None:
            problems.add(at, f"AI_GATEWAY_CONFIG {config} is not a file mounted from deploy/")
            return problems
        text = mounts[config].read_text()
        listen = (yaml.safe_load(text) or {}).get("server", {}).get("listen", "127.0.0.1:8080")
    else:
        listen = env.get("AI_GATEWAY_LISTEN", "127.0.0.1:8080")
    # Every configuration file mounted into the gateway, used now or by choice, must load.
    for target, source in mounts.items():
        if source is not None and source.suffix in (".yaml", ".yml"):
            problems.extend(run_check(f"{at} {target}", binary, source.read_text(), {k: v for k, v in env.items() if v}))
    host, port = listen_port(interpolate(listen, env))
    if host not in ("0.0.0.0", "::"):
        problems.add(at, f"listens on {host}: the published port cannot reach it")
    container_ports = {int(PORT.match(str(p))["container"]) for p in svc.get("ports", []) if PORT.match(str(p))}
    if port not in container_ports:
        problems.add(at, f"listens on port {port}, publishes {sorted(container_ports)}")
    test = (svc.get("healthcheck") or {}).get("test")
    if test is not None and not (isinstance(test, list) and test[:2] == ["CMD", GATEWAY_BINARY]):
        problems.add(at, f"the healthcheck must be [CMD, {GATEWAY_BINARY}, ...] (distroless: no shell)")
    return problems
