//! The pretty (terminal) log format: tracing-subscriber's own for every event but the access log,
//! which is one short line a person reads at a glance:
//!
//! ```text
//! 08:41:07 200 POST /v1/chat/completions mock → mock/mock 1.2ms 5→12 tok key app [req_9f1c2a…]
//! ```
//!
//! (UTC time, status, method, path, model → provider/upstream model, latency, time to first token
//! of a stream, input→output tokens, cache hit, attempts when more than one, the key's name, the
//! request id). JSON logs keep every field.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::time::SystemTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The access log's target (see `app::Finish`).
pub const ACCESS_TARGET: &str = "access";

#[derive(Default)]
pub struct Human {
    inner: Format<Full, SystemTime>,
}

impl<S, N> FormatEvent<S, N> for Human
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        if event.metadata().target() != ACCESS_TARGET {
            return self.inner.format_event(ctx, writer, event);
        }
        let mut a = Access::default();
        event.record(&mut a);
        let color = writer.has_ansi_escapes();
        writeln!(writer, "{}", a.line(utc_now(), color))
    }
}

/// The access event's fields that the short line shows.
#[derive(Default)]
struct Access {
    request_id: String,
    method: String,
    path: String,
    status: u64,
    model: String,
    key: String,
    provider: String,
    deployment_model: String,
    attempts: String,
    cache: String,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    latency_ms: f64,
    ttft_ms: Option<f64>,
}

impl Visit for Access {
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "status" => self.status = value,
            "input_tokens" => self.input_tokens = Some(value),
            "output_tokens" => self.output_tokens = Some(value),
            _ => {}
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        match field.name() {
            "latency_ms" => self.latency_ms = value,
            "ttft_ms" => self.ttft_ms = Some(value),
            _ => {}
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let slot = match field.name() {
            "request_id" => &mut self.request_id,
            "method" => &mut self.method,
            "path" => &mut self.path,
            "model" => &mut self.model,
            "key" => &mut self.key,
            "provider" => &mut self.provider,
            "deployment_model" => &mut self.deployment_model,
            "attempts" => &mut self.attempts,
            "cache" => &mut self.cache,
            _ => return,
        };
        *slot = format!("{value:?}");
    }
}

impl Access {
    fn line(&self, (h, m, s): (u64, u64, u64), color: bool) -> String {
        let (on, off) = match (color, self.status) {
            (false, _) => ("", ""),
            (true, 200..=399) => ("\x1b[32m", "\x1b[0m"),
            (true, 400..=499) => ("\x1b[33m", "\x1b[0m"),
            (true, _) => ("\x1b[31m", "\x1b[0m"),
        };
        let mut line = format!(
            "{h:02}:{m:02}:{s:02} {on}{}{off} {} {}",
            self.status, self.method, self.path
        );
        if !self.model.is_empty() {
            line.push(' ');
            line.push_str(&self.model);
            if !self.provider.is_empty() {
                line.push_str(&format!(" → {}/{}", self.provider, self.deployment_model));
            }
        }
        line.push_str(&format!(" {}", ms(self.latency_ms)));
        if let Some(t) = self.ttft_ms {
            line.push_str(&format!(" (first token {})", ms(t)));
        }
        if let (Some(i), Some(o)) = (self.input_tokens, self.output_tokens) {
            line.push_str(&format!(" {i}→{o} tok"));
        }
        if self.cache == "HIT" {
            line.push_str(&format!(" cache {}", self.cache));
        }
        if !self.attempts.is_empty() && self.attempts != "1" {
            line.push_str(&format!(" {} attempts", self.attempts));
        }
        if !self.key.is_empty() {
            line.push_str(&format!(" key {}", self.key));
        }
        if !self.request_id.is_empty() {
            line.push_str(&format!(" [{}]", self.request_id));
        }
        line
    }
}

fn ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2}s", v / 1000.0)
    } else if v >= 10.0 {
        format!("{v:.0}ms")
    } else {
        format!("{v:.1}ms")
    }
}

/// Hours, minutes and seconds of the current UTC time.
fn utc_now() -> (u64, u64, u64) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        % 86_400;
    (secs / 3600, secs % 3600 / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access() -> Access {
        Access {
            request_id: "9f1c2a7d-aaaa".into(),
            method: "POST".into(),
            path: "/v1/chat/completions".into(),
            status: 200,
            model: "gpt-4o-mini".into(),
            key: "app".into(),
            provider: "openai".into(),
            deployment_model: "gpt-4o-mini-2024".into(),
            attempts: "1".into(),
            cache: "miss".into(),
            input_tokens: Some(12),
            output_tokens: Some(5),
            latency_ms: 231.4,
            ttft_ms: None,
        }
    }

    #[test]
    fn one_short_line() {
        assert_eq!(
            access().line((8, 41, 7), false),
            "08:41:07 200 POST /v1/chat/completions gpt-4o-mini → openai/gpt-4o-mini-2024 231ms 12→5 tok key app [9f1c2a7d-aaaa]"
        );
    }

    #[test]
    fn streams_retries_cache_and_plain_requests() {
        let mut a = access();
        a.ttft_ms = Some(3.25);
        a.attempts = "2".into();
        a.cache = "HIT".into();
        a.latency_ms = 1500.0;
        let line = a.line((0, 0, 0), false);
        assert!(
            line.contains(" 1.50s (first token 3.2ms) 12→5 tok cache HIT 2 attempts key app"),
            "{line}"
        );
        let plain = Access {
            method: "GET".into(),
            path: "/health".into(),
            status: 200,
            latency_ms: 0.05,
            ..Access::default()
        };
        assert_eq!(
            plain.line((23, 59, 59), false),
            "23:59:59 200 GET /health 0.1ms"
        );
    }

    #[test]
    fn status_is_coloured_on_a_terminal() {
        let mut a = access();
        a.status = 503;
        assert!(a.line((0, 0, 0), true).contains("\x1b[31m503\x1b[0m"));
    }
}
