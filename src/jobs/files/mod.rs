//! The file store behind `/v1/files`: batch input files that clients upload and the output and
//! error files the gateway writes. Content is streamed in and out, never held whole in memory:
//! in `state.data_dir/files/` without NATS, in the JetStream object store `aigw_files` with
//! `state.nats_url`. A file's metadata ([`FileMeta`]) lives with the batch records
//! ([`crate::jobs::batches::store::Records`]).

pub mod nats;

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWriteExt};

use crate::jobs::StoreError;

/// A stored file's metadata, as kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileMeta {
    pub id: String,
    pub bytes: u64,
    pub created_at: u64,
    pub filename: String,
    /// `batch` for uploads, `batch_output` for files the gateway writes.
    pub purpose: String,
    /// The id of the key that owns it (uploaded it, or created the batch that wrote it).
    pub owner_id: String,
}

impl FileMeta {
    /// OpenAI's file object.
    pub fn public(&self) -> Value {
        json!({
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": null,
            "expires_at": null,
        })
    }
}

/// `file-` + 32 hex digits.
pub fn new_file_id() -> String {
    crate::ids::random_id("file-")
}

/// Whether a path segment is one of our file ids (so it can name a file on disk).
pub fn valid_file_id(id: &str) -> bool {
    id.len() == 37
        && id.starts_with("file-")
        && id[5..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Why a file was not stored.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    #[error("the file is larger than the {0} bytes this gateway accepts")]
    TooLarge(u64),
    #[error("could not read the upload: {0}")]
    Read(String),
    #[error("{0}")]
    Store(StoreError),
}

/// A reader over a stored file's content.
pub type Reader = Pin<Box<dyn AsyncRead + Send>>;

/// Where file content lives.
pub enum FileStore {
    Dir(PathBuf),
    Nats(Arc<nats::NatsBackend>),
}

/// Counts what passes through and fails the read past `limit` bytes.
struct Limited<R> {
    inner: R,
    seen: u64,
    limit: u64,
}

impl<R: AsyncRead + Unpin> AsyncRead for Limited<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = &polled {
            self.seen += (buf.filled().len() - before) as u64;
            if self.seen > self.limit {
                return std::task::Poll::Ready(Err(std::io::Error::other(TOO_LARGE)));
            }
        }
        polled
    }
}

const TOO_LARGE: &str = "aigw: file too large";

fn is_too_large(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|i| i.to_string() == TOO_LARGE)
}

impl FileStore {
    pub fn dir(data_dir: &str) -> Self {
        Self::Dir(PathBuf::from(data_dir).join("files"))
    }

    /// Store `reader`'s content under `id` (replacing a file of that id), failing past `limit`
    /// bytes (nothing is kept then). Returns the size.
    pub async fn put(
        &self,
        id: &str,
        reader: impl AsyncRead + Unpin + Send,
        limit: u64,
    ) -> Result<u64, PutError> {
        let mut reader = Limited {
            inner: reader,
            seen: 0,
            limit,
        };
        let map_io = |e: std::io::Error, limit: u64| {
            if is_too_large(&e) {
                PutError::TooLarge(limit)
            } else {
                PutError::Read(e.to_string())
            }
        };
        match self {
            Self::Dir(dir) => {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| PutError::Store(StoreError::new(format!("files dir: {e}"))))?;
                let part = dir.join(format!("{id}.part"));
                let fin = dir.join(id);
                let file = tokio::fs::File::create(&part)
                    .await
                    .map_err(|e| PutError::Store(StoreError::new(format!("file: {e}"))))?;
                let mut w = tokio::io::BufWriter::with_capacity(256 * 1024, file);
                let copied = tokio::io::copy(&mut reader, &mut w).await;
                let done = match copied {
                    Ok(n) => match w.flush().await {
                        Ok(()) => match w.get_ref().sync_all().await {
                            Ok(()) => Ok(n),
                            Err(e) => Err(PutError::Store(StoreError::new(e))),
                        },
                        Err(e) => Err(PutError::Store(StoreError::new(e))),
                    },
                    Err(e) => Err(map_io(e, limit)),
                };
                drop(w);
                match done {
                    Ok(n) => {
                        tokio::fs::rename(&part, &fin)
                            .await
                            .map_err(|e| PutError::Store(StoreError::new(e)))?;
                        Ok(n)
                    }
                    Err(e) => {
                        let _ = tokio::fs::remove_file(&part).await;
                        Err(e)
                    }
                }
            }
            Self::Nats(n) => {
                let objects = n.objects().await.map_err(PutError::Store)?;
                match objects.put(id, &mut reader).await {
                    Ok(info) => Ok(info.size as u64),
                    Err(e) => {
                        let _ = objects.delete(id).await;
                        if reader.seen > limit {
                            Err(PutError::TooLarge(limit))
                        } else {
                            Err(PutError::Store(StoreError::new(format!(
                                "NATS object store: {e}"
                            ))))
                        }
                    }
                }
            }
        }
    }

    /// A reader over the content of `id`; `None` when there is none.
    pub async fn open(&self, id: &str) -> Result<Option<Reader>, StoreError> {
        match self {
            Self::Dir(dir) => match tokio::fs::File::open(dir.join(id)).await {
                Ok(f) => Ok(Some(Box::pin(tokio::io::BufReader::with_capacity(
                    256 * 1024,
                    f,
                )))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(StoreError::new(e)),
            },
            Self::Nats(n) => {
                let objects = n.objects().await?;
                match objects.get(id).await {
                    Ok(o) => Ok(Some(Box::pin(o))),
                    Err(e)
                        if e.kind()
                            == async_nats::jetstream::object_store::GetErrorKind::NotFound =>
                    {
                        Ok(None)
                    }
                    Err(e) => Err(StoreError::new(format!("NATS object store: {e}"))),
                }
            }
        }
    }

    pub async fn delete(&self, id: &str) -> Result<(), StoreError> {
        match self {
            Self::Dir(dir) => match tokio::fs::remove_file(dir.join(id)).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(StoreError::new(e)),
            },
            Self::Nats(n) => {
                let objects = n.objects().await?;
                match objects.delete(id).await {
                    Ok(()) => Ok(()),
                    Err(e)
                        if e.kind()
                            == async_nats::jetstream::object_store::DeleteErrorKind::NotFound =>
                    {
                        Ok(())
                    }
                    Err(e) => Err(StoreError::new(format!("NATS object store: {e}"))),
                }
            }
        }
    }
}
