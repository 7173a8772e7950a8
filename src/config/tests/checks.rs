//! Semantic checks: providers, models, fallbacks, keys, limits and the other rules.

use super::*;

fn single(text: &str) -> (String, Option<usize>, String, Option<String>) {
    let e = one_err(text);
    (e.path, e.line, e.message, e.hint)
}

#[test]
fn duplicate_and_empty_provider_names() {
    let (path, line, msg, hint) =
        single("providers:\n  - name: p\n    type: mock\n  - name: p\n    type: mock\n");
    assert_eq!((path.as_str(), line), ("providers[1].name", Some(4)));
    assert_eq!(msg, "duplicate provider name \"p\"");
    assert_eq!(
        hint.as_deref(),
        Some("first defined at providers[0].name (line 2)")
    );
    let (path, line, msg, _) = single("providers:\n  - name: \"\"\n    type: mock\n");
    assert_eq!(
        (path.as_str(), line, msg.as_str()),
        ("providers[0].name", Some(2), "provider name is empty")
    );
}

#[test]
fn fallbacks() {
    let base = format!(
        "{PROVIDERS}models:
  - name: alpha
    deployments: [{{provider: local, model: x}}]
"
    );
    let e = one_err(&format!("{base}    fallbacks: [alpha]\n"));
    assert_eq!(
        e.to_string(),
        "models[0].fallbacks[0]: model \"alpha\" lists itself as a fallback (line 9)"
    );
    let e = one_err(&format!(
        "{base}    fallbacks:\n      - beta\n      - alpah\n  - name: beta\n    deployments: [{{provider: local, model: y}}]\n"
    ));
    assert_eq!(
        e.to_string(),
        "models[0].fallbacks[1]: no model named \"alpah\" (line 11); known models: beta"
    );
}

#[test]
fn azure_requirements() {
    let errors = errs("providers:\n  - name: az\n    type: azure\n");
    assert_eq!(
        errors,
        vec![
            "providers[0]: missing key \"base_url\" (required for type azure) (line 2); e.g. base_url: \"https://myres.openai.azure.com\"",
            "providers[0]: missing key \"api_version\" (required for type azure) (line 2); e.g. api_version: \"2024-10-21\"",
        ]
    );
    // An empty value (unset variable with empty default) counts as missing.
    let errors = errs(
        "providers:\n  - name: az\n    type: azure\n    base_url: \"${AZ_URL:-}\"\n    api_version: \"2024-10-21\"\n",
    );
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("missing key \"base_url\""));
}

#[test]
fn base_urls() {
    let (path, line, msg, _) =
        single("providers:\n  - name: o\n    type: openai\n    base_url: api.openai.com/v1\n");
    assert_eq!((path.as_str(), line), ("providers[0].base_url", Some(4)));
    assert_eq!(
        msg,
        "not an http(s) URL: it must start with http:// or https://"
    );
    let (_, _, msg, _) =
        single("providers:\n  - name: o\n    type: openai\n    base_url: \"https://\"\n");
    assert_eq!(msg, "not an http(s) URL: it has no host");
    // Defaults filled in for openai and anthropic; a compatible server on http is fine.
    let cfg = load("providers:\n  - {name: o, type: openai}\n  - {name: a, type: anthropic}\n  - {name: v, type: openai, base_url: \"http://localhost:8000/v1\"}\n").unwrap();
    assert_eq!(
        cfg.providers[0].base_url.as_deref(),
        Some("https://api.openai.com/v1")
    );
    assert_eq!(
        cfg.providers[1].base_url.as_deref(),
        Some("https://api.anthropic.com")
    );
    assert_eq!(
        cfg.providers[2].base_url.as_deref(),
        Some("http://localhost:8000/v1")
    );
}

#[test]
fn type_specific_keys() {
    let (path, line, msg, _) =
        single("providers:\n  - name: o\n    type: openai\n    latency: 5ms\n");
    assert_eq!((path.as_str(), line), ("providers[0].latency", Some(4)));
    assert_eq!(msg, "latency is only allowed for type mock");
    let (path, line, msg, _) =
        single("providers:\n  - name: o\n    type: anthropic\n    api_version: \"1\"\n");
    assert_eq!((path.as_str(), line), ("providers[0].api_version", Some(4)));
    assert_eq!(msg, "api_version is only allowed for type azure");
}

#[test]
fn headers_checked() {
    let (path, line, msg, _) = single(
        "providers:\n  - name: o\n    type: openai\n    headers:\n      \"Bad Header\": x\n",
    );
    assert_eq!(
        (path.as_str(), line),
        ("providers[0].headers.Bad Header", Some(5))
    );
    assert_eq!(msg, "invalid header name \"Bad Header\"");
    let (path, _, msg, _) = single(
        "providers:\n  - name: o\n    type: openai\n    headers: {X-A: \"a\\r\\nX-Injected: 1\"}\n",
    );
    assert_eq!(path, "providers[0].headers.X-A");
    assert_eq!(msg, "header value contains a control character");
}

#[test]
fn weighted_needs_positive_weights() {
    let text = format!(
        "{PROVIDERS}models:
  - name: w
    routing: weighted
    deployments:
      - {{provider: local, model: a, weight: 2}}
      - {{provider: local, model: b, weight: 0}}
"
    );
    let (path, line, msg, _) = single(&text);
    assert_eq!(
        (path.as_str(), line),
        ("models[0].deployments[1].weight", Some(11))
    );
    assert_eq!(msg, "weight must be greater than 0 with routing: weighted");
    // weight 0 is fine with other strategies
    load(&text.replace("weighted", "priority")).unwrap();
}

const KEYS_HEAD: &str = "auth:\n  keys:\n";

#[test]
fn key_needs_exactly_one_of_key_and_hash() {
    let (path, line, msg, _) = single(&format!("{KEYS_HEAD}    - name: a\n"));
    assert_eq!((path.as_str(), line), ("auth.keys[0]", Some(3)));
    assert_eq!(msg, "needs one of \"key\" or \"key_sha256\"");
    let hash = "a".repeat(64);
    let (path, _, msg, _) = single(&format!(
        "{KEYS_HEAD}    - name: a\n      key: k1\n      key_sha256: \"{hash}\"\n"
    ));
    assert_eq!(path, "auth.keys[0]");
    assert_eq!(msg, "set only one of \"key\" and \"key_sha256\"");
    // an empty key from an unset variable counts as absent
    let (_, _, msg, _) = single(&format!(
        "{KEYS_HEAD}    - name: a\n      key: \"${{NOPE:-}}\"\n"
    ));
    assert_eq!(msg, "needs one of \"key\" or \"key_sha256\"");
}

#[test]
fn key_sha256_format() {
    for bad in ["abc", &"g".repeat(64), &"a".repeat(63)] {
        let (path, line, msg, _) = single(&format!(
            "{KEYS_HEAD}    - name: a\n      key_sha256: \"{bad}\"\n"
        ));
        assert_eq!((path.as_str(), line), ("auth.keys[0].key_sha256", Some(4)));
        assert_eq!(msg, "must be 64 hex characters (the SHA-256 of the key)");
    }
    let upper = "AB".repeat(32);
    let cfg = load(&format!(
        "{KEYS_HEAD}    - name: a\n      key_sha256: \"{upper}\"\n"
    ))
    .unwrap();
    assert_eq!(cfg.auth.unwrap().keys[0].key_sha256, Some("ab".repeat(32)));
}

#[test]
fn key_names_and_values_unique() {
    let (path, line, msg, hint) = single(&format!(
        "{KEYS_HEAD}    - name: a\n      key: k1\n    - name: a\n      key: k2\n"
    ));
    assert_eq!((path.as_str(), line), ("auth.keys[1].name", Some(5)));
    assert_eq!(msg, "duplicate key name \"a\"");
    assert_eq!(
        hint.as_deref(),
        Some("first defined at auth.keys[0].name (line 3)")
    );

    let (path, line, msg, _) = single(&format!(
        "{KEYS_HEAD}    - name: a\n      key: same-SECRET\n    - name: b\n      key: same-SECRET\n"
    ));
    assert_eq!((path.as_str(), line), ("auth.keys[1].key", Some(6)));
    assert_eq!(msg, "same key as auth.keys[0]");

    // a plain key and the hash of the same key collide too; sha256("hello"):
    let sha = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
    let (path, _, msg, _) = single(&format!(
        "{KEYS_HEAD}    - name: a\n      key: hello\n    - name: b\n      key_sha256: {sha}\n"
    ));
    assert_eq!(path, "auth.keys[1].key_sha256");
    assert_eq!(msg, "same key as auth.keys[0]");

    // the master key must differ from client keys; the error never shows the key
    let e = one_err("auth:\n  master_key: top-SECRET\n  keys:\n    - {name: a, key: top-SECRET}\n");
    assert_eq!(e.path, "auth.master_key");
    assert_eq!(e.line, Some(2));
    assert!(!e.to_string().contains("SECRET"));
}

#[test]
fn key_models_globs_and_expiry() {
    let (path, line, msg, _) = single(&format!(
        "{KEYS_HEAD}    - name: a\n      key: k\n      models: [\"gpt-*\", \"claude-[\"]\n"
    ));
    assert_eq!((path.as_str(), line), ("auth.keys[0].models[1]", Some(5)));
    assert!(msg.starts_with("invalid glob:"), "{msg}");

    let (path, line, msg, hint) = single(&format!(
        "{KEYS_HEAD}    - name: a\n      key: k\n      expires_at: 2027-13-01\n"
    ));
    assert_eq!((path.as_str(), line), ("auth.keys[0].expires_at", Some(5)));
    assert_eq!(msg, "\"2027-13-01\" is not an RFC 3339 UTC timestamp");
    assert_eq!(hint.as_deref(), Some("e.g. \"2027-01-01T00:00:00Z\""));

    let cfg = load(&format!(
        "{KEYS_HEAD}    - name: a\n      key: k\n      expires_at: 2027-01-01T00:00:00.5+00:00\n      budget_period: 1d\n"
    ))
    .unwrap();
    let k = &cfg.auth.unwrap().keys[0];
    assert_eq!(k.budget_usd, None, "budget_period alone is accepted");
    assert_eq!(k.models, vec!["*"]);
}

#[test]
fn rate_limit_models_must_exist() {
    let text = format!(
        "{PROVIDERS}models:
  - name: gpt-4o-mini
    deployments: [{{provider: openai, model: gpt-4o-mini}}]
rate_limits:
  models:
    gpt-4o-mini: {{rpm: 1}}
    gpt-4o-mnii: {{rpm: 2}}
"
    );
    let e = one_err(&text);
    assert_eq!(
        e.to_string(),
        "rate_limits.models.gpt-4o-mnii: no model named \"gpt-4o-mnii\" (line 12); did you mean \"gpt-4o-mini\"?"
    );
}

#[test]
fn webhook_secret() {
    let (path, line, msg, _) = single("jobs:\n  webhook:\n    secret: \"abc\"\n");
    assert_eq!((path.as_str(), line), ("jobs.webhook.secret", Some(3)));
    assert_eq!(msg, "must start with \"whsec_\"");
    let (_, _, msg, _) = single("jobs:\n  webhook:\n    secret: \"whsec_not base64!\"\n");
    assert_eq!(msg, "the part after \"whsec_\" is not valid base64");
    let e = one_err("jobs:\n  webhook:\n    secret: \"whsec_\"\n");
    assert!(e.message.contains("not valid base64"));
    let cfg = load(&format!("jobs:\n  webhook:\n    secret: \"{WEBHOOK}\"\n")).unwrap();
    assert_eq!(cfg.jobs.webhook.secret.as_deref(), Some(WEBHOOK));
    let cfg = load("jobs:\n  webhook:\n    secret: \"${WEBHOOK_SECRET:-}\"\n").unwrap();
    assert_eq!(cfg.jobs.webhook.secret, None, "empty = generated at start");
}

#[test]
fn log_level() {
    let (path, line, msg, hint) = single("telemetry:\n  log_level: inf\n");
    assert_eq!((path.as_str(), line), ("telemetry.log_level", Some(2)));
    assert_eq!(msg, "unknown log level \"inf\"");
    assert_eq!(
        hint.as_deref(),
        Some("did you mean \"info\"? (or a RUST_LOG directive such as \"info,ai_gateway=debug\")")
    );
    let e = one_err("telemetry:\n  log_level: \"\"\n");
    assert_eq!(e.message, "log level is empty");
    for ok in [
        "info",
        "DEBUG",
        "warn,ai_gateway=trace",
        "ai_gateway::router=debug",
        "off",
    ] {
        let cfg = load(&format!("telemetry:\n  log_level: \"{ok}\"\n")).unwrap();
        assert_eq!(cfg.telemetry.log_level, ok);
    }
}

#[test]
fn numeric_limits() {
    let (path, line, msg, _) = single("cache:\n  l1_max_entries: 0\n");
    assert_eq!(
        (path.as_str(), line, msg.as_str()),
        ("cache.l1_max_entries", Some(2), "must be at least 1")
    );
    let lines = errs(
        "jobs:\n  workers: 0\n  max_attempts: 0\n  webhook:\n    max_attempts: 0\n    backoff_initial: 2h\nresilience:\n  backoff_initial: 10s\n  backoff_max: 1s\n  circuit_breaker: {failure_threshold: 0}\n",
    );
    assert_eq!(
        lines,
        vec![
            "jobs.workers: must be at least 1 (line 2)",
            "jobs.max_attempts: must be at least 1 (line 3)",
            "jobs.webhook.max_attempts: must be at least 1 (line 5)",
            "jobs.webhook.backoff_initial: must not exceed jobs.webhook.backoff_max (line 6)",
            "resilience.backoff_initial: must not exceed resilience.backoff_max (line 8)",
            "resilience.circuit_breaker.failure_threshold: must be at least 1 (line 10)",
        ]
    );
}

#[test]
fn empty_optional_strings_become_none() {
    let text = "state:
  redis_url: \"\"
providers:
  - name: o
    type: openai
    api_key: \"${OPENAI_API_KEY:-}\"
auth:
  master_key: \"${GATEWAY_MASTER_KEY:-}\"
telemetry:
  otlp_endpoint: \"${OTEL_EXPORTER_OTLP_ENDPOINT:-}\"
";
    let cfg = load(text).unwrap();
    assert_eq!(cfg.state.redis_url, None);
    assert_eq!(cfg.providers[0].api_key, None);
    assert_eq!(cfg.auth.unwrap().master_key, None);
    assert_eq!(cfg.telemetry.otlp_endpoint, None);
}

#[test]
fn all_errors_collected_in_line_order() {
    let text = "providers:
  - {name: p, type: openai, latency: 1ms}
  - {name: p, type: mock}
models:
  - name: m
    deployments: [{provider: q, model: x}]
    fallbacks: [m]
auth:
  keys: [{name: k}]
cache:
  l1_max_entries: 0
telemetry:
  log_level: loud
";
    let e = load(text).unwrap_err();
    let got: Vec<(&str, Option<usize>)> = e.0.iter().map(|e| (e.path.as_str(), e.line)).collect();
    assert_eq!(
        got,
        vec![
            ("providers[0].latency", Some(2)),
            ("providers[1].name", Some(3)),
            ("models[0].deployments[0].provider", Some(6)),
            ("models[0].fallbacks[0]", Some(7)),
            ("auth.keys[0]", Some(9)),
            ("cache.l1_max_entries", Some(11)),
            ("telemetry.log_level", Some(13)),
        ]
    );
}
