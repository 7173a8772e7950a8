//! The built-in price list: `src/providers/prices.json`, compiled into the binary, with the date its
//! prices were taken. A deployment that gives no price (neither `input_cost_per_mtok` nor
//! `output_cost_per_mtok`) gets the list's price of its provider type and upstream model, for
//! `cost` routing, spend and budgets. The file says how names match.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::Deserialize;

use crate::config::ProviderType;

const DATA: &str = include_str!("prices.json");

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    /// Cached input (prompt-cache reads), where the provider has a price for it.
    pub cached_input: Option<f64>,
}

#[derive(Deserialize, Default)]
struct List {
    date: String,
    providers: HashMap<String, HashMap<String, Vec<f64>>>,
}

static LIST: LazyLock<List> = LazyLock::new(|| {
    serde_json::from_str(DATA).unwrap_or_else(|e| {
        // A unit test parses the file, so this is not reached in a built binary.
        tracing::error!(error = %e, "src/providers/prices.json does not parse; no built-in prices");
        List::default()
    })
});

/// The date the list's prices were taken (`YYYY-MM-DD`).
pub fn date() -> &'static str {
    &LIST.date
}

/// The list's price of `model` on a provider of type `kind`: the entry that is the whole name,
/// else the longest entry the name starts with followed by `-`, `:`, `@` or `.`.
pub fn lookup(kind: ProviderType, model: &str) -> Option<Price> {
    let table = LIST.providers.get(kind.as_str())?;
    let mut name = model.strip_prefix("models/").unwrap_or(model);
    if kind == ProviderType::Bedrock {
        // An ARN's last part, and the cross-region inference profiles' prefix.
        name = name.rsplit('/').next().unwrap_or(name);
        for p in [
            "us.", "eu.", "apac.", "global.", "jp.", "au.", "ca.", "us-gov.",
        ] {
            if let Some(rest) = name.strip_prefix(p) {
                name = rest;
                break;
            }
        }
    }
    let entry = table.get(name).or_else(|| {
        table
            .iter()
            .filter(|(k, _)| {
                name.len() > k.len()
                    && name.starts_with(k.as_str())
                    && matches!(name.as_bytes()[k.len()], b'-' | b':' | b'@' | b'.')
            })
            .max_by_key(|(k, _)| k.len())
            .map(|(_, v)| v)
    })?;
    match entry.as_slice() {
        [i, o] => Some(Price {
            input: *i,
            output: *o,
            cached_input: None,
        }),
        [i, o, c] => Some(Price {
            input: *i,
            output: *o,
            cached_input: Some(*c),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_parses_with_a_date_and_well_formed_prices() {
        let list: List = serde_json::from_str(DATA).expect("prices.json parses");
        assert_eq!(list.date.len(), 10, "YYYY-MM-DD");
        for (provider, models) in &list.providers {
            let kind: ProviderType =
                serde_json::from_value(serde_json::Value::String(provider.clone()))
                    .unwrap_or_else(|_| panic!("{provider} is a provider type"));
            assert_eq!(kind.as_str(), provider);
            for (model, p) in models {
                assert!(
                    (2..=3).contains(&p.len()) && p.iter().all(|v| v.is_finite() && *v >= 0.0),
                    "{provider}/{model}: {p:?}"
                );
            }
        }
        // Every provider type that serves models (not the mock, not the local servers).
        for kind in [
            "openai",
            "anthropic",
            "gemini",
            "bedrock",
            "deepseek",
            "qwen",
            "zhipu",
            "moonshot",
            "doubao",
            "hunyuan",
            "qianfan",
            "mistral",
            "groq",
            "together",
            "fireworks",
            "xai",
            "cohere",
        ] {
            assert!(list.providers.contains_key(kind), "{kind}");
        }
    }

    #[test]
    fn names_match_their_family() {
        let p = lookup(ProviderType::Openai, "gpt-4o-mini").expect("listed");
        assert_eq!(
            (p.input, p.output, p.cached_input),
            (0.15, 0.6, Some(0.075))
        );
        // Dated versions match their family; the longest entry wins.
        assert_eq!(
            lookup(ProviderType::Openai, "gpt-4o-mini-2024-07-18"),
            Some(p)
        );
        assert_eq!(
            lookup(ProviderType::Openai, "gpt-4o-2024-08-06").map(|p| p.input),
            Some(2.5)
        );
        assert_eq!(
            lookup(
                ProviderType::Bedrock,
                "us.anthropic.claude-3-5-haiku-20241022-v1:0"
            )
            .map(|p| p.output),
            Some(4.0)
        );
        assert_eq!(
            lookup(
                ProviderType::Gemini,
                "models/gemini-2.5-flash-preview-05-20"
            )
            .map(|p| p.input),
            Some(0.3)
        );
        // Cached-input prices where the provider bills cache hits lower.
        assert_eq!(
            lookup(ProviderType::Qwen, "qwen-plus-latest").and_then(|p| p.cached_input),
            Some(0.08)
        );
        assert_eq!(
            lookup(ProviderType::Gemini, "gemini-2.5-flash").and_then(|p| p.cached_input),
            Some(0.075)
        );
        assert_eq!(
            lookup(ProviderType::Openai, "gpt-3.5-turbo").and_then(|p| p.cached_input),
            None
        );
        assert_eq!(lookup(ProviderType::Openai, "gpt-4ox"), None);
        assert_eq!(lookup(ProviderType::Mock, "mock"), None);
        assert_eq!(
            lookup(ProviderType::Deepseek, "deepseek-chat").map(|p| p.output),
            Some(0.42)
        );
    }
}
