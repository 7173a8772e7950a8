//! Checks of `guardrails:`, the names `models[].guardrails` and `auth.keys[].guardrails` give,
//! and `cache.semantic`. A regex guardrail's patterns are compiled here (the same compile the
//! guardrail itself uses, [`compile_pattern`]), so a bad pattern is an error with its path and
//! line, before anything runs.

use std::collections::HashMap;

use super::super::{Config, GuardrailAction, GuardrailType, hint_for};
use super::Ctx;

/// Compiled size limit of one pattern (the regex crate's default is 10 MiB).
pub const PATTERN_SIZE_LIMIT: usize = 4 << 20;

/// Compile one user pattern as guardrails compile it; the regex library's message on error.
pub fn compile_pattern(p: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(p)
        .size_limit(PATTERN_SIZE_LIMIT)
        .build()
        .map_err(|e| e.to_string())
}

/// The PII entity names `entities:` accepts.
pub const ENTITIES: [&str; 6] = [
    "email",
    "phone",
    "credit_card",
    "iban",
    "ip_address",
    "secret",
];

/// Whether `name` is a model clients can ask for: a name of `models:`, or one a wildcard
/// model (`NAME/*`) covers.
pub(crate) fn model_known(cfg: &Config, name: &str) -> bool {
    cfg.models.iter().any(|m| {
        m.name == name
            || m.name
                .strip_suffix('*')
                .is_some_and(|prefix| prefix.ends_with('/') && name.starts_with(prefix))
    })
}

pub(super) fn check(cfg: &Config, cx: &mut Ctx) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let model_names: Vec<&str> = cfg.models.iter().map(|m| m.name.as_str()).collect();
    for (i, g) in cfg.guardrails.iter().enumerate() {
        let at = format!("guardrails[{i}]");
        if g.name.trim().is_empty() {
            cx.err(format!("{at}.name"), "guardrail name is empty", None);
        } else if let Some(&j) = seen.get(g.name.as_str()) {
            let hint = cx.first_at(&format!("guardrails[{j}].name"));
            cx.err(
                format!("{at}.name"),
                format!("duplicate guardrail name \"{}\"", g.name),
                hint,
            );
        } else {
            seen.insert(&g.name, i);
        }
        for (j, pattern) in g.models.iter().enumerate() {
            if let Err(e) = globset::Glob::new(pattern) {
                cx.err(
                    format!("{at}.models[{j}]"),
                    format!("invalid glob: {}", e.kind()),
                    None,
                );
            }
        }
        let (input, output) = g.sides();
        if !input && !output {
            cx.err(
                format!("{at}.apply_to"),
                "apply_to is empty: the guardrail would never run",
                Some("use [input], [output] or [input, output]".to_owned()),
            );
        }
        let misplaced = |cx: &mut Ctx, key: &str, kind: &str| {
            cx.err(
                format!("{at}.{key}"),
                format!("\"{key}\" is not a key of a type: {kind} guardrail"),
                None,
            );
        };
        match g.kind {
            GuardrailType::Pii => {
                for (j, e) in g.entities.iter().flatten().enumerate() {
                    if !ENTITIES.contains(&e.as_str()) {
                        cx.err(
                            format!("{at}.entities[{j}]"),
                            format!("unknown entity \"{e}\""),
                            hint_for(e, &ENTITIES, "entities"),
                        );
                    }
                }
                if g.entities.as_ref().is_some_and(Vec::is_empty) {
                    cx.err(
                        format!("{at}.entities"),
                        "entities is empty: the guardrail would find nothing",
                        Some("leave it out for all six".to_owned()),
                    );
                }
                if !g.patterns.is_empty() {
                    misplaced(cx, "patterns", "pii");
                }
                if g.model.is_some() {
                    misplaced(cx, "model", "pii");
                }
            }
            GuardrailType::Regex => {
                if g.patterns.is_empty() {
                    cx.err(
                        format!("{at}.patterns"),
                        "a regex guardrail needs at least one pattern",
                        None,
                    );
                }
                for (j, p) in g.patterns.iter().enumerate() {
                    if let Err(e) = compile_pattern(p) {
                        // The regex library's message spans lines; the first carries the gist.
                        let gist = e.lines().last().unwrap_or("").trim().to_owned();
                        cx.err(
                            format!("{at}.patterns[{j}]"),
                            format!("the pattern does not compile: {gist}"),
                            None,
                        );
                    }
                }
                if g.entities.is_some() {
                    misplaced(cx, "entities", "regex");
                }
                if g.model.is_some() {
                    misplaced(cx, "model", "regex");
                }
            }
            GuardrailType::Moderation => {
                match g.model.as_deref() {
                    None | Some("") => cx.err(
                        &at,
                        "missing key \"model\" (required for type moderation)",
                        Some("e.g. model: omni-moderation-latest, a model from models:".to_owned()),
                    ),
                    Some(m) if !model_known(cfg, m) => cx.err(
                        format!("{at}.model"),
                        format!("no model named \"{m}\" in models:"),
                        hint_for(m, &model_names, "models"),
                    ),
                    Some(_) => {}
                }
                if g.action() != GuardrailAction::Block {
                    cx.err(
                        format!("{at}.action"),
                        "a moderation guardrail can only block",
                        Some("action: block".to_owned()),
                    );
                }
                if output {
                    cx.err(
                        format!("{at}.apply_to"),
                        "a moderation guardrail checks the input only",
                        Some("apply_to: [input]".to_owned()),
                    );
                }
                if g.entities.is_some() {
                    misplaced(cx, "entities", "moderation");
                }
                if !g.patterns.is_empty() {
                    misplaced(cx, "patterns", "moderation");
                }
            }
        }
    }
    let names: Vec<&str> = cfg.guardrails.iter().map(|g| g.name.as_str()).collect();
    let named = |cx: &mut Ctx, at: String, list: &[String]| {
        for (j, n) in list.iter().enumerate() {
            if !names.contains(&n.as_str()) {
                cx.err(
                    format!("{at}.guardrails[{j}]"),
                    format!("no guardrail named \"{n}\" in guardrails:"),
                    hint_for(n, &names, "guardrails"),
                );
            }
        }
    };
    for (i, m) in cfg.models.iter().enumerate() {
        named(cx, format!("models[{i}]"), &m.guardrails);
    }
    if let Some(auth) = &cfg.auth {
        for (i, k) in auth.keys.iter().enumerate() {
            named(cx, format!("auth.keys[{i}]"), &k.guardrails);
        }
    }
    check_semantic(cfg, cx, &model_names);
}

fn check_semantic(cfg: &Config, cx: &mut Ctx, model_names: &[&str]) {
    let s = &cfg.cache.semantic;
    if !(s.threshold > 0.0 && s.threshold <= 1.0) {
        cx.err(
            "cache.semantic.threshold",
            "threshold must be above 0 and at most 1 (a cosine similarity)",
            Some("e.g. threshold: 0.95".to_owned()),
        );
    }
    if s.max_entries == 0 {
        cx.err(
            "cache.semantic.max_entries",
            "max_entries must be at least 1",
            None,
        );
    }
    if s.enabled && !model_known(cfg, &s.embedding_model) {
        cx.err(
            "cache.semantic.embedding_model",
            format!("no model named \"{}\" in models:", s.embedding_model),
            hint_for(&s.embedding_model, model_names, "models"),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load_str;

    fn errors(yaml: &str) -> Vec<String> {
        match load_str(yaml, &|_| None) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    const HEAD: &str = "providers: [{name: m, type: mock}]\nmodels:\n  - {name: chat, deployments: [{provider: m, model: x}], guardrails: [pii, nope]}\n";

    #[test]
    fn every_guardrail_problem_has_its_path_and_line() {
        let yaml = format!(
            "{HEAD}guardrails:\n  - {{name: pii, type: pii, entities: [email, phone_number]}}\n  - {{name: pii, type: regex, patterns: [ok, \"a{{2\"]}}\n  - {{name: mod, type: moderation, model: chta, action: mask}}\n  - {{name: r, type: regex, patterns: [x], apply_to: []}}\ncache:\n  semantic: {{enabled: true, embedding_model: emb, threshold: 1.5}}\n"
        );
        let e = errors(&yaml);
        let expect = [
            "models[0].guardrails[1]: no guardrail named \"nope\" in guardrails: (line 3)",
            "guardrails[0].entities[1]: unknown entity \"phone_number\" (line 5); did you mean \"phone\"?",
            "guardrails[1].name: duplicate guardrail name \"pii\" (line 6); first defined at guardrails[0].name (line 5)",
            "guardrails[1].patterns[1]: the pattern does not compile:",
            "guardrails[2].model: no model named \"chta\" in models: (line 7); did you mean \"chat\"?",
            "guardrails[2].action: a moderation guardrail can only block (line 7); action: block",
            "guardrails[3].apply_to: apply_to is empty",
            "cache.semantic.threshold: threshold must be above 0 and at most 1",
            "cache.semantic.embedding_model: no model named \"emb\" in models:",
        ];
        for want in expect {
            assert!(
                e.iter().any(|got| got.starts_with(want)),
                "{want}\nin {e:#?}"
            );
        }
        assert_eq!(e.len(), expect.len(), "{e:#?}");
    }

    #[test]
    fn a_good_section_loads_with_its_defaults() {
        let yaml = format!(
            "{HEAD}guardrails:\n  - {{name: pii, type: pii}}\n  - {{name: nope, type: regex, patterns: [\"(?i)x\"], models: []}}\n"
        );
        let cfg = load_str(&yaml, &|_| None).unwrap();
        let g = &cfg.guardrails[0];
        assert_eq!(g.action(), crate::config::GuardrailAction::Mask);
        assert_eq!(g.sides(), (true, true));
        assert_eq!(g.models, ["*"]);
        assert_eq!(
            cfg.guardrails[1].action(),
            crate::config::GuardrailAction::Block
        );
    }
}
