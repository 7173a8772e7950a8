//! The OTLP trace-export plan read from `telemetry:` and the standard `OTEL_*` variables: decided
//! here, below the telemetry set-up that acts on it, so `config describe` can show it too.

use super::TelemetryConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    HttpProtobuf,
    Grpc,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HttpProtobuf => "http/protobuf",
            Self::Grpc => "grpc",
        }
    }
}

/// Where and how spans go, when they go anywhere.
#[derive(Debug, PartialEq, Eq)]
pub struct ExportPlan {
    /// From `telemetry.otlp_endpoint` (else the exporter reads the `OTEL_*` variables).
    pub endpoint: Option<String>,
    pub endpoint_for_logs: String,
    pub protocol: Protocol,
}

/// Export is on when an endpoint is configured (file or standard variables) or
/// `OTEL_TRACES_EXPORTER=otlp`; `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn it off.
pub fn export_plan(
    cfg: &TelemetryConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<ExportPlan> {
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return None;
    }
    let exporter = env("OTEL_TRACES_EXPORTER").map(|v| v.trim().to_ascii_lowercase());
    if exporter.as_deref() == Some("none") {
        return None;
    }
    let from_file = cfg
        .otlp_endpoint
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let from_env =
        env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"));
    if from_file.is_none() && from_env.is_none() && exporter.as_deref() != Some("otlp") {
        return None;
    }
    let protocol = match env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        Some("grpc") => Protocol::Grpc,
        _ => Protocol::HttpProtobuf,
    };
    let endpoint = from_file.map(|e| match protocol {
        Protocol::Grpc => e,
        Protocol::HttpProtobuf if e.trim_end_matches('/').ends_with("/v1/traces") => e,
        Protocol::HttpProtobuf => format!("{}/v1/traces", e.trim_end_matches('/')),
    });
    let endpoint_for_logs = super::redact_url(
        endpoint
            .as_deref()
            .or(from_env.as_deref())
            .unwrap_or("(default)"),
    );
    Some(ExportPlan {
        endpoint,
        endpoint_for_logs,
        protocol,
    })
}

/// The process's environment as the exporter settings read it: a blank variable is unset.
pub fn process_env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.trim().is_empty())
}

/// What trace export will do with this configuration and environment, for `config::describe`:
/// `OTLP on (ENDPOINT, PROTOCOL)` or `off`. The endpoint is redacted as in the logs.
pub fn export_summary(cfg: &TelemetryConfig, env: &dyn Fn(&str) -> Option<String>) -> String {
    match export_plan(cfg, env) {
        Some(p) => format!("OTLP on ({}, {})", p.endpoint_for_logs, p.protocol.as_str()),
        None => "off".to_owned(),
    }
}
