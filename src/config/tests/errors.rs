//! Did-you-mean and the error format: unknown keys and values, types, paths and lines; YAML-level errors.

use super::*;

#[test]
fn unknown_provider_did_you_mean() {
    let text = format!(
        "{PROVIDERS}models:
  - name: a
    deployments:
      - provider: opnai
        model: gpt-4o-mini
"
    );
    let e = one_err(&text);
    assert_eq!(
        e.to_string(),
        "models[0].deployments[0].provider: no provider named \"opnai\" (line 9); did you mean \"openai\"?"
    );
    assert_eq!(e.path, "models[0].deployments[0].provider");
    assert_eq!(e.line, Some(9));
    assert_eq!(e.hint.as_deref(), Some("did you mean \"openai\"?"));
}

#[test]
fn unknown_provider_far_from_any_lists_them() {
    let text = format!(
        "{PROVIDERS}models:
  - name: a
    deployments: [{{provider: zzzzzz, model: x}}]
"
    );
    let e = one_err(&text);
    assert_eq!(e.message, "no provider named \"zzzzzz\"");
    assert_eq!(e.line, Some(8));
    assert_eq!(e.hint.as_deref(), Some("known providers: openai, local"));
}

#[test]
fn unknown_key_did_you_mean() {
    let e = one_err("server:\n  listn: \"0.0.0.0:80\"\n");
    assert_eq!(
        e.to_string(),
        "server.listn: unknown key \"listn\" (line 2); did you mean \"listen\"?"
    );
}

#[test]
fn unknown_key_far_from_any_lists_allowed() {
    let e = one_err("server:\n  zzz: 1\n");
    assert_eq!(e.path, "server.zzz");
    assert_eq!(e.message, "unknown key \"zzz\"");
    assert_eq!(
        e.hint.as_deref(),
        Some(
            "expected one of: listen, max_body_size, request_timeout, shutdown_grace, header_read_timeout, idle_timeout, max_connections, cors_allowed_origins"
        )
    );
}

#[test]
fn unknown_top_level_and_nested_keys() {
    let e = one_err("servr: {}\n");
    assert_eq!(e.path, "servr");
    assert_eq!(e.hint.as_deref(), Some("did you mean \"server\"?"));
    let e = one_err(&format!("{PROVIDERS}    api_kye: x\n"));
    assert_eq!(e.path, "providers[1].api_kye");
    assert_eq!(e.line, Some(6));
    assert_eq!(e.hint.as_deref(), Some("did you mean \"api_key\"?"));
    let e = one_err("resilience:\n  circuit_breaker:\n    open: 3s\n");
    assert_eq!(e.path, "resilience.circuit_breaker.open");
    assert_eq!(e.line, Some(3));
    assert_eq!(e.hint.as_deref(), Some("did you mean \"open_for\"?"));
}

#[test]
fn unknown_enum_value() {
    let e = one_err("providers:\n  - name: x\n    type: opneai\n");
    assert_eq!(e.path, "providers[0].type");
    assert_eq!(e.line, Some(3));
    assert_eq!(e.message, "unknown value \"opneai\"");
    assert_eq!(e.hint.as_deref(), Some("did you mean \"openai\"?"));
    let e = one_err("models:\n  - name: m\n    routing: least_busy\n    deployments: []\n");
    assert_eq!(e.path, "models[0].routing");
    assert_eq!(e.hint.as_deref(), Some("did you mean \"least-busy\"?"));
    let e = one_err("cache:\n  scope: everyone\n");
    assert_eq!(e.hint.as_deref(), Some("expected one of: key, global"));
}

#[test]
fn missing_required_key() {
    let e = one_err("models:\n  - name: m\n    routing: cost\n");
    assert_eq!(e.path, "models[0]");
    assert_eq!(e.line, Some(2));
    assert_eq!(e.message, "missing key \"deployments\"");
    let e = one_err("providers:\n  - type: mock\n");
    assert_eq!(e.to_string(), "providers[0]: missing key \"name\" (line 2)");
}

#[test]
fn type_errors_have_path_and_line() {
    let e = one_err("resilience:\n  retries: lots\n");
    assert_eq!(e.path, "resilience.retries");
    assert_eq!(e.line, Some(2));
    assert_eq!(e.message, "invalid type: string \"lots\", expected u32");
    let e = one_err("jobs:\n  workers: -1\n");
    assert_eq!(e.path, "jobs.workers");
    assert!(e.message.contains("invalid value: integer `-1`"), "{e}");
    let e = one_err("cache:\n  enabled: yes\n");
    assert_eq!(e.path, "cache.enabled");
    assert!(e.message.contains("expected a boolean"), "{e}");
    let e = one_err("providers: {}\n");
    assert_eq!(e.path, "providers");
    assert!(
        e.message.contains("invalid type: map, expected a sequence"),
        "{e}"
    );
    let e = one_err("server:\n  listen: localhost\n");
    assert_eq!(e.path, "server.listen");
    assert_eq!(e.message, "invalid socket address syntax");
    assert!(e.hint.unwrap().contains("127.0.0.1:8080"));
    let e = one_err("- a\n- b\n");
    assert_eq!(e.path, "");
    assert_eq!(e.line, Some(1));
    assert!(e.message.contains("invalid type: sequence"), "{e}");
    let e = one_err("models:\n  - name: ~\n    deployments: []\n");
    assert_eq!(e.path, "models[0].name");
    assert_eq!(e.message, "invalid type: null, expected a string");
    let e = one_err("resilience:\n  retries: ~\n");
    assert_eq!(e.message, "invalid type: null, expected u32");
}

#[test]
fn durations_and_sizes() {
    let cfg = load("server:\n  request_timeout: 250ms\n  max_body_size: 512KiB\njobs:\n  result_ttl: 30d\nresilience:\n  backoff_max: 5m\ncache:\n  ttl: 24h\n  l1_max_bytes: 1048576\n").unwrap();
    assert_eq!(cfg.server.request_timeout.get(), Duration::from_millis(250));
    assert_eq!(cfg.server.max_body_size, ByteSize(512 * 1024));
    assert_eq!(cfg.jobs.result_ttl, Dur::secs(30 * 86_400));
    assert_eq!(cfg.resilience.backoff_max, Dur::secs(300));
    assert_eq!(cfg.cache.ttl, Dur::secs(86_400));
    assert_eq!(cfg.cache.l1_max_bytes, ByteSize(1 << 20));

    let e = one_err("server:\n  request_timeout: 30\n");
    assert_eq!(e.path, "server.request_timeout");
    assert_eq!(e.line, Some(2));
    assert!(e.message.contains("\"30\" has no unit"), "{e}");
    let e = one_err("server:\n\n  shutdown_grace: 3 weeks\n");
    assert_eq!(e.line, Some(3));
    assert!(e.message.contains("unknown unit"), "{e}");
    let e = one_err("server:\n  max_body_size: 10XB\n");
    assert_eq!(e.path, "server.max_body_size");
    assert!(e.message.contains("unknown unit \"XB\""), "{e}");
}

#[test]
fn connection_limits_must_be_positive() {
    let e = one_err("server:\n  header_read_timeout: 0s\n");
    assert_eq!(e.path, "server.header_read_timeout");
    assert_eq!(e.line, Some(2));
    let e = one_err("server:\n  idle_timeout: 0ms\n");
    assert_eq!(e.path, "server.idle_timeout");
    let e = one_err("server:\n  max_connections: 0\n");
    assert_eq!(e.path, "server.max_connections");
    assert!(e.message.contains("at least 1"), "{e}");
    let cfg =
        load("server:\n  header_read_timeout: 2s\n  idle_timeout: 5m\n  max_connections: 64\n")
            .unwrap();
    assert_eq!(cfg.server.header_read_timeout, Dur::secs(2));
    assert_eq!(cfg.server.idle_timeout, Dur::secs(300));
    assert_eq!(cfg.server.max_connections, 64);
}

#[test]
fn plain_scalars_are_accepted_as_strings() {
    let text = "providers:
  - name: 42
    type: azure
    base_url: https://x.openai.azure.com
    api_version: 2024-10-21
    headers: {X-Num: 1.10, X-Bool: true, X-Hex: 0x1F}
models:
  - name: 1.10
    deployments:
      - provider: 42
        model: 4
telemetry:
  service_name: 007
";
    let cfg = load(text).unwrap_or_else(|e| panic!("{e}"));
    let p = &cfg.providers[0];
    assert_eq!(p.name, "42");
    assert_eq!(p.api_version.as_deref(), Some("2024-10-21"));
    assert_eq!(p.headers["X-Num"], "1.10");
    assert_eq!(p.headers["X-Bool"], "true");
    assert_eq!(p.headers["X-Hex"], "0x1F");
    assert_eq!(cfg.models[0].name, "1.10");
    assert_eq!(cfg.models[0].deployments[0].model, "4");
    assert_eq!(cfg.telemetry.service_name, "007");
}

#[test]
fn quoted_numbers_are_strings() {
    let e = one_err("jobs:\n  workers: \"16\"\n");
    assert_eq!(e.path, "jobs.workers");
    assert!(e.message.contains("invalid type: string \"16\""), "{e}");
}

#[test]
fn empty_sections_take_defaults() {
    let cfg = load("server:\nproviders:\nauth:\n").unwrap();
    assert_eq!(cfg.server.listen.to_string(), "127.0.0.1:8080");
    assert!(cfg.providers.is_empty());
    assert!(cfg.auth.is_none());
    let cfg = load("").unwrap();
    assert!(cfg.models.is_empty() && cfg.auth.is_none());
    let cfg = load("auth: {}\n").unwrap();
    assert!(
        cfg.auth
            .is_some_and(|a| a.keys.is_empty() && a.master_key.is_none())
    );
}

#[test]
fn flow_style_and_anchors() {
    let text = "providers: [{name: p, type: mock, latency: 5ms}]
x_unused: &d {provider: p, model: echo}
models:
  - {name: a, deployments: [*d]}
  - name: b
    deployments:
      - &e {provider: p, model: other, weight: 3}
      - *e
";
    // `x_unused` is not a config key, so the same anchors without it:
    let e = one_err(text);
    assert_eq!(e.path, "x_unused");
    assert_eq!(e.line, Some(2));
    let text = "providers: [{name: p, type: mock, latency: 5ms}]
models:
  - name: a
    deployments: [&d {provider: p, model: echo}]
  - name: b
    deployments:
      - *d
      - &e {provider: p, model: other, weight: 3}
      - *e
";
    let cfg = load(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.providers[0].latency, Some(Dur::millis(5)));
    assert_eq!(cfg.models[1].deployments.len(), 3);
    assert_eq!(cfg.models[1].deployments[0].model, "echo");
    assert_eq!(cfg.models[1].deployments[2].weight, 3);
}

#[test]
fn yaml_level_errors() {
    let e = one_err("server:\n  listen: \"127.0.0.1:1\"\n  listen: \"127.0.0.1:2\"\n");
    assert_eq!(
        e.to_string(),
        "server.listen: duplicate key \"listen\" (line 3); first defined at line 2"
    );
    let e = one_err("server: {}\n---\nserver: {}\n");
    assert_eq!(e.line, Some(2));
    assert!(e.message.contains("more than one YAML document"));
    let e = one_err("server:\n  listen: [\n");
    assert!(e.message.starts_with("invalid YAML"), "{e}");
    assert!(e.line.is_some());
}

#[test]
fn load_errors_display_one_per_line() {
    let text = format!(
        "{PROVIDERS}models:
  - name: a
    deployments: []
  - name: a
    deployments: [{{provider: opnai, model: x}}]
"
    );
    let lines = errs(&text);
    assert_eq!(
        lines,
        vec![
            "models[0].deployments: model \"a\" has no deployments (line 8); add at least one {provider: NAME, model: UPSTREAM_MODEL}",
            "models[1].name: duplicate model name \"a\" (line 9); first defined at models[0].name (line 7)",
            "models[1].deployments[0].provider: no provider named \"opnai\" (line 10); did you mean \"openai\"?",
        ]
    );
    let e = load(&text).unwrap_err();
    assert_eq!(e.to_string(), lines.join("\n"));
}
