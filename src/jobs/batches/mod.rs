//! The OpenAI Batch API, run by the gateway itself on any provider.
//!
//! A batch is a record ([`Batch`], in [`store::Records`]) naming an uploaded input file. A
//! runner ([`runner`]) drives it: it validates every line first ([`lines`]), then runs the lines
//! itself, at most `batches.concurrency` at a time, each through the synchronous pipeline the
//! jobs use ([`exec`]: routing, fallbacks, cache, limits, spend) with the jobs' retries and
//! rate-limit waits. A line's answer, recorded in groups ([`answers`]), is its progress: a
//! restart reads the recorded answers and never runs a recorded line again. When every line
//! ended, the runner writes the output and error files ([`output`]) from those answers, one line
//! per input line, and drops them.

pub mod answers;
pub mod exec;
pub mod lines;
pub mod output;
pub mod runner;
pub mod store;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::jobs::JobQueue;
use crate::jobs::files::FileStore;

/// Where a batch is in its life (OpenAI's words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchStatus {
    Validating,
    Failed,
    InProgress,
    Finalizing,
    Completed,
    Expired,
    Cancelling,
    Cancelled,
}

impl BatchStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Failed | Self::Completed | Self::Expired | Self::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Validating => "validating",
            Self::Failed => "failed",
            Self::InProgress => "in_progress",
            Self::Finalizing => "finalizing",
            Self::Completed => "completed",
            Self::Expired => "expired",
            Self::Cancelling => "cancelling",
            Self::Cancelled => "cancelled",
        }
    }
}

/// A batch record, as stored. [`Batch::public`] is what clients see.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Batch {
    pub id: String,
    pub owner_id: String,
    /// The creating key's name: a label for the admin listing, never compared.
    #[serde(default)]
    pub owner_name: String,
    pub endpoint: String,
    pub input_file_id: String,
    pub completion_window: String,
    pub status: BatchStatus,
    pub created_at: u64,
    pub expires_at: u64,
    #[serde(default)]
    pub in_progress_at: Option<u64>,
    #[serde(default)]
    pub finalizing_at: Option<u64>,
    #[serde(default)]
    pub completed_at: Option<u64>,
    #[serde(default)]
    pub failed_at: Option<u64>,
    #[serde(default)]
    pub expired_at: Option<u64>,
    #[serde(default)]
    pub cancelling_at: Option<u64>,
    #[serde(default)]
    pub cancelled_at: Option<u64>,
    #[serde(default)]
    pub output_file_id: Option<String>,
    #[serde(default)]
    pub error_file_id: Option<String>,
    /// Validation errors: `[{"code","message","param","line"}]`.
    #[serde(default)]
    pub errors: Option<Vec<Value>>,
    #[serde(default)]
    pub metadata: Option<Value>,
    /// Lines in the input file (known after validation).
    #[serde(default)]
    pub total: u64,
    /// Live counts (lines answered 2xx / not).
    #[serde(default)]
    pub completed: u64,
    #[serde(default)]
    pub failed: u64,
    /// Internal: why lines stopped being submitted early (`budget_exceeded`); lines never run
    /// end in the error file with this code.
    #[serde(default)]
    pub stop: Option<String>,
    /// Internal: the process driving it, and until when (unix ms) its claim holds (NATS).
    #[serde(default)]
    pub lease_owner: String,
    #[serde(default)]
    pub lease_until: u64,
    /// Internal: the embedded store's revision.
    #[serde(default)]
    pub rev: u64,
}

impl Batch {
    /// OpenAI's batch object.
    pub fn public(&self) -> Value {
        json!({
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "errors": self.errors.as_ref().map(|d| json!({"object": "list", "data": d})),
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.status.as_str(),
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "in_progress_at": self.in_progress_at,
            "expires_at": self.expires_at,
            "finalizing_at": self.finalizing_at,
            "completed_at": self.completed_at,
            "failed_at": self.failed_at,
            "expired_at": self.expired_at,
            "cancelling_at": self.cancelling_at,
            "cancelled_at": self.cancelled_at,
            "request_counts": {
                "total": self.total,
                "completed": self.completed,
                "failed": self.failed,
            },
            "metadata": self.metadata,
        })
    }
}

/// `batch_` + a ULID (sorts by creation time).
pub fn new_batch_id() -> String {
    let j = crate::jobs::new_job_id();
    format!("batch_{}", &j[4..])
}

pub fn valid_batch_id(id: &str) -> bool {
    id.len() == 32
        && id.starts_with("batch_")
        && crate::jobs::valid_job_id(&format!("job_{}", &id[6..]))
}

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// The id of line `index` (0-based) of a batch, as a job id: derived, so the line's id in the
/// output (`batch_req_…`) and its job span are the same after any restart.
pub fn line_job_id(batch_id: &str, index: u64) -> String {
    let mut h = Sha256::new();
    h.update(batch_id.as_bytes());
    h.update(index.to_be_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    let v = u128::from_be_bytes(b);
    let mut out = String::with_capacity(30);
    out.push_str("job_");
    for i in (0..26).rev() {
        out.push(char::from(CROCKFORD[((v >> (i * 5)) & 0x1F) as usize]));
    }
    out
}

/// The file id of a batch's output (`"output"`) or error (`"error"`) file: derived, so a
/// finalisation interrupted by a crash writes the same files again.
pub fn result_file_id(batch_id: &str, which: &str) -> String {
    let mut h = Sha256::new();
    h.update(batch_id.as_bytes());
    h.update([0u8]);
    h.update(which.as_bytes());
    format!("file-{}", hex::encode(&h.finalize()[..16]))
}

/// Files and batches of one process: their records, the file content, and a wake-up for the
/// runner when a batch is created.
pub struct Batches {
    pub records: store::Records,
    /// The lines' recorded answers.
    pub answers: answers::Answers,
    pub files: FileStore,
    pub wake: Notify,
    /// This process's id in batch leases.
    pub me: String,
}

impl Batches {
    pub fn open(cfg: &crate::config::Config, queue: &JobQueue) -> Result<Arc<Self>, String> {
        let (records, files, answers) = match queue {
            JobQueue::Embedded(_) => {
                let db = store::Records::open_embedded(&cfg.state.data_dir)?;
                (
                    store::Records::Embedded(db.clone()),
                    FileStore::dir(&cfg.state.data_dir),
                    answers::Answers::Embedded(db),
                )
            }
            JobQueue::Nats(n) => {
                let backend = Arc::new(crate::jobs::files::nats::NatsBackend::new(
                    n.clone(),
                    crate::state::nats::replicas(&cfg.state),
                ));
                (
                    store::Records::Nats(backend.clone()),
                    FileStore::Nats(backend.clone()),
                    answers::Answers::Nats(backend),
                )
            }
        };
        Ok(Arc::new(Self {
            records,
            answers,
            files,
            wake: Notify::new(),
            me: crate::ids::random_id("proc_"),
        }))
    }

    /// Whether leases matter (several processes may run batches).
    pub fn shared(&self) -> bool {
        matches!(self.records, store::Records::Nats(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_valid_and_stable() {
        let b = new_batch_id();
        assert!(valid_batch_id(&b), "{b}");
        assert!(!valid_batch_id("batch_../x"));
        let a = line_job_id(&b, 7);
        assert!(crate::jobs::valid_job_id(&a), "{a}");
        assert_eq!(a, line_job_id(&b, 7));
        assert_ne!(a, line_job_id(&b, 8));
        let f = result_file_id(&b, "output");
        assert!(crate::jobs::files::valid_file_id(&f), "{f}");
        assert_ne!(f, result_file_id(&b, "error"));
    }
}
