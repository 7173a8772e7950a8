//! The webhook signing secret when `jobs.webhook.secret` is unset: generated once, kept where
//! only the gateway's user can read it, and never written to a log (logs say where it is).
//!
//! - Embedded jobs: the file `DATA_DIR/webhook_secret` (mode 0600, `whsec_…` on one line). A
//!   secret that an earlier version kept inside `jobs.redb` moves there at start (same secret:
//!   receivers keep verifying).
//! - NATS (`state.nats_url`): the KV bucket `aigw_meta`, key `webhook_secret`, shared by every
//!   replica.
//!
//! `ai-gateway webhook-secret` prints the secret that signs ([`lookup`]): the configured one, or
//! the stored one, read from the file or from NATS (so it works while the gateway runs).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use redb::ReadableDatabase;

use super::embedded::{Embedded, META};
use crate::config::Config;
use crate::webhooks::{decode_secret, encode_secret, generate_secret};

/// The key in the NATS KV bucket and in the old embedded `meta` table.
pub const KEY: &str = "webhook_secret";

/// Where the embedded mode keeps the secret.
pub fn file_path(cfg: &Config) -> PathBuf {
    Path::new(&cfg.state.data_dir).join(KEY)
}

/// The secret in `path`, if the file exists; its mode tightened to 0600 if it was wider.
fn read_file(path: &Path) -> Result<Option<Vec<u8>>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| format!("{}: cannot make it private (0600): {e}", path.display()))?;
            tracing::warn!(path = %path.display(), "the webhook secret file was readable by other users; its mode is now 0600");
        }
    }
    decode_secret(text.trim()).map(Some).map_err(|_| {
        format!(
            "{}: not a whsec_ secret; restore it, or delete it to have a new one generated (webhook receivers then need the new one)",
            path.display()
        )
    })
}

/// Write a new secret file readable only by this user (never replacing one).
fn write_file(path: &Path, key: &[u8]) -> Result<(), String> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| format!("{}: cannot create it: {e}", path.display()))?;
    writeln!(f, "{}", encode_secret(key))
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: cannot write it: {e}", path.display()))
}

/// The embedded mode's secret: the file's; else the one an earlier version kept in the job
/// store, moved to the file; else a new one. Logs where it is, never what it is.
pub async fn embedded(cfg: &Config, store: &Embedded) -> Result<Vec<u8>, String> {
    let path = file_path(cfg);
    let p = path.clone();
    if let Some(key) = blocking(move || read_file(&p)).await? {
        tracing::info!(path = %path.display(), "jobs.webhook.secret is not set: signing webhooks with the secret stored in this file (`ai-gateway webhook-secret` prints it)");
        return Ok(key);
    }
    let (key, moved) = match store.legacy_webhook_secret().await? {
        Some(k) => (k, true),
        None => (generate_secret(), false),
    };
    let (p, k) = (path.clone(), key.clone());
    blocking(move || write_file(&p, &k)).await?;
    if moved {
        store.forget_legacy_webhook_secret().await?;
        tracing::info!(path = %path.display(), "jobs.webhook.secret is not set: the webhook secret kept in the job store moved to this file, readable only by this user (`ai-gateway webhook-secret` prints it)");
    } else {
        tracing::warn!(path = %path.display(), "jobs.webhook.secret is not set: generated a webhook signing secret and stored it in this file, readable only by this user; give it to webhook receivers (`ai-gateway webhook-secret` prints it)");
    }
    Ok(key)
}

/// Where the NATS mode keeps it, for the log.
pub fn log_nats(created: bool) {
    if created {
        tracing::warn!(
            "jobs.webhook.secret is not set: generated a webhook signing secret and stored it in the NATS KV bucket aigw_meta (key webhook_secret); give it to webhook receivers (`ai-gateway webhook-secret` prints it)"
        );
    } else {
        tracing::info!(
            "jobs.webhook.secret is not set: signing webhooks with the secret stored in the NATS KV bucket aigw_meta (key webhook_secret)"
        );
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("webhook secret: {e}"))?
}

/// The secret that signs webhooks under `cfg`, as `whsec_…`: `jobs.webhook.secret`, else the
/// stored one (NATS KV, or the file; the job store of an earlier version while it has not
/// started since). For `ai-gateway webhook-secret`.
pub async fn lookup(cfg: &Config) -> Result<String, String> {
    if let Some(s) = &cfg.jobs.webhook.secret {
        decode_secret(s)?;
        return Ok(s.clone());
    }
    let key = match &cfg.state.nats_url {
        Some(_) => from_nats(cfg).await?,
        None => {
            let path = file_path(cfg);
            let jobs = Path::new(&cfg.state.data_dir).join("jobs.redb");
            blocking(move || match read_file(&path)? {
                Some(k) => Ok(Some(k)),
                None => from_old_job_store(&jobs),
            })
            .await?
        }
    };
    key.map(|k| encode_secret(&k)).ok_or_else(|| {
        "no webhook secret yet: the gateway generates one when it first starts with jobs.webhook.secret unset".to_owned()
    })
}

async fn from_nats(cfg: &Config) -> Result<Option<Vec<u8>>, String> {
    let options = crate::state::nats::options(&cfg.state, "ai-gateway webhook-secret")
        .await?
        .connection_timeout(Duration::from_secs(5));
    let client = crate::state::nats::connect(&cfg.state, options).await?;
    let js = async_nats::jetstream::new(client);
    let meta = match js.get_key_value("aigw_meta").await {
        Ok(m) => m,
        Err(_) => return Ok(None),
    };
    let v = tokio::time::timeout(Duration::from_secs(5), meta.get(KEY))
        .await
        .map_err(|_| "NATS: timed out reading the webhook secret".to_owned())?
        .map_err(|e| format!("NATS: {e}"))?;
    Ok(v.map(|b| b.to_vec()))
}

/// The secret as an earlier version kept it, in `jobs.redb` (readable only while no gateway has
/// the store open).
fn from_old_job_store(path: &Path) -> Result<Option<Vec<u8>>, String> {
    if !path.exists() {
        return Ok(None);
    }
    let db = redb::Database::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let Ok(meta) = txn.open_table(META) else {
        return Ok(None);
    };
    Ok(meta
        .get(KEY)
        .map_err(|e| e.to_string())?
        .map(|v| v.value().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_secret_kept_in_the_job_store_moves_to_a_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::default();
        cfg.state.data_dir = dir.path().to_string_lossy().into_owned();
        let old = generate_secret();
        {
            // Where an earlier version kept it.
            let db = redb::Database::create(dir.path().join("jobs.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(KEY, old.as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        let store = Embedded::open(&cfg).await.unwrap();
        assert_eq!(
            embedded(&cfg, &store).await.unwrap(),
            old,
            "the same secret"
        );
        assert_eq!(store.legacy_webhook_secret().await.unwrap(), None);
        let path = file_path(&cfg);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(lookup(&cfg).await.unwrap(), encode_secret(&old));
        // Kept: the next start reads the file.
        assert_eq!(embedded(&cfg, &store).await.unwrap(), old);
        // A file others could read is made private.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert_eq!(embedded(&cfg, &store).await.unwrap(), old);
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
