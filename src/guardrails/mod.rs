//! Guardrails over the text a request carries and the text its answer returns.
//!
//! Owns: the detectors ([`pii`] entities and user regex patterns), the per-request [`Plan`] that
//! scans a text once for every guardrail that applies, the actions over text (mask, redact,
//! block) with the per-request [`Vault`] of placeholders, restoring placeholders in answers
//! (whole, or streamed with a bounded hold-back), and the walkers that find the texts inside
//! request bodies ([`text`]) and answers and stream events ([`answer`]), splicing only the JSON
//! strings they change.
//!
//! Must not: let a matched value reach a log, an error, a metric or a `Debug` output (only
//! guardrail names, entity names and counts leave this module); re-serialise a body (an
//! unmatched body is handed back untouched); import anything above the wire level (it sits on
//! floor 3 beside the cache and is called from the pipeline). The user-facing rules are in
//! `docs/guardrails.md`.

pub mod answer;
mod apply;
mod chunk;
#[cfg(test)]
mod chunk_tests;
mod json;
mod patterns;
pub mod pii;
mod select;
mod stream;
pub mod text;
mod vault;

#[cfg(test)]
mod props;

use std::ops::Range;
use std::sync::Arc;

pub use apply::guard_text;
pub use patterns::PatternError;
pub use pii::{Entities, Entity};
pub use select::{Guardrails, Moderation, Selected};
pub use stream::{HOLD_BACK, OutputScan, Restorer, TextStream};
pub use vault::Vault;

use patterns::Patterns;

/// What a guardrail does with what it finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Replaced by a placeholder upstream; the original is restored in the answer.
    Mask,
    /// Replaced by a placeholder, never restored.
    Redact,
    /// The request (or the rest of the answer) is refused.
    Block,
}

/// One configured text guardrail, compiled: a name, an action and what it looks for.
pub struct Guardrail {
    name: Box<str>,
    /// The placeholder label of its regex matches (`NO_INTERNAL_PROJECTS`).
    label: Box<str>,
    action: Action,
    detector: Detector,
}

enum Detector {
    Pii(Entities),
    Patterns(Patterns),
}

impl Guardrail {
    /// A `type: pii` guardrail.
    pub fn pii(name: &str, entities: Entities, action: Action) -> Guardrail {
        Guardrail {
            name: name.into(),
            label: label_of(name),
            action,
            detector: Detector::Pii(entities),
        }
    }

    /// A `type: regex` guardrail; its patterns are compiled here, once. A bad pattern is an
    /// error naming its index in `patterns`.
    pub fn regex<S: AsRef<str>>(
        name: &str,
        patterns: &[S],
        action: Action,
    ) -> Result<Guardrail, PatternError> {
        Ok(Guardrail {
            name: name.into(),
            label: label_of(name),
            action,
            detector: Detector::Patterns(Patterns::compile(patterns)?),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn action(&self) -> Action {
        self.action
    }
}

impl std::fmt::Debug for Guardrail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Guardrail");
        d.field("name", &self.name).field("action", &self.action);
        match &self.detector {
            Detector::Pii(e) => d.field("entities", e),
            Detector::Patterns(p) => d.field("patterns", &p.len()),
        };
        d.finish()
    }
}

/// `no-internal-projects` → `NO_INTERNAL_PROJECTS`.
fn label_of(name: &str) -> Box<str> {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// One value found in a text: its byte range and the guardrail (an index into the plan) that
/// acts on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    pub range: Range<usize>,
    pub rail: usize,
    /// The PII entity, or `None` for a regex match.
    pub entity: Option<Entity>,
}

/// The text guardrails that apply to one request (or one direction of it), in the configured
/// order. Each PII entity belongs to the first PII guardrail listing it, so one scan per
/// detector serves them all.
#[derive(Debug, Clone)]
pub struct Plan {
    rails: Vec<Arc<Guardrail>>,
    pii: Entities,
    /// For each entity (by `Entity as usize`), the index of the guardrail that owns it.
    owner: [usize; 6],
}

impl Plan {
    pub fn new(rails: Vec<Arc<Guardrail>>) -> Plan {
        let mut pii = Entities::default();
        let mut owner = [usize::MAX; 6];
        for (i, g) in rails.iter().enumerate() {
            if let Detector::Pii(want) = &g.detector {
                for e in want.iter() {
                    if !pii.contains(e) {
                        pii.insert(e);
                        owner[e as usize] = i;
                    }
                }
            }
        }
        Plan { rails, pii, owner }
    }

    pub fn is_empty(&self) -> bool {
        self.rails.is_empty()
    }

    pub fn rails(&self) -> &[Arc<Guardrail>] {
        &self.rails
    }

    /// Whether any guardrail masks (so answers need restoring).
    pub fn masks(&self) -> bool {
        self.rails.iter().any(|g| g.action == Action::Mask)
    }

    /// Every value in `text`, in text order, overlapping values resolved to the one starting
    /// first (the longest of those starting together). Blocking values are kept even where
    /// they overlap another, so a block is never hidden by a mask.
    pub fn scan(&self, text: &str, hits: &mut Vec<Hit>) {
        hits.clear();
        if !self.pii.is_empty() {
            let owner = &self.owner;
            pii::scan(text, self.pii, &mut |range, entity| {
                hits.push(Hit {
                    range,
                    rail: owner[entity as usize],
                    entity: Some(entity),
                });
            });
        }
        for (i, g) in self.rails.iter().enumerate() {
            if let Detector::Patterns(p) = &g.detector {
                p.find(text, &mut |range| {
                    hits.push(Hit {
                        range,
                        rail: i,
                        entity: None,
                    });
                });
            }
        }
        if hits.len() > 1 {
            hits.sort_unstable_by(|a, b| {
                (a.range.start, b.range.end, a.rail).cmp(&(b.range.start, a.range.end, b.rail))
            });
            let rails = &self.rails;
            let mut end = 0;
            hits.retain(|h| {
                let keep = h.range.start >= end || rails[h.rail].action == Action::Block;
                if keep {
                    end = end.max(h.range.end);
                }
                keep
            });
        }
    }

    /// The first blocking hit, if any.
    fn blocking(&self, hits: &[Hit]) -> Option<Blocked> {
        hits.iter()
            .find(|h| self.rails[h.rail].action == Action::Block)
            .map(|h| Blocked {
                guardrail: self.rails[h.rail].name.clone(),
                rail: h.rail,
                at: h.range.start,
            })
    }

    /// The placeholder label of a hit.
    fn label(&self, hit: &Hit) -> &str {
        match hit.entity {
            Some(e) => e.label(),
            None => &self.rails[hit.rail].label,
        }
    }
}

/// A guardrail with `action: block` found something. Carries the guardrail's name and where
/// (in the text being checked) the value starts; never the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    pub guardrail: Box<str>,
    /// Its index in the plan.
    pub rail: usize,
    /// Byte offset of the blocked value in the text that was checked (answers are cut there).
    pub at: usize,
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the content was blocked by the guardrail '{}'",
            self.guardrail
        )
    }
}

/// What each guardrail of a plan did, for `x-gateway-guardrails` and the actions metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Passed,
    Masked,
    Redacted,
    Blocked,
}

impl Outcome {
    /// The metric's and the header's word.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Masked => "masked",
            Outcome::Redacted => "redacted",
            Outcome::Blocked => "blocked",
        }
    }

    fn of(action: Action) -> Outcome {
        match action {
            Action::Mask => Outcome::Masked,
            Action::Redact => Outcome::Redacted,
            Action::Block => Outcome::Blocked,
        }
    }
}

/// The strongest outcome of each guardrail of a plan so far (index = the plan's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report(Vec<Outcome>);

impl Report {
    pub fn new(plan: &Plan) -> Report {
        Report(vec![Outcome::Passed; plan.rails.len()])
    }

    fn note(&mut self, rail: usize, o: Outcome) {
        if let Some(slot) = self.0.get_mut(rail)
            && o > *slot
        {
            *slot = o;
        }
    }

    pub fn outcomes(&self) -> &[Outcome] {
        &self.0
    }

    /// `name=outcome` pairs, comma-separated (`pii=masked,topics=passed`).
    pub fn header_value(&self, plan: &Plan) -> String {
        let mut out = String::new();
        for (g, o) in plan.rails.iter().zip(&self.0) {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(&g.name);
            out.push('=');
            out.push_str(o.as_str());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn plan(rails: Vec<Guardrail>) -> Plan {
        Plan::new(rails.into_iter().map(Arc::new).collect())
    }

    #[test]
    fn labels_and_owners() {
        assert_eq!(&*label_of("no-internal-projects"), "NO_INTERNAL_PROJECTS");
        let p = plan(vec![
            Guardrail::pii("a", Entities::of(&[Entity::Email]), Action::Mask),
            Guardrail::pii("b", Entities::all(), Action::Redact),
        ]);
        assert_eq!(p.owner[Entity::Email as usize], 0);
        assert_eq!(p.owner[Entity::Phone as usize], 1);
    }

    #[test]
    fn scan_orders_and_resolves_overlaps() {
        let p = plan(vec![
            Guardrail::pii("pii", Entities::all(), Action::Mask),
            Guardrail::regex("corp", &["corp\\.example\\.com"], Action::Mask).unwrap(),
            Guardrail::regex("falcon", &["(?i)project\\s+falcon"], Action::Block).unwrap(),
        ]);
        let text = "mail bob@corp.example.com about Project Falcon";
        let mut hits = Vec::new();
        p.scan(text, &mut hits);
        let got: Vec<_> = hits
            .iter()
            .map(|h| (&text[h.range.clone()], h.rail))
            .collect();
        assert_eq!(
            got,
            vec![("bob@corp.example.com", 0), ("Project Falcon", 2)]
        );
        // A block overlapping a mask is kept.
        let p = plan(vec![
            Guardrail::pii("pii", Entities::all(), Action::Mask),
            Guardrail::regex("corp", &["corp"], Action::Block).unwrap(),
        ]);
        p.scan(text, &mut hits);
        assert_eq!(p.blocking(&hits).map(|b| b.guardrail), Some("corp".into()));
    }

    #[test]
    fn request_state_can_move_into_a_stream() {
        fn send<T: Send + 'static>() {}
        fn shared<T: Send + Sync + 'static>() {}
        shared::<Plan>();
        shared::<Guardrail>();
        send::<Vault>();
        send::<Report>();
        send::<answer::StreamGuard>();
    }

    #[test]
    fn report_header() {
        let p = plan(vec![
            Guardrail::pii("pii", Entities::all(), Action::Mask),
            Guardrail::regex("topics", &["x"], Action::Block).unwrap(),
        ]);
        let mut r = Report::new(&p);
        r.note(0, Outcome::Masked);
        assert_eq!(r.header_value(&p), "pii=masked,topics=passed");
    }
}
