//! `ai-gateway keys create|list|revoke`: manage a running gateway's keys through its admin API
//! (`/admin/keys`), with the gateway's URL and master key from flags or the environment
//! (`AI_GATEWAY_URL`, `GATEWAY_MASTER_KEY`). A new key is printed once, with an
//! `export OPENAI_API_KEY=…` line.

use std::time::Duration;

use serde_json::{Value, json};

/// Where the gateway is and how to sign in.
pub struct Target {
    pub url: String,
    pub master_key: String,
}

/// A new key's settings (all but the name optional).
#[derive(Default)]
pub struct NewKey {
    pub name: String,
    pub models: Vec<String>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub budget_usd: Option<f64>,
    pub budget_period: Option<String>,
    pub expires_at: Option<String>,
}

/// What the command prints, or why it failed (a message for stderr).
pub type Outcome = Result<String, String>;

fn client() -> Result<reqwest::Client, String> {
    crate::providers::install_crypto();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .user_agent(concat!("ai-gateway/", env!("CARGO_PKG_VERSION"), " (keys)"))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

async fn call(
    t: &Target,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let base = t.url.trim_end_matches('/');
    let url = format!("{base}{path}");
    let mut req = client()?.request(method, &url).bearer_auth(&t.master_key);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("cannot reach the gateway at {base}: {e}"))?;
    let status = resp.status();
    let text = resp
        .text()
        .await
        .map_err(|e| format!("the gateway's answer broke off: {e}"))?;
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(v);
    }
    let msg = v
        .pointer("/error/message")
        .and_then(Value::as_str)
        .map_or_else(|| text.chars().take(300).collect(), str::to_owned);
    Err(match status.as_u16() {
        401 => format!(
            "the gateway refused the master key (401): {msg}; set GATEWAY_MASTER_KEY or --master-key"
        ),
        404 if path == "/admin/keys" => {
            "the gateway has no admin API (no master key configured: auth.master_key)".to_owned()
        }
        s => format!("the gateway answered {s}: {msg}"),
    })
}

/// `keys create NAME …`: the key record's essentials, the key once, and the export line.
pub async fn create(t: &Target, k: NewKey) -> Outcome {
    let mut body = json!({"name": k.name});
    if !k.models.is_empty() {
        body["models"] = json!(k.models);
    }
    for (f, v) in [("rpm", k.rpm), ("tpm", k.tpm)] {
        if let Some(v) = v {
            body[f] = json!(v);
        }
    }
    if let Some(b) = k.budget_usd {
        body["budget_usd"] = json!(b);
    }
    if let Some(p) = k.budget_period {
        body["budget_period"] = json!(p);
    }
    if let Some(e) = k.expires_at {
        body["expires_at"] = json!(e);
    }
    let v = call(t, reqwest::Method::POST, "/admin/keys", Some(body)).await?;
    let key = v
        .get("key")
        .and_then(Value::as_str)
        .ok_or("the gateway's answer has no key")?;
    let id = v.get("id").and_then(Value::as_str).unwrap_or("");
    let name = v.get("name").and_then(Value::as_str).unwrap_or("");
    let base = t.url.trim_end_matches('/');
    Ok(format!(
        "Created key {name} (id {id}). It is shown this once; store it now.\n\
         export OPENAI_API_KEY={key}\n\
         export OPENAI_BASE_URL={base}/v1\n"
    ))
}

/// `keys list`: one line per key.
pub async fn list(t: &Target) -> Outcome {
    let v = call(t, reqwest::Method::GET, "/admin/keys", None).await?;
    let data = v
        .get("data")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut out = format!(
        "{:<28} {:<24} {:<7} {:>8} {:>10} {:>12} {:>10}\n",
        "ID", "NAME", "SOURCE", "RPM", "TPM", "BUDGET_USD", "SPEND_USD"
    );
    for k in &data {
        let s = |f: &str| match k.get(f) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => "-".to_owned(),
            Some(v) => v.to_string(),
        };
        let state = if k.get("revoked").and_then(Value::as_bool) == Some(true) {
            " (revoked)"
        } else {
            ""
        };
        out.push_str(&format!(
            "{:<28} {:<24} {:<7} {:>8} {:>10} {:>12} {:>10}{state}\n",
            s("id"),
            s("name"),
            s("source"),
            s("rpm"),
            s("tpm"),
            s("budget_usd"),
            k.get("spend_usd")
                .and_then(Value::as_f64)
                .map_or_else(|| "-".to_owned(), |f| format!("{f:.6}")),
        ));
    }
    if data.is_empty() {
        out.push_str("(no keys)\n");
    }
    Ok(out)
}

/// `keys revoke ID|NAME`: a name is looked up among the live admin-made keys.
pub async fn revoke(t: &Target, which: &str) -> Outcome {
    let id = if which.starts_with("key_") {
        which.to_owned()
    } else {
        let v = call(t, reqwest::Method::GET, "/admin/keys", None).await?;
        let found = v
            .get("data")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|k| {
                k.get("name").and_then(Value::as_str) == Some(which)
                    && k.get("revoked").and_then(Value::as_bool) != Some(true)
            })
            .cloned();
        match found {
            Some(k) if k.get("source").and_then(Value::as_str) == Some("config") => {
                return Err(format!(
                    "{which} is a key of the configuration file; remove it there and reload"
                ));
            }
            Some(k) => k
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            None => return Err(format!("no live key named {which:?}")),
        }
    };
    let path = format!(
        "/admin/keys/{}",
        percent_encoding::utf8_percent_encode(&id, percent_encoding::NON_ALPHANUMERIC)
    );
    call(t, reqwest::Method::DELETE, &path, None).await?;
    Ok(format!("Revoked key {id}.\n"))
}
