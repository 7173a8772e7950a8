use super::*;
use crate::config::otlp::export_summary;
use crate::error::redact_secrets;
use crate::record::RequestRecord;

fn plan(file: Option<&str>, vars: &[(&str, &str)]) -> Option<ExportPlan> {
    let cfg = TelemetryConfig {
        otlp_endpoint: file.map(str::to_owned),
        ..TelemetryConfig::default()
    };
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let env = move |k: &str| {
        vars.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    export_plan(&cfg, &env)
}

#[test]
fn the_summary_follows_the_environment_too() {
    let cfg = TelemetryConfig::default();
    assert_eq!(export_summary(&cfg, &|_| None), "off");
    let env = |k: &str| {
        (k == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| "http://user:pw@otel:4318".to_owned())
    };
    assert_eq!(
        export_summary(&cfg, &env),
        "OTLP on (http://***@otel:4318, http/protobuf)"
    );
}

#[test]
fn no_endpoint_no_export() {
    assert_eq!(plan(None, &[]), None);
    assert_eq!(plan(Some(""), &[]), None);
    assert_eq!(plan(Some("  "), &[("OTEL_SERVICE_NAME", "x")]), None);
}

#[test]
fn endpoints_and_protocols() {
    let p = plan(Some("http://collector:4318"), &[]).unwrap();
    assert_eq!(
        p.endpoint.as_deref(),
        Some("http://collector:4318/v1/traces")
    );
    assert_eq!(p.protocol, Protocol::HttpProtobuf);
    let p = plan(Some("http://c:4318/v1/traces"), &[]).unwrap();
    assert_eq!(p.endpoint.as_deref(), Some("http://c:4318/v1/traces"));
    let p = plan(
        Some("http://c:4317"),
        &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
    )
    .unwrap();
    assert_eq!(p.endpoint.as_deref(), Some("http://c:4317"));
    assert_eq!(p.protocol, Protocol::Grpc);
    let p = plan(None, &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]).unwrap();
    assert_eq!(p.endpoint, None, "the exporter reads the variable itself");
    assert!(plan(None, &[("OTEL_TRACES_EXPORTER", "otlp")]).is_some());
    assert_eq!(
        plan(Some("http://c:4318"), &[("OTEL_SDK_DISABLED", "true")]),
        None
    );
    assert_eq!(
        plan(Some("http://c:4318"), &[("OTEL_TRACES_EXPORTER", "none")]),
        None
    );
}

#[test]
fn endpoint_logs_hide_credentials() {
    assert_eq!(
        crate::config::redact_url("https://user:pw@otlp.example.com/v1/traces?token=x"),
        "https://***@otlp.example.com/v1/traces"
    );
}

#[test]
fn server_address() {
    assert_eq!(
        server_of("http://127.0.0.1:9000/v1"),
        Some(("127.0.0.1".to_owned(), 9000))
    );
    assert_eq!(
        server_of("https://api.openai.com/v1"),
        Some(("api.openai.com".to_owned(), 443))
    );
    assert_eq!(server_of(""), None);
}

#[test]
fn bodies_lose_their_secrets() {
    assert_eq!(
        redact_secrets(r#"{"content":"my key is sk-abc123, ok? whsec_x"}"#),
        r#"{"content":"my key is [redacted], ok? [redacted]"}"#
    );
    assert_eq!(
        redact_secrets("token 0123456789abcdef0123456789abcdef here; é"),
        "token [redacted] here; é"
    );
}

#[test]
fn usage_cell() {
    let u = RequestRecord::new();
    assert_eq!(u.tokens(), None);
    assert_eq!(u.cost(), None);
    u.set_tokens(3, 4);
    u.set_cost(0.5);
    assert_eq!(u.tokens(), Some((3, 4)));
    assert_eq!(u.cost(), Some(0.5));
}
