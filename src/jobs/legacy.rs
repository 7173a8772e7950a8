//! One-time upgrades of job data written by earlier versions: idempotency entries were scoped
//! by the key's *name*; they are rescoped by the id of the key that made the job (the record's
//! `caller_id`), so a new key given an old key's name never replays its jobs. Records of file
//! keys carry their former id `cfg_<name>`, which the key still owns ([`crate::auth::KeyEntry::owns`]);
//! the embedded store also rewrites it in the records it rescopes.

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures_util::StreamExt;
use redb::{ReadableTable, WriteTransaction};

use super::Job;
use super::embedded::{IDEM, META, RECORDS, read_job, scoped_idem};
use super::nats::{idem_key, record_key};
use crate::config::Config;

/// Idempotency entries were scoped by the key's name before; once (then `idem_scope` is set in
/// `meta`), rescope each by the id of the key whose job it names, the record's `caller_id` (a
/// file key's former `cfg_<name>` id becomes its id now, in the record too). How many.
pub(super) fn rescope_embedded(
    txn: &WriteTransaction,
    auth: &crate::auth::Auth,
) -> Result<usize, redb::Error> {
    let mut meta = txn.open_table(META)?;
    if meta.get("idem_scope")?.is_some() {
        return Ok(0);
    }
    let mut records = txn.open_table(RECORDS)?;
    let mut idem = txn.open_table(IDEM)?;
    let entries: Vec<(String, String)> = idem
        .iter()?
        .filter_map(Result::ok)
        .map(|(k, v)| (k.value().to_owned(), v.value().to_owned()))
        .collect();
    idem.retain(|_, _| false)?;
    let mut n = 0;
    for (_, id) in &entries {
        let Some(mut job) = read_job(&records, id)? else {
            continue;
        };
        let Some(key) = job.idempotency_key.clone() else {
            continue;
        };
        if let Some(e) = auth.entry_by_id(&job.caller_id)
            && e.id != job.caller_id
        {
            job.caller_id = e.id.clone();
            records.insert(id.as_str(), job.to_bytes().as_ref())?;
        }
        idem.insert(scoped_idem(&job.caller_id, &key).as_str(), id.as_str())?;
        n += 1;
    }
    meta.insert("idem_scope", b"id".as_slice())?;
    Ok(n)
}

/// Idempotency entries were scoped by the key's name before; once per bucket (then marked
/// `idem_scope` in `aigw_meta`), each is copied under the id of the key whose job it names (the
/// record says; a file key's former `cfg_<name>` id maps to its id now). The old entries expire
/// with their records.
pub(super) async fn rescope_nats(
    records: &kv::Store,
    meta: &kv::Store,
    cfg: &Config,
) -> Result<usize, String> {
    const MARK: &str = "idem_scope";
    if meta.get(MARK).await.map_err(|e| e.to_string())?.is_some() {
        return Ok(0);
    }
    let auth = crate::auth::Auth::from_config(cfg.auth.as_ref())?;
    let mut keys = records.keys().await.map_err(|e| e.to_string())?;
    let mut n = 0;
    while let Some(k) = keys.next().await {
        let Some(k) = k.ok().filter(|k| k.starts_with("i.")) else {
            continue;
        };
        let Some(id) = records.get(k.as_str()).await.map_err(|e| e.to_string())? else {
            continue;
        };
        let id = String::from_utf8_lossy(&id).into_owned();
        let record = records
            .get(record_key(&id))
            .await
            .map_err(|e| e.to_string())?;
        let Some(job) = record.and_then(|b| Job::from_slice(&b)) else {
            continue;
        };
        let Some(ikey) = &job.idempotency_key else {
            continue;
        };
        let owner = auth
            .entry_by_id(&job.caller_id)
            .map_or_else(|| job.caller_id.clone(), |e| e.id.clone());
        let scoped = idem_key(&owner, ikey);
        if scoped != k {
            match records.create(&scoped, Bytes::from(id)).await {
                Ok(_) => n += 1,
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    meta.put(MARK, Bytes::from_static(b"id"))
        .await
        .map_err(|e| e.to_string())?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::ReadableDatabase;

    #[test]
    fn name_scoped_idempotency_entries_are_rescoped_once_by_key_id() {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("jobs.redb")).unwrap();
        let cfg: crate::config::AuthConfig = serde_json::from_value(serde_json::json!({
            "keys": [{"name": "app", "key": "sk-legacy-app"}]
        }))
        .unwrap();
        let auth = crate::auth::Auth::from_config(Some(&cfg)).unwrap();
        let new_id = crate::auth::file_key_id(&crate::auth::hash_key("sk-legacy-app"));
        let job = |id: &str, caller_id: &str| {
            serde_json::json!({"id": id, "status": "succeeded", "endpoint": "/v1/chat/completions",
                "model": "m", "caller": "app", "caller_id": caller_id, "request_id": "r",
                "created_at": 1, "idempotency_key": "k"})
            .to_string()
        };
        {
            // An earlier version's data: entries scoped by the key's name.
            let txn = db.begin_write().unwrap();
            {
                let mut records = txn.open_table(RECORDS).unwrap();
                records
                    .insert("job_file", job("job_file", "cfg_app").as_bytes())
                    .unwrap();
                records
                    .insert("job_admin", job("job_admin", "key_abc").as_bytes())
                    .unwrap();
                let mut idem = txn.open_table(IDEM).unwrap();
                idem.insert("app\u{0}k", "job_file").unwrap();
                idem.insert("made\u{0}k", "job_admin").unwrap();
                idem.insert("gone\u{0}k", "job_gone").unwrap();
            }
            txn.commit().unwrap();
        }
        let txn = db.begin_write().unwrap();
        assert_eq!(rescope_embedded(&txn, &auth).unwrap(), 2);
        assert_eq!(rescope_embedded(&txn, &auth).unwrap(), 0, "once");
        txn.commit().unwrap();
        let txn = db.begin_read().unwrap();
        let idem = txn.open_table(IDEM).unwrap();
        let entries: Vec<(String, String)> = idem
            .iter()
            .unwrap()
            .map(|e| {
                let (k, v) = e.unwrap();
                (k.value().to_owned(), v.value().to_owned())
            })
            .collect();
        let mut want = vec![
            (scoped_idem(&new_id, "k"), "job_file".to_owned()),
            (scoped_idem("key_abc", "k"), "job_admin".to_owned()),
        ];
        want.sort();
        assert_eq!(entries, want);
        let records = txn.open_table(RECORDS).unwrap();
        assert_eq!(
            read_job(&records, "job_file").unwrap().unwrap().caller_id,
            new_id
        );
    }
}
