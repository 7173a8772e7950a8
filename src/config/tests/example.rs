//! The example of `shared/spec/config.md`: its values, its environment, `describe`.

use super::*;

#[test]
fn example_loads_with_expected_values() {
    let cfg = load_str(EXAMPLE, &example_env()).unwrap_or_else(|e| panic!("{e}"));

    let s = &cfg.server;
    assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(s.max_body_size, ByteSize(10 * 1024 * 1024));
    assert_eq!(s.request_timeout, Dur::secs(600));
    assert_eq!(s.shutdown_grace, Dur::secs(30));
    assert_eq!(s.header_read_timeout, Dur::secs(10));
    assert_eq!(s.idle_timeout, Dur::secs(60));
    assert_eq!(s.max_connections, 10_000);

    assert_eq!(
        cfg.state.redis_url.as_deref(),
        Some("redis://127.0.0.1:6379")
    );
    assert_eq!(cfg.state.nats_url.as_deref(), Some("nats://127.0.0.1:4222"));
    assert_eq!(cfg.state.data_dir, "./data");

    let p = &cfg.providers;
    assert_eq!(p.len(), 4);
    assert_eq!(p[0].name, "openai");
    assert_eq!(p[0].kind, ProviderType::Openai);
    assert_eq!(p[0].base_url.as_deref(), Some("https://api.openai.com/v1"));
    assert_eq!(p[0].api_key.as_deref(), Some("sk-openai-SECRET"));
    assert_eq!(p[0].timeout, Dur::secs(60));
    assert_eq!(p[0].connect_timeout, Dur::secs(5));
    assert!(p[0].headers.is_empty());
    assert_eq!(p[0].api_version, None);
    assert_eq!(p[0].latency, None);
    assert_eq!(p[1].name, "azure-east");
    assert_eq!(p[1].kind, ProviderType::Azure);
    assert_eq!(
        p[1].base_url.as_deref(),
        Some("https://myres.openai.azure.com")
    );
    assert_eq!(p[1].api_key.as_deref(), Some("azure-SECRET"));
    assert_eq!(p[1].api_version.as_deref(), Some("2024-10-21"));
    assert_eq!(p[2].kind, ProviderType::Anthropic);
    assert_eq!(p[2].api_key.as_deref(), Some("sk-ant-SECRET"));
    assert_eq!(p[3].name, "local");
    assert_eq!(p[3].kind, ProviderType::Mock);
    assert_eq!(p[3].latency, Some(Dur::millis(0)));
    assert_eq!(p[3].base_url, None);

    let m = &cfg.models;
    assert_eq!(m.len(), 3);
    assert_eq!(m[0].name, "gpt-4o-mini");
    assert_eq!(m[0].routing, RoutingStrategy::Cost);
    assert_eq!(m[0].deployments.len(), 2);
    let d = &m[0].deployments[0];
    assert_eq!(
        (d.provider.as_str(), d.model.as_str()),
        ("openai", "gpt-4o-mini")
    );
    assert_eq!(d.input_cost_per_mtok, Some(0.15));
    assert_eq!(d.output_cost_per_mtok, Some(0.60));
    assert_eq!((d.weight, d.priority), (1, 0));
    assert_eq!((d.rpm, d.tpm), (Some(5000), Some(2_000_000)));
    let d = &m[0].deployments[1];
    assert_eq!(
        (d.provider.as_str(), d.model.as_str()),
        ("azure-east", "gpt4o-mini-prod")
    );
    assert_eq!((d.input_cost_per_mtok, d.weight, d.rpm), (None, 1, None));
    assert_eq!(m[0].fallbacks, vec!["claude-haiku"]);
    assert_eq!(m[0].retries, Some(2));
    assert_eq!(m[0].timeout, Some(Dur::secs(30)));
    assert_eq!(m[0].cache, Some(true));
    assert_eq!(m[1].name, "claude-haiku");
    assert_eq!(m[1].routing, RoutingStrategy::Priority);
    assert_eq!(m[1].deployments[0].model, "claude-3-5-haiku-latest");
    assert!(m[1].fallbacks.is_empty());
    assert_eq!((m[1].retries, m[1].timeout, m[1].cache), (None, None, None));
    assert_eq!(m[2].name, "text-embedding-3-small");

    let r = &cfg.resilience;
    assert_eq!(r.retries, 2);
    assert_eq!(r.backoff_initial, Dur::millis(100));
    assert_eq!(r.backoff_max, Dur::secs(5));
    assert_eq!(r.circuit_breaker.failure_threshold, 5);
    assert_eq!(r.circuit_breaker.open_for, Dur::secs(30));
    assert!(r.health_check_interval.is_zero());

    let c = &cfg.cache;
    assert!(c.enabled && c.l2 && !c.only_deterministic);
    assert_eq!(c.ttl, Dur::secs(3600));
    assert_eq!(c.scope, CacheScope::Key);
    assert_eq!(c.l1_max_entries, 10_000);
    assert_eq!(c.l1_max_bytes, ByteSize(256 << 20));

    let a = cfg.auth.as_ref().expect("auth");
    assert_eq!(a.master_key.as_deref(), Some("master-SECRET"));
    assert_eq!(a.keys.len(), 1);
    let k = &a.keys[0];
    assert_eq!(k.name, "demo");
    assert_eq!(k.key.as_deref(), Some("demo-SECRET"));
    assert_eq!(k.key_sha256, None);
    assert_eq!(k.models, vec!["*"]);
    assert_eq!((k.rpm, k.tpm), (Some(600), Some(1_000_000)));
    assert_eq!(k.budget_usd, Some(50.0));
    assert_eq!(k.budget_period, Some(Dur::secs(30 * 86_400)));
    assert_eq!(k.expires_at.as_deref(), Some("2027-01-01T00:00:00Z"));

    let rl = &cfg.rate_limits;
    assert!(rl.shared);
    assert_eq!(rl.on_redis_error, OnRedisError::Local);
    let lim = &rl.models["gpt-4o-mini"];
    assert_eq!((lim.rpm, lim.tpm), (Some(10_000), Some(5_000_000)));

    let j = &cfg.jobs;
    assert_eq!((j.workers, j.max_attempts), (32, 3));
    assert_eq!(j.result_ttl, Dur::secs(7 * 86_400));
    let w = &j.webhook;
    assert_eq!(w.secret.as_deref(), Some(WEBHOOK));
    assert_eq!(w.timeout, Dur::secs(10));
    assert_eq!(w.max_attempts, 10);
    assert_eq!(w.backoff_initial, Dur::secs(1));
    assert_eq!(w.backoff_max, Dur::secs(3600));
    assert!(!w.allow_private_networks);

    let t = &cfg.telemetry;
    assert_eq!(t.log_format, Some(LogFormat::Json));
    assert_eq!(t.log_level, "info");
    assert_eq!(t.otlp_endpoint, None, "empty default = no export");
    assert_eq!(t.service_name, "ai-gateway");
    assert!(!t.log_bodies);
}

#[test]
fn example_with_otlp_endpoint() {
    let base = example_env();
    let env = |k: &str| match k {
        "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://otel:4318".to_owned()),
        _ => base(k),
    };
    let cfg = load_str(EXAMPLE, &env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        cfg.telemetry.otlp_endpoint.as_deref(),
        Some("http://otel:4318")
    );
}

#[test]
fn example_without_env_names_every_unset_var() {
    let e = load_str(EXAMPLE, &no_env).unwrap_err();
    let vars: Vec<&str> =
        e.0.iter()
            .map(|e| e.message.split('"').nth(1).unwrap_or_default())
            .collect();
    assert_eq!(
        vars,
        vec![
            "OPENAI_API_KEY",
            "AZURE_OPENAI_API_KEY",
            "ANTHROPIC_API_KEY",
            "GATEWAY_MASTER_KEY",
            "DEMO_KEY",
            "WEBHOOK_SECRET"
        ]
    );
    let demo = &e.0[4];
    assert_eq!(demo.path, "auth.keys[0].key");
    assert_eq!(demo.line, Some(line_of(EXAMPLE, "${DEMO_KEY}")));
    assert_eq!(
        demo.to_string(),
        format!(
            "auth.keys[0].key: environment variable \"DEMO_KEY\" is not set (line {}); set DEMO_KEY, or give a default: ${{DEMO_KEY:-default}}",
            line_of(EXAMPLE, "${DEMO_KEY}")
        )
    );
}

#[test]
fn describe_example_without_secrets() {
    let mut cfg = load_str(EXAMPLE, &example_env()).unwrap_or_else(|e| panic!("{e}"));
    cfg.providers[0]
        .headers
        .insert("X-Org".into(), "org-SECRET".into());
    cfg.state.redis_url = Some("redis://:pw-SECRET@cache:6379/0".into());
    let lines = describe(&cfg);
    let text = lines.join("\n");
    assert!(!text.contains("SECRET"), "{text}");
    assert!(!text.contains(WEBHOOK), "{text}");
    assert!(
        lines.contains(
            &"provider openai (openai) https://api.openai.com/v1, api key set, 1 extra header(s)"
                .to_owned()
        ),
        "{text}"
    );
    assert!(
        lines.contains(&"provider local (mock), latency 0s".to_owned()),
        "{text}"
    );
    assert!(lines.contains(&"model gpt-4o-mini -> openai/gpt-4o-mini, azure-east/gpt4o-mini-prod (routing cost; fallbacks claude-haiku)".to_owned()), "{text}");
    assert!(
        lines.contains(&"model claude-haiku -> anthropic/claude-3-5-haiku-latest".to_owned()),
        "{text}"
    );
    assert!(text.contains("redis redis://cache:6379/0"), "{text}");
    assert!(
        text.contains("auth: 1 static key(s) (demo), admin API enabled"),
        "{text}"
    );
    assert_eq!(
        lines[0],
        "listen 127.0.0.1:8080 (max body 10MiB, request timeout 10m, shutdown grace 30s, header read timeout 10s, idle timeout 1m, at most 10000 connections)"
    );
}

#[test]
fn describe_default() {
    let lines = describe(&builtin_default(&no_env, false).expect("default"));
    assert!(
        lines.contains(&"provider mock (mock), latency 0s".to_owned()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"model mock -> mock/mock".to_owned()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"auth: none, serving without keys".to_owned()),
        "{lines:?}"
    );
}
