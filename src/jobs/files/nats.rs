//! The JetStream handles of files and batches: the object store `aigw_files` (file content), the
//! KV bucket `aigw_batches` (`b.{id}` batch records, `f.{id}` file metadata) and the stream
//! `AIGW_BATCH_LINES` (the lines' recorded answers), set up on first use over the job system's
//! connection (retried while NATS is down).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{kv, object_store, stream};
use tokio::sync::OnceCell;

use crate::jobs::StoreError;
use crate::jobs::nats::Nats;

const FILES_BUCKET: &str = "aigw_files";
const RECORDS_BUCKET: &str = "aigw_batches";
const LINES_STREAM: &str = "AIGW_BATCH_LINES";

pub struct NatsBackend {
    nats: Arc<Nats>,
    /// `state.jetstream_replicas`, for the bucket and the object store.
    replicas: usize,
    kv: OnceCell<kv::Store>,
    objects: OnceCell<object_store::ObjectStore>,
    lines: OnceCell<stream::Stream>,
}

impl NatsBackend {
    pub fn new(nats: Arc<Nats>, replicas: usize) -> Self {
        Self {
            nats,
            replicas,
            kv: OnceCell::new(),
            objects: OnceCell::new(),
            lines: OnceCell::new(),
        }
    }

    pub fn js(&self) -> Result<async_nats::jetstream::Context, StoreError> {
        self.nats
            .jetstream()
            .ok_or_else(|| StoreError::new("NATS JetStream is not reachable yet"))
    }

    /// The last entry of `key` in the records bucket, read from its stream's leader: on a
    /// cluster a follower may not have applied a record made a moment ago.
    pub async fn entry(
        &self,
        key: &str,
    ) -> Result<Option<crate::state::nats::LeaderEntry>, StoreError> {
        self.kv().await?;
        self.nats
            .leader_entry(RECORDS_BUCKET, key)
            .await
            .map_err(StoreError::new)
    }

    pub async fn kv(&self) -> Result<&kv::Store, StoreError> {
        self.kv
            .get_or_try_init(|| async {
                let js = self.js()?;
                crate::jobs::nats::ensure_bucket(&js, RECORDS_BUCKET, Duration::ZERO, self.replicas)
                    .await
                    .map_err(StoreError::new)
            })
            .await
    }

    /// The stream of batch lines' recorded answers (`AIGW_BATCH_LINES`, see
    /// [`crate::jobs::batches::answers`]).
    pub async fn lines_stream(&self) -> Result<&stream::Stream, StoreError> {
        self.lines
            .get_or_try_init(|| async {
                let js = self.js()?;
                crate::state::nats::ensure_stream(
                    &js,
                    stream::Config {
                        name: LINES_STREAM.to_owned(),
                        description: Some(
                            "ai-gateway: recorded answers of batch lines, a group per message"
                                .to_owned(),
                        ),
                        subjects: vec!["aigw.batch_lines.*".to_owned()],
                        storage: stream::StorageType::File,
                        ..Default::default()
                    },
                    self.replicas,
                    |_| false,
                )
                .await
                .map_err(|e| StoreError::new(format!("stream {LINES_STREAM}: {e}")))
            })
            .await
    }

    pub async fn objects(&self) -> Result<&object_store::ObjectStore, StoreError> {
        self.objects
            .get_or_try_init(|| async {
                let js = self.js()?;
                crate::state::nats::ensure_object_store(
                    &js,
                    object_store::Config {
                        bucket: FILES_BUCKET.to_owned(),
                        description: Some(
                            "ai-gateway: batch input, output and error files".to_owned(),
                        ),
                        storage: stream::StorageType::File,
                        ..Default::default()
                    },
                    self.replicas,
                )
                .await
                .map_err(|e| StoreError::new(format!("object store {FILES_BUCKET}: {e}")))
            })
            .await
    }
}
