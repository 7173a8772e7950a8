//! The embedded store in `state.data_dir` for what Redis would otherwise hold: admin-created
//! keys and spend/usage per key and period. redb (pure Rust, ACID, crash-safe); every call runs
//! on a blocking thread, never on the async runtime.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, TableDefinition};

const KEYS: TableDefinition<&str, &str> = TableDefinition::new("keys");
const USAGE: TableDefinition<&str, &str> = TableDefinition::new("usage");
const RESPONSES: TableDefinition<&str, &str> = TableDefinition::new("responses");

#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
}

/// Which table.
#[derive(Clone, Copy)]
pub enum Table {
    Keys,
    Usage,
    /// Stored Responses API objects (`data_dir/responses.redb`).
    Responses,
}

impl Table {
    fn def(self) -> TableDefinition<'static, &'static str, &'static str> {
        match self {
            Self::Keys => KEYS,
            Self::Usage => USAGE,
            Self::Responses => RESPONSES,
        }
    }
}

impl Store {
    /// Open (or create) `data_dir/gateway.redb`.
    pub fn open(data_dir: &Path) -> Result<Self, String> {
        Self::open_file(data_dir, "gateway.redb", &[Table::Keys, Table::Usage])
    }

    /// Open (or create) `data_dir/file` with these tables.
    pub fn open_file(data_dir: &Path, file: &str, tables: &[Table]) -> Result<Self, String> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| format!("state.data_dir {}: {e}", data_dir.display()))?;
        let path = data_dir.join(file);
        let db = Database::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let store = Self { db: Arc::new(db) };
        // Create the tables so reads never fail on a fresh file.
        let txn = store.db.begin_write().map_err(|e| e.to_string())?;
        for t in tables {
            txn.open_table(t.def()).map_err(|e| e.to_string())?;
        }
        txn.commit().map_err(|e| e.to_string())?;
        Ok(store)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| format!("store task failed: {e}"))?
    }

    pub async fn get(&self, table: Table, key: String) -> Result<Option<String>, String> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(|e| e.to_string())?;
            let t = txn.open_table(table.def()).map_err(|e| e.to_string())?;
            Ok(t.get(key.as_str())
                .map_err(|e| e.to_string())?
                .map(|v| v.value().to_owned()))
        })
        .await
    }

    /// Write several entries in one transaction (`None` deletes).
    pub async fn put_many(
        &self,
        table: Table,
        entries: Vec<(String, Option<String>)>,
    ) -> Result<(), String> {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(|e| e.to_string())?;
            {
                let mut t = txn.open_table(table.def()).map_err(|e| e.to_string())?;
                for (k, v) in &entries {
                    match v {
                        Some(v) => {
                            t.insert(k.as_str(), v.as_str())
                                .map_err(|e| e.to_string())?;
                        }
                        None => {
                            t.remove(k.as_str()).map_err(|e| e.to_string())?;
                        }
                    }
                }
            }
            txn.commit().map_err(|e| e.to_string())
        })
        .await
    }

    /// Run `f` on one table inside one write transaction, committed when `f` returns `Ok`
    /// (a check and the writes it allows are one atomic step).
    pub async fn transact<T: Send + 'static>(
        &self,
        table: Table,
        f: impl for<'t> FnOnce(&mut redb::Table<'t, &'static str, &'static str>) -> Result<T, String>
        + Send
        + 'static,
    ) -> Result<T, String> {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(|e| e.to_string())?;
            let out = {
                let mut t = txn.open_table(table.def()).map_err(|e| e.to_string())?;
                f(&mut t)?
            };
            txn.commit().map_err(|e| e.to_string())?;
            Ok(out)
        })
        .await
    }

    /// Every entry whose key starts with `prefix`.
    pub async fn scan(
        &self,
        table: Table,
        prefix: String,
    ) -> Result<Vec<(String, String)>, String> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(|e| e.to_string())?;
            let t = txn.open_table(table.def()).map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            for item in t.range(prefix.as_str()..).map_err(|e| e.to_string())? {
                let (k, v) = item.map_err(|e| e.to_string())?;
                if !k.value().starts_with(prefix.as_str()) {
                    break;
                }
                out.push((k.value().to_owned(), v.value().to_owned()));
            }
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            s.put_many(
                Table::Keys,
                vec![
                    ("a1".into(), Some("x".into())),
                    ("a2".into(), Some("y".into())),
                    ("b".into(), Some("z".into())),
                ],
            )
            .await
            .unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(
            s.get(Table::Keys, "a1".into()).await.unwrap().as_deref(),
            Some("x")
        );
        assert_eq!(s.scan(Table::Keys, "a".into()).await.unwrap().len(), 2);
        s.put_many(Table::Keys, vec![("a1".into(), None)])
            .await
            .unwrap();
        assert_eq!(s.get(Table::Keys, "a1".into()).await.unwrap(), None);
    }
}
