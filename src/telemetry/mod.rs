//! Logging and traces.
//!
//! Logs: `tracing` with JSON or pretty output, filtered by `RUST_LOG` or `telemetry.log_level`.
//! Never logs keys or `Authorization` (nothing in the gateway records them).
//!
//! Traces: OpenTelemetry over OTLP (http/protobuf, or gRPC with
//! `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`), on when `telemetry.otlp_endpoint` or one of
//! `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (or
//! `OTEL_TRACES_EXPORTER=otlp`); off, with no layer installed and no span made, otherwise.
//! Spans are `tracing` spans of target [`SPAN_TARGET`], seen only by the OpenTelemetry layer (the
//! log output is the same with traces on or off):
//! - one SERVER span per API request (`request_context`), child of the caller's `traceparent`;
//! - `cache lookup` (INTERNAL) around the response-cache look-up;
//! - one CLIENT span per upstream attempt, named `{operation} {deployment model}`, whose context
//!   is sent upstream as `traceparent` (same trace id as the caller's, the attempt as parent);
//! - webhook deliveries ([`webhook_span`], for the jobs code).
//!
//! Attributes follow the OpenTelemetry GenAI semantic conventions (`gen_ai.*`); the gateway's own
//! are under `gateway.*`. The sampler is the SDK's (`OTEL_TRACES_SAMPLER`, `_ARG`; default
//! parent-based always-on), export is batched off the request path (`OTEL_BSP_*`).

mod bodies;
mod human;
mod spans;

pub use bodies::log_request_body;
pub use spans::*;

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::otlp::{ExportPlan, Protocol, export_plan, process_env};
use crate::config::{LogFormat, TelemetryConfig};

/// The `tracing` target of every span meant for OpenTelemetry.
pub const SPAN_TARGET: &str = "otel";

/// Whether trace export is on (set once by [`init`]).
static ON: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (cheap; guards work done only for traces).
pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Log lines queued for the writer thread before new ones are dropped.
const LOG_QUEUE_LINES: usize = 16 * 1024;

/// Keeps the trace pipeline alive; dropping it flushes the spans still queued.
#[derive(Default)]
pub struct Guard {
    provider: Option<SdkTracerProvider>,
    /// The runtime the gRPC exporter's connection lives on (gRPC only).
    runtime: Option<tokio::runtime::Runtime>,
    /// Flushes the log lines still queued for stderr when dropped.
    log: Option<tracing_appender::non_blocking::WorkerGuard>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take()
            && let Err(e) = p.shutdown()
        {
            tracing::warn!(error = %e, "trace export: could not flush the last spans");
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
        // Last, so the lines above are written too.
        drop(self.log.take());
    }
}

/// The log filter of [`init`], for [`set_log_level`].
static LOG_FILTER: std::sync::OnceLock<
    tracing_subscriber::reload::Handle<EnvFilter, tracing_subscriber::Registry>,
> = std::sync::OnceLock::new();

/// What became of a new `telemetry.log_level`.
#[derive(Debug, PartialEq, Eq)]
pub enum LogLevelChange {
    Applied,
    /// `RUST_LOG` is set: it wins over the configuration, now as at start.
    OverriddenByEnv,
}

/// Swap the log filter for `level` (a reload changed `telemetry.log_level`; validated already).
pub fn set_log_level(level: &str) -> Result<LogLevelChange, String> {
    // As at start: a valid `RUST_LOG` wins.
    if EnvFilter::try_from_default_env().is_ok() {
        return Ok(LogLevelChange::OverriddenByEnv);
    }
    let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
    let handle = LOG_FILTER
        .get()
        .ok_or_else(|| "logging is not set up in this process".to_owned())?;
    handle.reload(filter).map_err(|e| e.to_string())?;
    Ok(LogLevelChange::Applied)
}

/// Install the global subscriber (logs, and the trace layer when export is configured). Call it
/// outside any async runtime. Later calls install nothing.
pub fn init(cfg: &TelemetryConfig) -> Guard {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // The filter can be swapped by a reload (`telemetry.log_level`).
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let _ = LOG_FILTER.set(handle);
    let format = cfg
        .log_format
        .unwrap_or(if std::io::stderr().is_terminal() {
            LogFormat::Pretty
        } else {
            LogFormat::Json
        });
    let env = process_env;
    // Log lines are written by a background thread, never by the async runtime's workers: a
    // slow stderr (a full pipe, a stalled log shipper) cannot stall requests. When its queue is
    // full, lines are dropped rather than blocking (lossy), and counted by tracing-appender.
    // The queue is made whole at start (32 bytes a line, every slot written): 16 Ki lines is
    // 512 KiB of the idle process, ~0.8 s of access log at 20,000 requests a second (64 Ki lines
    // took 2 MiB, a tenth of the idle RSS: docs/benchmarks.md).
    let (writer, log_guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .lossy(true)
        .thread_name("ai-gateway-log")
        .finish(std::io::stderr());
    let plan = match export_plan(cfg, &env) {
        Some(plan) => plan,
        None => {
            let fmt = tracing_subscriber::fmt::layer().with_writer(writer);
            let logs = tracing_subscriber::registry().with(filter);
            let _ = match format {
                LogFormat::Json => logs.with(fmt.json().flatten_event(true)).try_init(),
                LogFormat::Pretty => logs
                    .with(fmt.event_format(human::Human::default()))
                    .try_init(),
            };
            return Guard {
                provider: None,
                runtime: None,
                log: Some(log_guard),
            };
        }
    };
    let built = build_provider(cfg, &plan, &env);
    let fmt = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(writer)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .event_format(human::Human::default())
            .with_writer(writer)
            .boxed(),
    };
    // Logs never see the trace spans, so their lines are the same with traces on or off.
    let fmt =
        fmt.with_filter(filter.and(filter_fn(|m| !(m.is_span() && m.target() == SPAN_TARGET))));
    match built {
        Ok((provider, runtime)) => {
            let tracer = provider.tracer("ai-gateway");
            let otel = tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_location(false)
                .with_threads(false)
                .with_target(false)
                .with_level(false)
                .with_tracked_inactivity(false)
                // Nothing reads OpenTelemetry's current context: no attach/detach on every poll.
                .with_context_activation(false)
                .with_filter(filter_fn(|m| m.is_span() && m.target() == SPAN_TARGET));
            if tracing_subscriber::registry()
                .with(fmt)
                .with(otel)
                .try_init()
                .is_ok()
            {
                ON.store(true, Ordering::Relaxed);
            }
            tracing::info!(
                endpoint = %plan.endpoint_for_logs, protocol = plan.protocol.as_str(),
                "trace export on (OTLP)"
            );
            Guard {
                provider: Some(provider),
                runtime,
                log: Some(log_guard),
            }
        }
        Err(e) => {
            let _ = tracing_subscriber::registry().with(fmt).try_init();
            tracing::error!(error = %e, "trace export off: the OTLP exporter could not be built");
            Guard {
                provider: None,
                runtime: None,
                log: Some(log_guard),
            }
        }
    }
}

fn build_provider(
    cfg: &TelemetryConfig,
    plan: &ExportPlan,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(SdkTracerProvider, Option<tokio::runtime::Runtime>), String> {
    use opentelemetry_otlp::{SpanExporter, WithExportConfig};
    // reqwest (rustls without a built-in provider) needs the process's crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (exporter, runtime) = match plan.protocol {
        Protocol::HttpProtobuf => {
            let mut b = SpanExporter::builder().with_http();
            if let Some(e) = &plan.endpoint {
                b = b.with_endpoint(e.clone());
            }
            (b.build().map_err(|e| e.to_string())?, None)
        }
        Protocol::Grpc => {
            // The gRPC channel lives on a small runtime of its own, off the serving threads.
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("otlp-export")
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the export runtime: {e}"))?;
            let exporter = {
                let _entered = rt.enter();
                let mut b = SpanExporter::builder().with_tonic();
                if let Some(e) = &plan.endpoint {
                    b = b.with_endpoint(e.clone());
                }
                b.build().map_err(|e| e.to_string())?
            };
            (exporter, Some(rt))
        }
    };
    let mut resource = opentelemetry_sdk::Resource::builder();
    if env("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(cfg.service_name.clone());
    }
    let resource = resource
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    Ok((provider, runtime))
}

#[cfg(test)]
mod tests;
