//! LiteLLM proxy `config.yaml` -> our configuration (`ai-gateway import litellm PATH`).
//!
//! `model_list` becomes providers and models ([`models`]); `litellm_settings` and
//! `router_settings` (the latter wins where both set a thing, as in LiteLLM) become the models'
//! routing, retries, timeouts and fallbacks, `resilience`, `cache` and `state.redis_url`;
//! `general_settings.master_key` becomes a static client key (so LiteLLM's clients keep working)
//! and `general_settings.max_request_size_mb` the body limit. Every other setting gets a note
//! naming its key path and why it was not carried over. `os.environ/VAR` becomes `${VAR}`. What
//! maps to what is written down in `docs/migrating-from-litellm.md`.

mod models;
mod providers;
mod settings;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::time::SystemTime;

use saphyr::Yaml;

use super::emit::{self, Map, Value};
use super::source;
use super::{ImportError, Imported, Notes};

/// Printed after the notes (and written at the end of the file): what no config file can say.
pub const VIRTUAL_KEYS_NOTE: &str = "LiteLLM's virtual keys (made with /key/generate) live in its database, which this import cannot read: create them again with the admin API (POST /admin/keys)";

/// The top-level sections of a LiteLLM proxy configuration.
const SECTIONS: [&str; 4] = [
    "model_list",
    "litellm_settings",
    "router_settings",
    "general_settings",
];

/// Reads and converts the LiteLLM configuration at `path`.
pub fn import_file(path: &Path, now: SystemTime) -> Result<Imported, ImportError> {
    let text = std::fs::read_to_string(path)?;
    convert(&text, &path.display().to_string(), now)
}

/// Converts a LiteLLM configuration's text; `source_name` and `now` go in the header comment.
pub fn convert(text: &str, source_name: &str, now: SystemTime) -> Result<Imported, ImportError> {
    let root = source::load(text)
        .map_err(ImportError::Yaml)?
        .ok_or_else(|| ImportError::NotLitellm("the file is empty".to_owned()))?;
    let top = source::entries(&root).ok_or_else(|| {
        ImportError::NotLitellm(format!(
            "its top level is {}, not a mapping with model_list, litellm_settings, router_settings or general_settings",
            source::describe(&root)
        ))
    })?;
    if !top.iter().any(|(k, _)| SECTIONS.contains(k)) {
        let ours = top
            .iter()
            .any(|(k, _)| matches!(*k, "providers" | "models"));
        return Err(ImportError::NotLitellm(if ours {
            "it has providers: and models:, so it looks like an ai-gateway configuration already (check it with `ai-gateway check --config FILE`)".to_owned()
        } else {
            "it has none of model_list, litellm_settings, router_settings and general_settings"
                .to_owned()
        }));
    }
    let section = |name: &str| top.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    let model_list = match section("model_list") {
        None => &[][..],
        Some(n) if source::text(n).is_none() && source::items(n).is_none() => &[][..],
        Some(n) => source::items(n).ok_or_else(|| {
            ImportError::NotLitellm(format!(
                "model_list is {}, not a list of models",
                source::describe(n)
            ))
        })?,
    };

    let mut notes = Notes::default();
    let mut st = settings::Settings::default();
    for (key, value) in &top {
        match *key {
            "model_list" => {}
            "litellm_settings" | "router_settings" | "general_settings" => {
                st.section(key, value, &mut notes);
            }
            "environment_variables" => environment_variables(value, &mut notes),
            "credential_list" => {} // read by `models` where an entry names a credential
            other => notes.skip(other, top_level_reason(other)),
        }
    }
    let mut list = models::ModelList::new(section("credential_list"), &mut notes);
    for (i, entry) in model_list.iter().enumerate() {
        list.entry(i, entry, &mut notes);
    }
    list.finish(&st, &mut notes);
    if model_list.is_empty() {
        notes.note(
            "model_list",
            "no models: LiteLLM may keep them in its database (store_model_in_db); add them under models:",
        );
    }

    let mut root_out = Map::default();
    st.render_head(&mut root_out, &mut notes);
    let (providers, models_out) = list.render(&st);
    if !providers.is_empty() {
        root_out.put("providers", Value::List(providers));
    }
    root_out.put("models", Value::List(models_out));
    st.render_tail(&mut root_out, &mut notes);

    // The notes in the order of the file's sections (the settings were read first).
    let rank = |path: &str| {
        let head = path.split(['.', '[']).next().unwrap_or(path);
        top.iter()
            .position(|(k, _)| *k == head)
            .unwrap_or(usize::MAX)
    };
    notes.0.sort_by_key(|n| rank(&n.path));
    let header = vec![
        format!(
            "ai-gateway configuration generated by `ai-gateway import litellm` from {source_name}"
        ),
        format!(
            "on {}. Check it with `ai-gateway check --config FILE`.",
            humantime::format_rfc3339_seconds(now)
        ),
        "Models keep the order of LiteLLM's model_list; each distinct provider, endpoint and key is one provider.".to_owned(),
    ];
    let mut footer = Vec::new();
    if !notes.0.is_empty() {
        footer.push("Not carried over, or carried over with a caveat (also printed when this file was made):".to_owned());
        footer.extend(notes.0.iter().map(|n| format!("- {n}")));
    }
    footer.push(VIRTUAL_KEYS_NOTE.to_owned());
    Ok(Imported {
        yaml: emit::document(&header, &root_out, &footer),
        notes: notes.0,
    })
}

/// Why a top-level key other than the four sections is not carried over.
fn top_level_reason(key: &str) -> &'static str {
    match key {
        "include" => {
            "LiteLLM's include: merge the included files into this one, then import it again"
        }
        "callback_settings" => {
            "the gateway exports OpenTelemetry traces and Prometheus metrics itself (telemetry:, /metrics)"
        }
        "guardrails" => {
            "LiteLLM's guardrail integrations have no counterpart here (see guardrails: in the configuration)"
        }
        _ => "the gateway has no such section",
    }
}

/// `environment_variables`: LiteLLM sets them in its own process; the gateway reads `${VAR}`
/// from the environment it is started in.
fn environment_variables(node: &Yaml<'_>, notes: &mut Notes) {
    for (name, _) in source::entries(node).unwrap_or_default() {
        notes.skip(
            format!("environment_variables.{name}"),
            format!("the gateway does not set variables; export {name} in its environment before it starts"),
        );
    }
}

/// A string setting in our syntax: `os.environ/VAR` -> `${VAR}`; any other text is kept with
/// `${` written as `$${` (so it stays literal). A literal `secret` is kept with a note.
fn string(node: &Yaml<'_>, path: &str, secret: bool, notes: &mut Notes) -> Option<String> {
    let Some(raw) = source::text(node) else {
        if source::items(node).is_some() || source::entries(node).is_some() {
            notes.skip(
                path,
                format!("expected a string, found {}", source::describe(node)),
            );
        }
        return None;
    };
    if let Some(var) = raw.strip_prefix("os.environ/") {
        let var = var.trim();
        let mut chars = var.chars();
        let valid = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if valid {
            return Some(format!("${{{var}}}"));
        }
        notes.skip(
            path,
            format!("`{var}` is not a variable name that `${{…}}` can hold (letters, digits, _)"),
        );
        return None;
    }
    if secret && !raw.is_empty() {
        notes.note(
            path,
            "kept as written, so this file now holds a secret: move it to an environment variable and write \"${VAR}\"",
        );
    }
    Some(raw.replace("${", "$${"))
}

/// Seconds as one of our durations: `30s`, `1500ms`.
fn duration(secs: f64) -> String {
    let ms = (secs * 1000.0).round().max(0.0) as u64;
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// A number of seconds from a setting (`600`, `0.5`, `"30"`), with a note when it is not one.
fn seconds(node: &Yaml<'_>, path: &str, notes: &mut Notes) -> Option<f64> {
    let s = source::number(node).filter(|s| *s > 0.0);
    if s.is_none() {
        notes.skip(path, "expected a number of seconds above 0");
    }
    s
}

/// A whole number of 0 or more from a setting, with a note when it is not one.
fn whole(node: &Yaml<'_>, path: &str, notes: &mut Notes) -> Option<u64> {
    let n = source::count(node);
    if n.is_none() {
        notes.skip(path, "expected a whole number, 0 or more");
    }
    n
}
