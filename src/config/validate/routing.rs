//! `models[].hedge` and `models[].shadow`: a hedge needs another deployment to go to, a shadow
//! another model.

use super::Ctx;
use crate::config::{Dur, HedgeAfter, ModelConfig, hint_for};

/// Most extra requests a hedge may send.
pub(crate) const MAX_HEDGES: u32 = 4;

pub(super) fn check_hedge_shadow(m: &ModelConfig, at: &str, models: &[&str], cx: &mut Ctx) {
    if let Some(h) = &m.hedge {
        if h.max == 0 || h.max > MAX_HEDGES {
            cx.err(
                format!("{at}.hedge.max"),
                format!("must be 1 to {MAX_HEDGES} (extra requests at most)"),
                None,
            );
        }
        if h.after == HedgeAfter::Fixed(Dur::millis(0)) {
            cx.err(
                format!("{at}.hedge.after"),
                "must be more than 0 (a hedge at once doubles every request)",
                None,
            );
        }
        if m.deployments.len() < 2 {
            cx.err(
                format!("{at}.hedge"),
                format!(
                    "model \"{}\" has one deployment: a hedge goes to another one",
                    m.name
                ),
                None,
            );
        }
    }
    if let Some(s) = &m.shadow {
        if s.model == m.name {
            cx.err(
                format!("{at}.shadow.model"),
                format!("model \"{}\" shadows itself", m.name),
                None,
            );
        } else if !models.contains(&s.model.as_str()) {
            let others: Vec<&str> = models.iter().copied().filter(|n| *n != m.name).collect();
            cx.err(
                format!("{at}.shadow.model"),
                format!("no model named \"{}\"", s.model),
                hint_for(&s.model, &others, "known models"),
            );
        }
        if !(s.sample.is_finite() && (0.0..=1.0).contains(&s.sample)) {
            cx.err(
                format!("{at}.shadow.sample"),
                "must be a fraction from 0 to 1",
                None,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{HedgeAfter, load_str};

    fn errors(models: &str) -> String {
        let text = format!("providers: [{{name: p, type: mock}}]\nmodels:\n{models}");
        match load_str(&text, &|_| None) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    const TWO: &str = "deployments: [{provider: p, model: a}, {provider: p, model: b}]";

    #[test]
    fn hedge_and_shadow_are_checked() {
        let ok = format!(
            "  - {{name: m, {TWO}, hedge: {{after: p95, max: 2}}, shadow: {{model: n, sample: 0.05}}}}\n  - {{name: n, {TWO}}}\n"
        );
        assert_eq!(errors(&ok), "");
        let cfg = load_str(
            &format!("providers: [{{name: p, type: mock}}]\nmodels:\n{ok}"),
            &|_| None,
        )
        .unwrap();
        let h = cfg.models[0].hedge.as_ref().unwrap();
        assert_eq!((h.after, h.max), (HedgeAfter::Percentile(0.95), 2));
        let e = errors(&format!("  - {{name: m, {TWO}, hedge: {{after: p100}}}}\n"));
        assert!(e.contains("not a percentile"), "{e}");
        let e = errors(&format!("  - {{name: m, {TWO}, hedge: {{after: 0ms}}}}\n"));
        assert!(e.contains("models[0].hedge.after"), "{e}");
        let e = errors(&format!(
            "  - {{name: m, {TWO}, hedge: {{after: 1s, max: 9}}}}\n"
        ));
        assert!(e.contains("models[0].hedge.max"), "{e}");
        let e =
            errors("  - {name: m, deployments: [{provider: p, model: a}], hedge: {after: 1s}}\n");
        assert!(e.contains("a hedge goes to another one"), "{e}");
        let e = errors(&format!(
            "  - {{name: m, {TWO}, shadow: {{model: nn, sample: 2}}}}\n  - {{name: n, {TWO}}}\n"
        ));
        assert!(e.contains("no model named \"nn\""), "{e}");
        assert!(e.contains("models[0].shadow.sample"), "{e}");
        let e = errors(&format!(
            "  - {{name: m, {TWO}, shadow: {{model: m, sample: 1}}}}\n"
        ));
        assert!(e.contains("shadows itself"), "{e}");
    }
}
