//! The `batches` section: the OpenAI Batch API run by the gateway (`/v1/files`, `/v1/batches`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::super::units::{ByteSize, Dur};

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BatchesConfig {
    /// Largest file `POST /v1/files` accepts (413 above it); files are streamed to disk or to
    /// the NATS object store, never held whole in memory.
    pub max_file_size: ByteSize,
    /// Lines of one batch in flight at once (the lines of all batches also share the process's
    /// `jobs.workers`).
    pub concurrency: u32,
    /// How long after its creation a batch expires (`completion_window` is `24h`, as OpenAI's):
    /// lines not run by then end `batch_expired` and the batch `expired`. Shorter only for tests.
    pub expire_after: Dur,
}

impl Default for BatchesConfig {
    fn default() -> Self {
        Self {
            max_file_size: ByteSize(200 * 1024 * 1024),
            concurrency: 64,
            expire_after: Dur::secs(24 * 3600),
        }
    }
}
