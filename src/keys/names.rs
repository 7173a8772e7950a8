//! Key names are unique among live keys, admin-made and of the file together.
//!
//! Beside the records, a name index maps each name to the id of the live key holding it
//! (`name:<name>` in the embedded store's keys table, `aigw:{keys}:name:<name>` in Redis). A record
//! and its index entry are written in one step, one redb transaction or one Lua script that
//! Redis runs atomically for every replica sharing it, so two creates of one name, on one replica
//! or on two, cannot both succeed. An entry whose holder is revoked or gone counts as free; a
//! revoked key gives its name up. The names of the file's keys are checked against the running
//! configuration at create and rename, and a reload whose file names a live admin-made key's name
//! is refused ([`file_clashes`]).
//!
//! Keys stored before the index existed are indexed at start ([`KeyStore::index_names`]), oldest
//! first; duplicates among them (possible then) are logged and keep working until one is renamed
//! or revoked.

use std::collections::HashMap;
use std::sync::LazyLock;

use redb::ReadableTable;

use super::{KeyRecord, KeyStore, backend_error};
use crate::auth::Auth;
use crate::config::AuthConfig;
use crate::error::Error;
use crate::state::REDIS_TIMEOUT;
use crate::store::Table;

/// What a save does with the record's name.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Claim {
    /// Create or rename: refused (409) while another live key holds the name.
    Take,
    /// Any other change of a live key: hold the name if it is free, never refuse.
    Keep,
    /// Revoked: give the name up.
    Release,
}

impl Claim {
    fn as_str(self) -> &'static str {
        match self {
            Self::Take => "take",
            Self::Keep => "keep",
            Self::Release => "release",
        }
    }
}

/// Save a record with its name index entry, atomically. Returns the id of the live key holding
/// the name when it is not this one's (then, under `take`, nothing was written); nil otherwise.
/// An empty record JSON writes the index entry alone.
const SAVE_SCRIPT: &str = r"
-- KEYS: 1 record, 2 hash entry, 3 set of ids, 4 name entry, 5 previous name entry
-- ARGV: 1 id, 2 record JSON or '', 3 take|keep|release, 4 record key prefix
local id, mode = ARGV[1], ARGV[3]
local holder = redis.call('GET', KEYS[4])
local free = (not holder) or holder == id
if not free then
  local rec = redis.call('GET', ARGV[4] .. holder)
  free = (not rec) or cjson.decode(rec).revoked == true
end
if mode == 'take' and not free then return holder end
if KEYS[5] ~= KEYS[4] and redis.call('GET', KEYS[5]) == id then redis.call('DEL', KEYS[5]) end
if mode == 'release' then
  if holder == id then redis.call('DEL', KEYS[4]) end
elseif free then
  redis.call('SET', KEYS[4], id)
end
if ARGV[2] ~= '' then
  redis.call('SET', KEYS[1], ARGV[2])
  redis.call('SET', KEYS[2], id)
  redis.call('SADD', KEYS[3], id)
end
if mode ~= 'release' and not free then return holder end
return false
";

static SAVE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(SAVE_SCRIPT));

/// The 409 for a name another live admin-made key holds.
fn taken(name: &str, holder: &str) -> Error {
    Error::Conflict {
        message: format!(
            "a live key is already named \"{name}\" ({holder}); key names are unique among live \
             keys: choose another name, or revoke that key first"
        ),
        code: Some("key_name_taken"),
    }
}

/// The 409 for a name a key of the configuration file has.
fn taken_by_file(name: &str) -> Error {
    Error::Conflict {
        message: format!(
            "a key of the configuration file is named \"{name}\"; key names are unique among \
             live keys: choose another name"
        ),
        code: Some("key_name_taken"),
    }
}

/// Refuse a name that a key of the file has.
pub(super) fn check_file(file: &Auth, name: &str) -> Result<(), Error> {
    match file.by_name(name) {
        Some(_) => Err(taken_by_file(name)),
        None => Ok(()),
    }
}

/// One message per key of the file whose name a live admin-made key (`admin`: name → id) holds.
pub fn file_clashes(file: Option<&AuthConfig>, admin: &HashMap<String, String>) -> Vec<String> {
    file.map(|a| a.keys.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter_map(|(i, k)| {
            admin.get(&k.name).map(|id| {
                format!(
                    "auth.keys[{i}].name: \"{}\" is also the name of the live admin-made key {id}; \
                     key names are unique among live keys: rename one of them (in the file, or \
                     with PATCH /admin/keys/{id}) or revoke the admin-made key",
                    k.name
                )
            })
        })
        .collect()
}

fn name_entry(name: &str) -> String {
    format!("name:{name}")
}

type KeysTable<'t> = redb::Table<'t, &'static str, &'static str>;

fn read(t: &KeysTable<'_>, k: &str) -> Result<Option<String>, String> {
    Ok(t.get(k)
        .map_err(|e| e.to_string())?
        .map(|v| v.value().to_owned()))
}

/// Whether the key with this id exists and is not revoked.
fn is_live(t: &KeysTable<'_>, id: &str) -> Result<bool, String> {
    Ok(read(t, &format!("id:{id}"))?
        .and_then(|s| serde_json::from_str::<KeyRecord>(&s).ok())
        .is_some_and(|r| !r.revoked))
}

/// Drop the index entry of `name` if `id` holds it.
fn release(t: &mut KeysTable<'_>, name: &str, id: &str) -> Result<(), String> {
    let k = name_entry(name);
    if read(t, &k)?.as_deref() == Some(id) {
        t.remove(k.as_str()).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The embedded store's half of [`SAVE_SCRIPT`], in one transaction.
fn save_embedded(
    t: &mut KeysTable<'_>,
    rec: &KeyRecord,
    json: Option<&str>,
    previous: Option<&str>,
    claim: Claim,
) -> Result<Option<String>, String> {
    let entry = name_entry(&rec.name);
    let holder = read(t, &entry)?;
    let free = match &holder {
        None => true,
        Some(h) if *h == rec.id => true,
        Some(h) => !is_live(t, h)?,
    };
    if claim == Claim::Take && !free {
        return Ok(holder);
    }
    if let Some(p) = previous.filter(|p| *p != rec.name) {
        release(t, p, &rec.id)?;
    }
    if claim == Claim::Release {
        release(t, &rec.name, &rec.id)?;
    } else if free {
        t.insert(entry.as_str(), rec.id.as_str())
            .map_err(|e| e.to_string())?;
    }
    if let Some(json) = json {
        t.insert(format!("id:{}", rec.id).as_str(), json)
            .map_err(|e| e.to_string())?;
        t.insert(format!("hash:{}", rec.key_sha256).as_str(), rec.id.as_str())
            .map_err(|e| e.to_string())?;
    }
    Ok(if claim == Claim::Release || free {
        None
    } else {
        holder
    })
}

impl KeyStore {
    /// Write a record and its name index entry in one atomic step. `previous` is the name it had
    /// (a rename gives it up). A `take` of a name another live key holds is refused (409) and
    /// writes nothing.
    pub(super) async fn save(
        &self,
        rec: &KeyRecord,
        previous: Option<&str>,
        claim: Claim,
    ) -> Result<(), Error> {
        let json = serde_json::to_string(rec).map_err(|e| Error::Internal(e.to_string()))?;
        match self
            .save_with_index(rec, Some(json), previous, claim)
            .await?
        {
            Some(holder) if claim == Claim::Take => Err(taken(&rec.name, &holder)),
            _ => Ok(()),
        }
    }

    async fn save_with_index(
        &self,
        rec: &KeyRecord,
        json: Option<String>,
        previous: Option<&str>,
        claim: Claim,
    ) -> Result<Option<String>, Error> {
        if let Some(redis) = &self.redis {
            let mut conn = redis.conn().ok_or_else(|| backend_error("redis is down"))?;
            let mut inv = SAVE.prepare_invoke();
            use crate::state::keys::{KEYS_PREFIX, key_store};
            inv.key(key_store(&format!("id:{}", rec.id)))
                .key(key_store(&format!("hash:{}", rec.key_sha256)))
                .key(key_store("all"))
                .key(key_store(&name_entry(&rec.name)))
                .key(key_store(&name_entry(previous.unwrap_or(&rec.name))))
                .arg(&rec.id)
                .arg(json.as_deref().unwrap_or(""))
                .arg(claim.as_str())
                .arg(format!("{KEYS_PREFIX}id:"));
            return match tokio::time::timeout(
                REDIS_TIMEOUT * 4,
                inv.invoke_async::<Option<String>>(&mut conn),
            )
            .await
            {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => {
                    redis.report_error("key save", &e, e.is_io_error());
                    Err(backend_error(e))
                }
                Err(_) => Err(backend_error("timed out")),
            };
        }
        let store = self
            .store
            .as_ref()
            .ok_or_else(|| backend_error("no store"))?;
        let (rec, previous) = (rec.clone(), previous.map(str::to_owned));
        store
            .transact(Table::Keys, move |t| {
                save_embedded(t, &rec, json.as_deref(), previous.as_deref(), claim)
            })
            .await
            .map_err(backend_error)
    }

    /// Index the names of keys stored before the index existed (run at start; cheap when they
    /// are indexed already). Oldest first: of two live keys sharing a name, the older holds it
    /// and the pair is logged.
    pub async fn index_names(&self) {
        if self.redis.is_none() && self.store.is_none() {
            return;
        }
        let records = match self.list().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot index the admin-made keys' names now (the next start does)");
                return;
            }
        };
        for rec in records.iter().filter(|r| !r.revoked) {
            match self.save_with_index(rec, None, None, Claim::Keep).await {
                Ok(None) => {}
                Ok(Some(holder)) => tracing::warn!(
                    key_id = %rec.id, holder = %holder, name = %rec.name,
                    "two live admin-made keys share a name (created before names were unique); both keep working: rename one (PATCH /admin/keys/{{id}}) or revoke it"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot index the admin-made keys' names now (the next start does)");
                    return;
                }
            }
        }
    }

    /// The live admin-made keys' names, each with its key's id.
    pub async fn live_names(&self) -> Result<HashMap<String, String>, Error> {
        Ok(self
            .list()
            .await?
            .into_iter()
            .filter(|r| !r.revoked)
            .map(|r| (r.name, r.id))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyChange;
    use crate::store::Store;

    fn change(json: &str) -> KeyChange {
        serde_json::from_str(json).unwrap()
    }

    fn code(e: &Error) -> Option<&'static str> {
        match e {
            Error::Conflict { code, .. } => *code,
            _ => None,
        }
    }

    #[tokio::test]
    async fn names_are_unique_among_live_keys_in_the_embedded_store() {
        let dir = tempfile::tempdir().unwrap();
        let ks = KeyStore::new(None, Some(Store::open(dir.path()).unwrap()));
        let file = Auth::default();
        let (a, _) = ks.create(change(r#"{"name":"n"}"#), &file).await.unwrap();
        let e = ks
            .create(change(r#"{"name":"n"}"#), &file)
            .await
            .unwrap_err();
        assert_eq!(code(&e), Some("key_name_taken"));
        assert!(e.to_string().contains(&a.id), "{e}");
        let (b, _) = ks.create(change(r#"{"name":"m"}"#), &file).await.unwrap();
        let e = ks
            .update(&b.id, change(r#"{"name":"n"}"#), &file)
            .await
            .unwrap_err();
        assert_eq!(code(&e), Some("key_name_taken"));
        assert_eq!(ks.get(&b.id).await.unwrap().unwrap().name, "m");
        ks.revoke(&a.id).await.unwrap();
        ks.update(&b.id, change(r#"{"name":"n"}"#), &file)
            .await
            .unwrap();
        // "m" was given up by the rename.
        ks.create(change(r#"{"name":"m"}"#), &file).await.unwrap();
    }

    #[tokio::test]
    async fn legacy_duplicates_are_indexed_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // Two live records sharing a name, without an index entry (an earlier version's data).
        let mut rows = Vec::new();
        for (id, at) in [("key_new", 2), ("key_old", 1)] {
            let rec = serde_json::json!({"id": id, "name": "twin", "key_prefix": "x",
                "key_sha256": id, "models": ["*"], "rpm": null, "tpm": null, "budget_usd": null,
                "budget_period": null, "expires_at": null, "created_at": at});
            rows.push((format!("id:{id}"), Some(rec.to_string())));
        }
        store.put_many(Table::Keys, rows).await.unwrap();
        let ks = KeyStore::new(None, Some(store.clone()));
        let file = Auth::default();
        // Unindexed, a third "twin" would pass; indexed, the oldest holds the name.
        ks.index_names().await;
        let holder = store.get(Table::Keys, "name:twin".into()).await.unwrap();
        assert_eq!(holder.as_deref(), Some("key_old"));
        let e = ks
            .create(change(r#"{"name":"twin"}"#), &file)
            .await
            .unwrap_err();
        assert_eq!(code(&e), Some("key_name_taken"));
        // The twin that does not hold the name can still change its limits.
        ks.update("key_new", change(r#"{"rpm":3}"#), &file)
            .await
            .unwrap();
    }

    #[test]
    fn file_clashes_name_the_key_and_the_admin_key() {
        let cfg: AuthConfig = serde_json::from_value(serde_json::json!({
            "keys": [{"name": "a", "key": "sk-1"}, {"name": "b", "key": "sk-2"}]
        }))
        .unwrap();
        let admin = HashMap::from([("b".to_owned(), "key_x".to_owned())]);
        let out = file_clashes(Some(&cfg), &admin);
        assert_eq!(out.len(), 1);
        assert!(out[0].starts_with("auth.keys[1].name: \"b\"") && out[0].contains("key_x"));
        assert!(file_clashes(None, &admin).is_empty());
    }
}
