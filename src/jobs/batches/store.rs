//! Batch records and file metadata: a redb file (`state.data_dir/batches.redb`) for one
//! process, or the KV bucket `aigw_batches` with `state.nats_url`. Batch updates are
//! compare-and-set on a revision (redb: the record's `rev`, checked in the write transaction;
//! NATS: the KV revision), so a cancel and a runner's progress never overwrite each other.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::TryStreamExt;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;

use super::Batch;
use crate::jobs::StoreError;
use crate::jobs::files::FileMeta;
use crate::jobs::files::nats::NatsBackend;

const BATCHES: TableDefinition<&str, &[u8]> = TableDefinition::new("batches");
const FILES: TableDefinition<&str, &[u8]> = TableDefinition::new("files");

/// One kind of record: its redb table, and its keys' prefix in the KV bucket.
#[derive(Clone, Copy)]
struct Family {
    table: TableDefinition<'static, &'static str, &'static [u8]>,
    prefix: &'static str,
}

const BATCH: Family = Family {
    table: BATCHES,
    prefix: "b.",
};
const FILE: Family = Family {
    table: FILES,
    prefix: "f.",
};

pub enum Records {
    Embedded(Arc<Database>),
    Nats(Arc<NatsBackend>),
}

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::new(format!("batch store: {e}"))
}

fn nats_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::new(format!("NATS batch records: {e}"))
}

impl Records {
    /// Open (or create) `batches.redb`, with its tables (the lines' answers too, see
    /// [`super::answers`]).
    pub fn open_embedded(data_dir: &str) -> Result<Arc<Database>, String> {
        let dir = Path::new(data_dir);
        std::fs::create_dir_all(dir).map_err(|e| format!("state.data_dir {data_dir}: {e}"))?;
        let path = dir.join("batches.redb");
        let db = Database::builder()
            .set_cache_size(4 * 1024 * 1024)
            .create(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let txn = db.begin_write().map_err(|e| e.to_string())?;
        txn.open_table(BATCHES).map_err(|e| e.to_string())?;
        txn.open_table(FILES).map_err(|e| e.to_string())?;
        txn.open_table(super::answers::LINES)
            .map_err(|e| e.to_string())?;
        txn.commit().map_err(|e| e.to_string())?;
        Ok(Arc::new(db))
    }

    async fn blocking<T: Send + 'static>(
        db: &Arc<Database>,
        f: impl FnOnce(&Database) -> Result<T, redb::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(db_err)?
            .map_err(db_err)
    }

    /// A batch and its revision.
    pub async fn get(&self, id: &str) -> Result<Option<(Batch, u64)>, StoreError> {
        match self {
            Self::Embedded(db) => {
                let id = id.to_owned();
                Self::blocking(db, move |db| {
                    let txn = db.begin_read()?;
                    let t = txn.open_table(BATCHES)?;
                    Ok(t.get(id.as_str())?
                        .and_then(|v| serde_json::from_slice::<Batch>(v.value()).ok())
                        .map(|b| {
                            let rev = b.rev;
                            (b, rev)
                        }))
                })
                .await
            }
            Self::Nats(n) => {
                let e = n.entry(&format!("b.{id}")).await?;
                Ok(
                    e.filter(|e| e.operation == async_nats::jetstream::kv::Operation::Put)
                        .and_then(|e| {
                            serde_json::from_slice::<Batch>(&e.value)
                                .ok()
                                .map(|b| (b, e.revision))
                        }),
                )
            }
        }
    }

    pub async fn create(&self, batch: &Batch) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(batch).map_err(db_err)?;
        self.put(BATCH, &batch.id, bytes, true).await
    }

    /// Write `batch` if the stored revision is still `rev`: the new revision, or `None` when
    /// someone else wrote it meanwhile.
    pub async fn update(&self, batch: &Batch, rev: u64) -> Result<Option<u64>, StoreError> {
        match self {
            Self::Embedded(db) => {
                let mut b = batch.clone();
                b.rev = rev + 1;
                let bytes = serde_json::to_vec(&b).map_err(db_err)?;
                let id = b.id.clone();
                Self::blocking(db, move |db| {
                    let txn = db.begin_write()?;
                    let ok = {
                        let mut t = txn.open_table(BATCHES)?;
                        let cur = t
                            .get(id.as_str())?
                            .and_then(|v| serde_json::from_slice::<Batch>(v.value()).ok())
                            .map(|b| b.rev);
                        if cur == Some(rev) {
                            t.insert(id.as_str(), bytes.as_slice())?;
                            true
                        } else {
                            false
                        }
                    };
                    if ok {
                        txn.commit()?;
                        Ok(Some(rev + 1))
                    } else {
                        Ok(None)
                    }
                })
                .await
            }
            Self::Nats(n) => {
                let kv = n.kv().await?;
                let bytes = serde_json::to_vec(batch).map_err(db_err)?;
                match kv
                    .update(format!("b.{}", batch.id), Bytes::from(bytes), rev)
                    .await
                {
                    Ok(r) => Ok(Some(r)),
                    Err(e)
                        if e.kind()
                            == async_nats::jetstream::kv::UpdateErrorKind::WrongLastRevision =>
                    {
                        Ok(None)
                    }
                    Err(e) => Err(nats_err(e)),
                }
            }
        }
    }

    /// Every batch record (for listings and for the runners to find unfinished batches).
    pub async fn list(&self) -> Result<Vec<Batch>, StoreError> {
        self.all(BATCH).await
    }

    pub async fn put_file(&self, meta: &FileMeta) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(meta).map_err(db_err)?;
        self.put(FILE, &meta.id, bytes, false).await
    }

    pub async fn get_file(&self, id: &str) -> Result<Option<FileMeta>, StoreError> {
        match self {
            Self::Embedded(db) => {
                let id = id.to_owned();
                Self::blocking(db, move |db| {
                    let txn = db.begin_read()?;
                    let t = txn.open_table(FILES)?;
                    Ok(t.get(id.as_str())?
                        .and_then(|v| serde_json::from_slice(v.value()).ok()))
                })
                .await
            }
            Self::Nats(n) => Ok(n
                .entry(&format!("f.{id}"))
                .await?
                .filter(|e| e.operation == async_nats::jetstream::kv::Operation::Put)
                .and_then(|e| serde_json::from_slice(&e.value).ok())),
        }
    }

    pub async fn delete_file(&self, id: &str) -> Result<(), StoreError> {
        match self {
            Self::Embedded(db) => {
                let id = id.to_owned();
                Self::blocking(db, move |db| {
                    let txn = db.begin_write()?;
                    txn.open_table(FILES)?.remove(id.as_str())?;
                    txn.commit()?;
                    Ok(())
                })
                .await
            }
            Self::Nats(n) => {
                let kv = n.kv().await?;
                kv.purge(format!("f.{id}")).await.map_err(nats_err)?;
                Ok(())
            }
        }
    }

    pub async fn list_files(&self) -> Result<Vec<FileMeta>, StoreError> {
        self.all(FILE).await
    }

    /// Write a record whole (`create`: the KV bucket refuses a key that is there already).
    async fn put(
        &self,
        family: Family,
        id: &str,
        bytes: Vec<u8>,
        create: bool,
    ) -> Result<(), StoreError> {
        match self {
            Self::Embedded(db) => {
                let id = id.to_owned();
                Self::blocking(db, move |db| {
                    let txn = db.begin_write()?;
                    txn.open_table(family.table)?
                        .insert(id.as_str(), bytes.as_slice())?;
                    txn.commit()?;
                    Ok(())
                })
                .await
            }
            Self::Nats(n) => {
                let kv = n.kv().await?;
                let key = format!("{}{id}", family.prefix);
                if create {
                    kv.create(key, Bytes::from(bytes)).await.map_err(nats_err)?;
                } else {
                    kv.put(key, Bytes::from(bytes)).await.map_err(nats_err)?;
                }
                Ok(())
            }
        }
    }

    /// Every record of a family (one that does not parse is left out).
    async fn all<T: DeserializeOwned + Send + 'static>(
        &self,
        family: Family,
    ) -> Result<Vec<T>, StoreError> {
        match self {
            Self::Embedded(db) => {
                Self::blocking(db, move |db| {
                    let txn = db.begin_read()?;
                    let t = txn.open_table(family.table)?;
                    let mut out = Vec::new();
                    for item in t.iter()? {
                        let (_, v) = item?;
                        if let Ok(r) = serde_json::from_slice::<T>(v.value()) {
                            out.push(r);
                        }
                    }
                    Ok(out)
                })
                .await
            }
            Self::Nats(n) => {
                let kv = n.kv().await?;
                let keys: Vec<String> = kv
                    .keys()
                    .await
                    .map_err(nats_err)?
                    .try_collect()
                    .await
                    .map_err(nats_err)?;
                let mut out = Vec::new();
                for k in keys.iter().filter(|k| k.starts_with(family.prefix)) {
                    if let Some(v) = kv.get(k).await.map_err(nats_err)?
                        && let Ok(r) = serde_json::from_slice::<T>(&v)
                    {
                        out.push(r);
                    }
                }
                Ok(out)
            }
        }
    }
}
