//! `telemetry.log_bodies`: request bodies in the log, bounded and with secrets scrubbed.

// ------------------------------------------------------------------ bodies

/// At most this much of a body is logged.
const BODY_LOG_MAX: usize = 16 * 1024;

/// With `telemetry.log_bodies`, one line (target `body`) with a request's body: bounded, and with
/// anything that looks like a key (`sk-…`, `sk_…`, `whsec_…`, or 32+ key characters) redacted.
pub fn log_request_body(request_id: &str, body: &[u8]) {
    let text = String::from_utf8_lossy(&body[..body.len().min(BODY_LOG_MAX)]);
    tracing::info!(
        target: "body",
        request_id = %request_id,
        bytes = body.len(),
        truncated = body.len() > BODY_LOG_MAX,
        body = %crate::error::redact_secrets(&text),
        "request body"
    );
}
