//! `model_list`: each entry is one deployment. Its `litellm_params.model` (`provider/name`) names a
//! LiteLLM provider, which becomes one of our provider types (or a note when we have none); one
//! provider is made per distinct type, endpoint, key and region, named after its type (`openai`,
//! `azure-<host>`, `bedrock`, …). Entries sharing a `model_name` become one model with several
//! deployments, as LiteLLM load-balances them. `PREFIX/*` and `*` become wildcard models; then
//! fallbacks and `model_group_alias` are applied.

use saphyr::Yaml;

use super::providers::{Providers, info_reason, param_reason, resolve};
use super::settings::{Settings, Strategy};
use super::{duration, whole};
use crate::import::emit::{Map, Value};
use crate::import::{Notes, source};

/// `fallbacks: [{model: [other, …]}, …]`, one rule per model named.
#[derive(Debug, Clone)]
pub(super) struct FallbackRule {
    path: String,
    model: String,
    targets: Vec<String>,
}

/// Reads LiteLLM's fallbacks: a list of one-key mappings (or one mapping) from a model name to
/// a list of model names (or one name).
pub(super) fn fallback_rules(v: &Yaml<'_>, path: &str, n: &mut Notes) -> Vec<FallbackRule> {
    let mut out = Vec::new();
    let mut read = |map: &Yaml<'_>, at: &str, n: &mut Notes| {
        for (model, targets) in source::entries(map).unwrap_or_default() {
            let at = format!("{at}.{model}");
            out.push(FallbackRule {
                targets: names(targets, &at, n),
                path: at,
                model: model.to_owned(),
            });
        }
    };
    match source::items(v) {
        Some(list) => {
            for (i, item) in list.iter().enumerate() {
                read(item, &format!("{path}[{i}]"), n);
            }
        }
        None if source::entries(v).is_some() => read(v, path, n),
        None => n.skip(path, "expected a list of {model: [fallbacks]}"),
    }
    out
}

/// A list of strings, or one string.
pub(super) fn names(v: &Yaml<'_>, path: &str, n: &mut Notes) -> Vec<String> {
    if let Some(t) = source::text(v) {
        return vec![t.to_owned()];
    }
    let Some(list) = source::items(v) else {
        n.skip(path, "expected a list of names");
        return Vec::new();
    };
    list.iter()
        .filter_map(|i| source::text(i).map(str::to_owned))
        .collect()
}

#[derive(Debug, Clone)]
struct Deployment {
    provider: usize,
    model: String,
    input_cost: Option<f64>,
    output_cost: Option<f64>,
    weight: Option<f64>,
    order: Option<i64>,
    rpm: Option<u64>,
    tpm: Option<u64>,
}

#[derive(Debug, Clone)]
struct Model {
    name: String,
    deployments: Vec<Deployment>,
    timeout: Option<f64>,
    retries: Option<u64>,
    fallbacks: Vec<String>,
    comment: Option<String>,
    wildcard: bool,
}

/// The providers and models being built, in file order.
pub(super) struct ModelList<'a, 'i> {
    credentials: Vec<(&'a str, &'a Yaml<'i>)>,
    providers: Providers,
    models: Vec<Model>,
    /// `model_name: "*"` with `model: "*"`: where it was.
    any_model: Option<String>,
}

impl<'a, 'i> ModelList<'a, 'i> {
    /// `credential_list`: named sets of `litellm_params` an entry can take by
    /// `litellm_credential_name`.
    pub(super) fn new(credential_list: Option<&'a Yaml<'i>>, n: &mut Notes) -> Self {
        let mut credentials = Vec::new();
        for (i, c) in credential_list
            .and_then(source::items)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let name = source::get(c, "credential_name").and_then(source::text);
            match (name, source::get(c, "credential_values")) {
                (Some(name), Some(values)) => credentials.push((name, values)),
                _ => n.skip(
                    format!("credential_list[{i}]"),
                    "expected credential_name and credential_values",
                ),
            }
        }
        Self {
            credentials,
            providers: Providers::default(),
            models: Vec::new(),
            any_model: None,
        }
    }

    /// One `model_list` entry.
    pub(super) fn entry(&mut self, i: usize, node: &'a Yaml<'i>, n: &mut Notes) {
        let path = format!("model_list[{i}]");
        let Some(fields) = source::entries(node) else {
            n.skip(
                path,
                "expected a mapping with model_name and litellm_params",
            );
            return;
        };
        let (mut name, mut params, mut info) = (None, None, None);
        for (k, v) in fields {
            match k {
                "model_name" => name = source::text(v),
                "litellm_params" => params = source::entries(v),
                "model_info" => info = source::entries(v),
                other => n.skip(
                    format!("{path}.{other}"),
                    "the gateway has no such model setting",
                ),
            }
        }
        let (Some(name), Some(mut params)) = (name, params) else {
            n.skip(
                path,
                "an entry needs model_name and litellm_params (a mapping); left out",
            );
            return;
        };
        let ppath = format!("{path}.litellm_params");
        self.add_credential(&mut params, &ppath, n);
        let param = |k: &str| params.iter().find(|(p, _)| *p == k).map(|(_, v)| *v);
        let Some(model) = param("model").and_then(source::text) else {
            n.skip(ppath, "no model (provider/name); left out");
            return;
        };
        if model == "*" {
            if name == "*" {
                self.any_model = Some(path);
            } else {
                n.skip(
                    format!("{ppath}.model"),
                    "model \"*\" only works under model_name \"*\"",
                );
            }
            return;
        }
        let custom = param("custom_llm_provider").and_then(source::text);
        let (kind, upstream) = match resolve(model, custom) {
            Ok(r) => r,
            Err(why) => {
                n.skip(
                    format!("{ppath}.model"),
                    format!("{model}: {why}; this deployment of {name} is left out"),
                );
                return;
            }
        };
        let star = upstream == "*";
        let pattern_ok = !name.contains('*') && !upstream.contains('*')
            || star && (name == "*" || name.ends_with("/*") && name.matches('*').count() == 1);
        if !pattern_ok {
            n.skip(path, format!("{name} -> {model}: the gateway's wildcards are PREFIX/* names served by model \"*\"; left out"));
            return;
        }
        let mut used = vec!["model", "custom_llm_provider", "litellm_credential_name"];
        let provider = self.providers.add(kind, &params, &ppath, &mut used, n);
        let upstream = match (kind.ty, upstream) {
            ("bedrock", m) if m.starts_with("invoke/") => {
                n.note(
                    format!("{ppath}.model"),
                    "the gateway calls Bedrock's Converse API, not invoke",
                );
                &m[7..]
            }
            ("bedrock", m) => m.strip_prefix("converse/").unwrap_or(m),
            (_, m) => m,
        };
        let model_name = if name == "*" {
            let wild = format!("{}/*", self.providers.name(provider));
            n.note(
                format!("{path}.model_name"),
                format!(
                    "\"*\" became the wildcard {wild}: clients name the provider, e.g. {}",
                    wild.replace('*', "MODEL")
                ),
            );
            wild
        } else {
            name.to_owned()
        };
        let num = |key: &'static str, used: &mut Vec<&str>, n: &mut Notes| {
            let v = param(key)?;
            used.push(key);
            source::number(v).or_else(|| {
                n.skip(format!("{ppath}.{key}"), "expected a number");
                None
            })
        };
        let weight = num("weight", &mut used, n);
        let order = num("order", &mut used, n).map(|o| o.round() as i64);
        let timeout = num("timeout", &mut used, n).filter(|t| *t > 0.0);
        let count = |key: &'static str, used: &mut Vec<&str>, n: &mut Notes| {
            let v = param(key)?;
            used.push(key);
            whole(v, &format!("{ppath}.{key}"), n)
        };
        let rpm = count("rpm", &mut used, n);
        let tpm = count("tpm", &mut used, n);
        let retries = count("num_retries", &mut used, n);
        let info = info.unwrap_or_default();
        let cost = |key: &'static str, used: &mut Vec<&str>| {
            let v = param(key)
                .inspect(|_| used.push(key))
                .or_else(|| info.iter().find(|(k, _)| *k == key).map(|(_, v)| *v))?;
            source::number(v).map(|c| ((c * 1e6) * 1e9).round() / 1e9)
        };
        let input_cost = cost("input_cost_per_token", &mut used);
        let output_cost = cost("output_cost_per_token", &mut used);
        for (k, _) in &params {
            if !used.contains(k) {
                n.skip(format!("{ppath}.{k}"), param_reason(k));
            }
        }
        for (k, _) in &info {
            if !matches!(*k, "input_cost_per_token" | "output_cost_per_token") {
                n.skip(format!("{path}.model_info.{k}"), info_reason(k));
            }
        }
        let deployment = Deployment {
            provider,
            model: upstream.to_owned(),
            input_cost,
            output_cost,
            weight,
            order,
            rpm,
            tpm,
        };
        let m = match self.models.iter_mut().find(|m| m.name == model_name) {
            Some(m) => m,
            None => {
                self.models.push(Model {
                    wildcard: model_name.ends_with("/*"),
                    name: model_name,
                    deployments: Vec::new(),
                    timeout: None,
                    retries: None,
                    fallbacks: Vec::new(),
                    comment: None,
                });
                let last = self.models.len() - 1;
                &mut self.models[last]
            }
        };
        if let Some(t) = timeout {
            if m.timeout.is_some_and(|old| old != t) {
                n.note(
                    format!("{ppath}.timeout"),
                    format!(
                        "the model {} has one timeout: the longest of its deployments' is kept",
                        m.name
                    ),
                );
            }
            m.timeout = Some(m.timeout.map_or(t, |old| old.max(t)));
        }
        if let Some(r) = retries {
            m.retries = Some(m.retries.map_or(r, |old| old.max(r)));
        }
        m.deployments.push(deployment);
    }

    /// Merges the entry's `litellm_credential_name` values under its own params.
    fn add_credential(
        &self,
        params: &mut Vec<(&'a str, &'a Yaml<'i>)>,
        ppath: &str,
        n: &mut Notes,
    ) {
        let Some(cred) = params
            .iter()
            .find(|(k, _)| *k == "litellm_credential_name")
            .and_then(|(_, v)| source::text(v))
        else {
            return;
        };
        match self.credentials.iter().find(|(c, _)| *c == cred) {
            Some((_, values)) => {
                for (k, v) in source::entries(values).unwrap_or_default() {
                    if !params.iter().any(|(p, _)| *p == k) {
                        params.push((k, v));
                    }
                }
            }
            None => n.skip(
                format!("{ppath}.litellm_credential_name"),
                format!("no credential named {cred} in credential_list"),
            ),
        }
    }

    /// After the last entry: `*` wildcards, fallbacks, default fallbacks, aliases.
    pub(super) fn finish(&mut self, st: &Settings, n: &mut Notes) {
        if let Some(path) = self.any_model.take() {
            let names: Vec<String> = self.providers.names().map(str::to_owned).collect();
            if names.is_empty() {
                n.skip(path, "\"*\" -> \"*\": LiteLLM guessed each model's provider; the gateway needs providers, and this file has none");
            } else {
                let mut added = Vec::new();
                for (i, name) in names.iter().enumerate() {
                    let wild = format!("{name}/*");
                    if !self.models.iter().any(|m| m.name == wild) {
                        added.push(wild.clone());
                        self.models.push(wildcard(wild, i));
                    }
                }
                n.note(path, format!("\"*\" -> \"*\": LiteLLM guessed each model's provider; here clients name it, through the wildcards {}", added.join(", ")));
            }
        }
        for rule in st.fallbacks() {
            self.fallback(rule, n);
        }
        if let Some((path, targets)) = st.default_fallbacks() {
            for t in targets {
                if !self.models.iter().any(|m| &m.name == t) {
                    n.skip(path.as_str(), format!("no model named {t}"));
                }
            }
            for m in self
                .models
                .iter_mut()
                .filter(|m| m.fallbacks.is_empty() && !m.wildcard)
            {
                m.fallbacks = targets.iter().filter(|t| **t != m.name).cloned().collect();
            }
            let names: Vec<String> = self.models.iter().map(|m| m.name.clone()).collect();
            for m in &mut self.models {
                m.fallbacks.retain(|f| names.contains(f));
            }
        }
        for (path, alias, target) in &st.aliases {
            if self.models.iter().any(|m| &m.name == alias) {
                n.skip(
                    path.as_str(),
                    format!("a model named {alias} exists already"),
                );
                continue;
            }
            let Some(mut copy) = self.models.iter().find(|m| &m.name == target).cloned() else {
                n.skip(path.as_str(), format!("no model named {target}"));
                continue;
            };
            copy.name.clone_from(alias);
            copy.comment = Some(format!(
                "{alias} -> {target} (LiteLLM's model_group_alias): the same deployments"
            ));
            self.models.push(copy);
        }
    }

    fn fallback(&mut self, rule: &FallbackRule, n: &mut Notes) {
        let names: Vec<String> = self.models.iter().map(|m| m.name.clone()).collect();
        let Some(m) = self.models.iter_mut().find(|m| m.name == rule.model) else {
            n.skip(rule.path.as_str(), format!("no model named {}", rule.model));
            return;
        };
        for t in &rule.targets {
            if *t == m.name || m.fallbacks.contains(t) {
                continue;
            }
            if names.contains(t) {
                m.fallbacks.push(t.clone());
            } else {
                n.skip(rule.path.as_str(), format!("fallback {t}: no such model"));
            }
        }
    }

    /// The `providers` and `models` lists.
    pub(super) fn render(&self, st: &Settings) -> (Vec<Value>, Vec<Value>) {
        let providers = self
            .providers
            .render(st.call_timeout().map(duration).as_deref());
        let models = self
            .models
            .iter()
            .map(|m| Value::Map(self.render_model(m, st.strategy)))
            .collect();
        (providers, models)
    }

    fn render_model(&self, m: &Model, strategy: Strategy) -> Map {
        let mut out = Map::default();
        match &m.comment {
            Some(c) => out.put_commented("name", m.name.as_str(), c.as_str()),
            None => out.put("name", m.name.as_str()),
        };
        // LiteLLM's `order`; deployments without one come after those with one.
        let after_last = m
            .deployments
            .iter()
            .filter_map(|d| d.order)
            .max()
            .map(|o| o.saturating_add(1));
        if m.deployments.len() > 1 {
            if after_last.is_some() {
                out.put_commented("routing", "priority", "LiteLLM's order: lower first");
            } else {
                out.put_commented(
                    "routing",
                    strategy.routing(),
                    format!("LiteLLM: {}", strategy.litellm()),
                );
            }
        }
        let (weights, why) = weights(m, strategy);
        let deployments: Vec<Value> = m
            .deployments
            .iter()
            .zip(weights)
            .map(|(d, w)| {
                let mut dm = Map::default();
                dm.put("provider", self.providers.name(d.provider))
                    .put("model", d.model.as_str());
                if let Some(c) = d.input_cost {
                    dm.put("input_cost_per_mtok", c);
                }
                if let Some(c) = d.output_cost {
                    dm.put("output_cost_per_mtok", c);
                }
                if let Some(w) = w {
                    dm.put("weight", w);
                }
                if let Some(o) = d.order.or(after_last) {
                    dm.put("priority", o);
                }
                if let Some(r) = d.rpm {
                    dm.put("rpm", Value::Int(i64::try_from(r).unwrap_or(i64::MAX)));
                }
                if let Some(t) = d.tpm {
                    dm.put("tpm", Value::Int(i64::try_from(t).unwrap_or(i64::MAX)));
                }
                Value::Map(dm)
            })
            .collect();
        match why {
            Some(c) => out.put_commented("deployments", Value::List(deployments), c),
            None => out.put("deployments", Value::List(deployments)),
        };
        if !m.fallbacks.is_empty() {
            out.put("fallbacks", m.fallbacks.clone());
        }
        if let Some(r) = m.retries {
            out.put("retries", Value::Int(i64::try_from(r).unwrap_or(i64::MAX)));
        }
        if let Some(t) = m.timeout {
            out.put("timeout", duration(t));
        }
        out
    }
}

fn wildcard(name: String, provider: usize) -> Model {
    Model {
        name,
        deployments: vec![Deployment {
            provider,
            model: "*".to_owned(),
            input_cost: None,
            output_cost: None,
            weight: None,
            order: None,
            rpm: None,
            tpm: None,
        }],
        timeout: None,
        retries: None,
        fallbacks: Vec::new(),
        comment: None,
        wildcard: true,
    }
}

/// Each deployment's `weight`: LiteLLM's (× 100 when some are fractions; at least 1), else
/// under simple-shuffle its `rpm` (or `tpm`) as LiteLLM weighs by them, else none.
fn weights(m: &Model, strategy: Strategy) -> (Vec<Option<u32>>, Option<&'static str>) {
    let whole = |f: f64| Some(f.round().clamp(1.0, f64::from(u32::MAX)) as u32);
    let ds = &m.deployments;
    if ds.iter().any(|d| d.weight.is_some()) {
        let ws: Vec<f64> = ds.iter().map(|d| d.weight.unwrap_or(1.0)).collect();
        if ws.iter().all(|w| w.fract() == 0.0) {
            return (ws.into_iter().map(whole).collect(), None);
        }
        return (
            ws.into_iter().map(|w| whole(w * 100.0)).collect(),
            Some("weights: LiteLLM's × 100, as whole numbers"),
        );
    }
    if strategy == Strategy::Shuffle && ds.len() > 1 {
        type Capacity = fn(&Deployment) -> Option<u64>;
        let by: [(Capacity, &'static str); 2] = [
            (
                |d| d.rpm,
                "weights from rpm, as LiteLLM's simple-shuffle weighs by them",
            ),
            (
                |d| d.tpm,
                "weights from tpm, as LiteLLM's simple-shuffle weighs by them",
            ),
        ];
        for (capacity, why) in by {
            let ws: Option<Vec<Option<u32>>> = ds
                .iter()
                .map(|d| capacity(d).map(|c| whole(c as f64)))
                .collect();
            if let Some(ws) = ws {
                return (ws, Some(why));
            }
        }
    }
    (vec![None; ds.len()], None)
}
