//! `request_log:`: the admin request log and the usage report.

use super::*;

/// `request_log:`: one entry per model call (API calls, async job runs, batch lines), shown by
/// `GET /admin/requests`, and the daily usage totals of `GET /admin/usage`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RequestLogConfig {
    /// Keep the request log and the usage report (off: nothing is recorded and the admin
    /// endpoints answer empty lists).
    pub enabled: bool,
    /// How many of the newest entries are kept (embedded store in `state.data_dir`, or a capped
    /// Redis stream shared by the replicas when `state.redis_url` is set).
    pub max_entries: u64,
    /// How long the daily usage totals are kept.
    pub usage_retention: Dur,
    /// Also keep each request's and answer's body (after guardrail redaction; keys and secrets
    /// never).
    pub bodies: bool,
}

impl Default for RequestLogConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_entries: 100_000,
            usage_retention: Dur::secs(400 * 86_400),
            bodies: false,
        }
    }
}
