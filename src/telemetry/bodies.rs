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
        body = %redact_secrets(&text),
        "request body"
    );
}

/// Replace every secret-like word (a run of `[A-Za-z0-9_-]`) with `[redacted]`.
pub fn redact_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    while !rest.is_empty() {
        let start = rest.find(is_word).unwrap_or(rest.len());
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest.find(|c: char| !is_word(c)).unwrap_or(rest.len());
        let w = &rest[..end];
        let secret = w.starts_with("sk-")
            || w.starts_with("sk_")
            || w.starts_with("whsec_")
            || w.len() >= 32;
        out.push_str(if secret { "[redacted]" } else { w });
        rest = &rest[end..];
    }
    out
}
