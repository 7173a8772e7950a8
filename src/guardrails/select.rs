//! Which guardrails apply to a request: the configured ones compiled once per configuration
//! ([`Guardrails::build`]), and per model (and key) the [`Selected`] set, in the configured
//! order: the global ones whose `models` globs match the requested model, plus those the model
//! and the key name.

use std::collections::HashMap;
use std::sync::Arc;

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::{Action, Entities, Entity, Guardrail, Outcome, Plan};
use crate::config::{Config, GuardrailAction, GuardrailType, ModerationOnError};

/// A `type: moderation` guardrail.
#[derive(Debug, Clone)]
pub struct Moderation {
    /// The model (from `models:`) serving `/v1/moderations`.
    pub model: String,
    /// A failed moderation call refuses the request (`on_error: block`).
    pub block_on_error: bool,
}

#[derive(Debug)]
enum Kind {
    Text(Arc<Guardrail>),
    Moderation(Moderation),
}

#[derive(Debug)]
struct Rail {
    name: Box<str>,
    input: bool,
    output: bool,
    kind: Kind,
    /// `None`: applies only where a model or key names it.
    globs: Option<GlobSet>,
}

/// The compiled `guardrails:` of one configuration.
#[derive(Debug)]
pub struct Guardrails {
    rails: Vec<Rail>,
    /// Rails each configured model names (indices into `rails`).
    by_model: HashMap<String, Vec<usize>>,
    /// Rails each key of the file names, by the key's id.
    by_key: HashMap<String, Vec<usize>>,
    /// The selection of each configured model for a key naming none.
    cached: HashMap<String, Option<Arc<Selected>>>,
}

/// The guardrails applying to one request, in the configured order.
#[derive(Debug)]
pub struct Selected {
    names: Vec<Box<str>>,
    /// Text guardrails on the request, and their index in `names`.
    pub input: Option<Plan>,
    input_at: Vec<usize>,
    /// Text guardrails on the answer, and their index in `names`.
    pub output: Option<Plan>,
    output_at: Vec<usize>,
    /// Moderation guardrails, with their index in `names`.
    pub moderation: Vec<(usize, Moderation)>,
}

fn action_of(a: GuardrailAction) -> Action {
    match a {
        GuardrailAction::Mask => Action::Mask,
        GuardrailAction::Redact => Action::Redact,
        GuardrailAction::Block => Action::Block,
    }
}

impl Guardrails {
    /// Compile `cfg.guardrails` (already validated); `None` when there are none. `key_id`
    /// gives the id of a key of the file by its name.
    pub fn build(
        cfg: &Config,
        key_id: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Guardrails>, String> {
        if cfg.guardrails.is_empty() {
            return Ok(None);
        }
        let mut rails = Vec::with_capacity(cfg.guardrails.len());
        for g in &cfg.guardrails {
            let action = action_of(g.action());
            let kind = match g.kind {
                GuardrailType::Pii => {
                    let entities = match &g.entities {
                        None => Entities::all(),
                        Some(list) => {
                            let mut e = Entities::default();
                            for name in list {
                                e.insert(Entity::from_name(name).ok_or_else(|| {
                                    format!("guardrail {}: unknown entity {name}", g.name)
                                })?);
                            }
                            e
                        }
                    };
                    Kind::Text(Arc::new(Guardrail::pii(&g.name, entities, action)))
                }
                GuardrailType::Regex => Kind::Text(Arc::new(
                    Guardrail::regex(&g.name, &g.patterns, action)
                        .map_err(|e| format!("guardrail {}: {e}", g.name))?,
                )),
                GuardrailType::Moderation => Kind::Moderation(Moderation {
                    model: g.model.clone().unwrap_or_default(),
                    block_on_error: g.on_error == ModerationOnError::Block,
                }),
            };
            let globs = if g.models.is_empty() {
                None
            } else {
                let mut b = GlobSetBuilder::new();
                for m in &g.models {
                    b.add(Glob::new(m).map_err(|e| format!("guardrail {}: {e}", g.name))?);
                }
                Some(b.build().map_err(|e| e.to_string())?)
            };
            let (input, output) = g.sides();
            rails.push(Rail {
                name: g.name.as_str().into(),
                input,
                output,
                kind,
                globs,
            });
        }
        let index = |names: &[String]| -> Vec<usize> {
            names
                .iter()
                .filter_map(|n| rails.iter().position(|r| &*r.name == n))
                .collect()
        };
        let by_model: HashMap<String, Vec<usize>> = cfg
            .models
            .iter()
            .filter(|m| !m.guardrails.is_empty())
            .map(|m| (m.name.clone(), index(&m.guardrails)))
            .collect();
        let by_key = cfg
            .auth
            .iter()
            .flat_map(|a| &a.keys)
            .filter(|k| !k.guardrails.is_empty())
            .filter_map(|k| Some((key_id(&k.name)?, index(&k.guardrails))))
            .collect();
        let mut g = Guardrails {
            rails,
            by_model,
            by_key,
            cached: HashMap::new(),
        };
        g.cached = cfg
            .models
            .iter()
            .map(|m| (m.name.clone(), g.compute(&m.name, None)))
            .collect();
        Ok(Some(g))
    }

    /// The guardrails for a request for `model` by the key `key_id` ("" when open); `None`
    /// when none applies.
    pub fn select(&self, model: &str, key_id: &str) -> Option<Arc<Selected>> {
        let key = self.by_key.get(key_id).filter(|_| !key_id.is_empty());
        if key.is_none()
            && let Some(s) = self.cached.get(model)
        {
            return s.clone();
        }
        self.compute(model, key.map(Vec::as_slice))
    }

    fn compute(&self, model: &str, key: Option<&[usize]>) -> Option<Arc<Selected>> {
        let named = self.by_model.get(model);
        let applies = |i: usize, r: &Rail| {
            r.globs.as_ref().is_some_and(|g| g.is_match(model))
                || named.is_some_and(|n| n.contains(&i))
                || key.is_some_and(|k| k.contains(&i))
        };
        let mut s = Selected {
            names: Vec::new(),
            input: None,
            input_at: Vec::new(),
            output: None,
            output_at: Vec::new(),
            moderation: Vec::new(),
        };
        let (mut input, mut output) = (Vec::new(), Vec::new());
        for (i, r) in self.rails.iter().enumerate() {
            if !applies(i, r) {
                continue;
            }
            let at = s.names.len();
            s.names.push(r.name.clone());
            match &r.kind {
                Kind::Text(g) => {
                    if r.input {
                        input.push(g.clone());
                        s.input_at.push(at);
                    }
                    if r.output {
                        output.push(g.clone());
                        s.output_at.push(at);
                    }
                }
                Kind::Moderation(m) => s.moderation.push((at, m.clone())),
            }
        }
        if s.names.is_empty() {
            return None;
        }
        s.input = (!input.is_empty()).then(|| Plan::new(input));
        s.output = (!output.is_empty()).then(|| Plan::new(output));
        Some(Arc::new(s))
    }
}

impl Selected {
    pub fn names(&self) -> &[Box<str>] {
        &self.names
    }

    /// Index in [`Selected::names`] of the input plan's guardrail `i`.
    pub fn input_at(&self, i: usize) -> usize {
        self.input_at[i]
    }

    /// Index in [`Selected::names`] of the output plan's guardrail `i`.
    pub fn output_at(&self, i: usize) -> usize {
        self.output_at[i]
    }

    /// `name=outcome` pairs, comma-separated, for `x-gateway-guardrails`.
    pub fn header_value(&self, outcomes: &[Outcome]) -> String {
        let mut out = String::with_capacity(self.names.len() * 16);
        for (n, o) in self.names.iter().zip(outcomes) {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(n);
            out.push('=');
            out.push_str(o.as_str());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> Config {
        crate::config::load_str(yaml, &|_| None).unwrap()
    }

    const BASE: &str = r#"
providers: [{name: m, type: mock}]
models:
  - {name: a, deployments: [{provider: m, model: x}], guardrails: [topics]}
  - {name: b, deployments: [{provider: m, model: x}]}
  - {name: mod, deployments: [{provider: m, model: x}]}
auth:
  keys:
    - {name: k, key: sk-test-key-1, guardrails: [cards]}
guardrails:
  - {name: pii, type: pii, entities: [email], models: ["a*"]}
  - {name: topics, type: regex, patterns: ["(?i)falcon"], models: []}
  - {name: cards, type: pii, entities: [credit_card], action: redact, apply_to: [output], models: []}
  - {name: modr, type: moderation, model: mod, models: ["b"]}
"#;

    #[test]
    fn global_model_and_key_in_configured_order() {
        let c = cfg(BASE);
        let id = |name: &str| (name == "k").then(|| "key-id".to_owned());
        let g = Guardrails::build(&c, id).unwrap().unwrap();
        let s = g.select("a", "").unwrap();
        assert_eq!(
            s.header_value(&[Outcome::Passed; 2]),
            "pii=passed,topics=passed"
        );
        assert!(s.output.is_some() && s.moderation.is_empty());
        let s = g.select("a", "key-id").unwrap();
        assert_eq!(
            s.header_value(&[Outcome::Passed; 3]),
            "pii=passed,topics=passed,cards=passed"
        );
        assert_eq!((s.input_at(1), s.output_at(2)), (1, 2));
        let s = g.select("b", "").unwrap();
        assert_eq!(s.names().len(), 1);
        assert_eq!(s.moderation[0].1.model, "mod");
        assert!(s.input.is_none() && s.output.is_none());
        assert!(g.select("mod", "").is_none());
        assert!(g.select("unknown", "other").is_none());
    }
}
