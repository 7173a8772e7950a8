//! The actions over one text: on the way in, mask and redact values with the vault's
//! placeholders or refuse the text; on the way out (an answer's text), redact or cut at a
//! blocked value, then restore the masked placeholders. Nothing is allocated when nothing is
//! found.

use super::{Action, Blocked, Hit, Outcome, Plan, Report, Vault};

/// Which side of the call a text is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Side {
    /// Request text: mask and redact replace, block refuses.
    Input,
    /// Answer text: redact replaces, block cuts; a masking guardrail only restores.
    Output,
}

/// Apply `plan` to one request text: `Ok(None)` when nothing matched, `Ok(Some(text))` with
/// masked and redacted values replaced by placeholders, `Err` when a blocking guardrail matched
/// (its name only). `hits` is scratch space, reused across calls.
pub fn guard_text(
    plan: &Plan,
    text: &str,
    vault: &mut Vault,
    report: &mut Report,
    hits: &mut Vec<Hit>,
) -> Result<Option<String>, Blocked> {
    plan.scan(text, hits);
    if hits.is_empty() {
        return Ok(None);
    }
    vault.reserve_literals(text);
    if let Some(b) = plan.blocking(hits) {
        report.note(b.rail, Outcome::Blocked);
        return Err(b);
    }
    let mut out = String::with_capacity(text.len() + 16);
    replace(plan, text, 0, hits, vault, report, Side::Input, &mut out);
    Ok(Some(out))
}

/// Append `text[from..]` to `out` with each hit replaced by its placeholder (on the output side,
/// the hits of masking guardrails are left as they are; hits before `from` are skipped).
/// Blocking hits must have been dealt with.
#[expect(
    clippy::too_many_arguments,
    reason = "the request's state, passed apart"
)]
pub(super) fn replace(
    plan: &Plan,
    text: &str,
    from: usize,
    hits: &[Hit],
    vault: &mut Vault,
    report: &mut Report,
    side: Side,
    out: &mut String,
) {
    let mut done = from;
    for h in hits {
        let action = plan.rails[h.rail].action;
        let acts = !matches!(
            (side, action),
            (_, Action::Block) | (Side::Output, Action::Mask)
        );
        if !acts || h.range.start < done {
            continue;
        }
        out.push_str(&text[done..h.range.start]);
        out.push_str(vault.placeholder(
            plan.label(h),
            &text[h.range.clone()],
            action == Action::Mask,
        ));
        report.note(h.rail, Outcome::of(action));
        done = h.range.end;
    }
    out.push_str(&text[done..]);
}

/// An answer's text after the output side: `text` is `None` when unchanged, `blocked` says a
/// blocking guardrail matched (the text is then cut where the value started).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Checked {
    pub text: Option<String>,
    pub blocked: Option<Blocked>,
}

/// The output side over one complete answer text: `plan` (the guardrails applying to output,
/// if any) redacts or cuts; then the vault's masked placeholders are restored. `json` says
/// the text is JSON source (tool-call arguments).
pub(super) fn guard_answer_text(
    plan: Option<&Plan>,
    text: &str,
    json: bool,
    vault: &mut Vault,
    report: &mut Report,
    hits: &mut Vec<Hit>,
) -> Checked {
    let mut checked = Checked::default();
    let mut redacted = None;
    if let Some(plan) = plan {
        plan.scan(text, hits);
        if !hits.is_empty() {
            let mut upto = text.len();
            if let Some(b) = plan.blocking(hits) {
                report.note(b.rail, Outcome::Blocked);
                upto = b.at;
                hits.retain(|h| h.range.end <= upto);
                checked.blocked = Some(b);
            }
            let mut out = String::with_capacity(upto + 16);
            replace(
                plan,
                &text[..upto],
                0,
                hits,
                vault,
                report,
                Side::Output,
                &mut out,
            );
            if out != text {
                redacted = Some(out);
            }
        }
    }
    let current = redacted.as_deref().unwrap_or(text);
    checked.text = match vault.restore(current, json) {
        Some(restored) => Some(restored),
        None => redacted,
    };
    checked
}

#[cfg(test)]
mod tests {
    use super::super::tests::plan;
    use super::super::{Entities, Guardrail};
    use super::*;

    #[test]
    fn masks_redacts_and_blocks() {
        let p = plan(vec![
            Guardrail::pii("pii", Entities::all(), Action::Mask),
            Guardrail::regex("codes", &["ACME-\\d+"], Action::Redact).unwrap(),
        ]);
        let mut v = Vault::default();
        let mut r = Report::new(&p);
        let mut hits = Vec::new();
        let out = guard_text(
            &p,
            "a@x.io, ACME-12 and a@x.io; b@x.io",
            &mut v,
            &mut r,
            &mut hits,
        );
        assert_eq!(
            out,
            Ok(Some(
                "[EMAIL_1], [CODES_1] and [EMAIL_1]; [EMAIL_2]".to_owned()
            ))
        );
        assert_eq!(r.header_value(&p), "pii=masked,codes=redacted");
        assert_eq!(
            guard_text(&p, "plain text", &mut v, &mut r, &mut hits),
            Ok(None)
        );

        let p = plan(vec![
            Guardrail::regex("falcon", &["(?i)falcon"], Action::Block).unwrap(),
        ]);
        let mut r = Report::new(&p);
        let e = guard_text(&p, "about FALCON", &mut v, &mut r, &mut hits).unwrap_err();
        assert_eq!(&*e.guardrail, "falcon");
        assert!(!e.to_string().contains("FALCON"));
        assert_eq!(r.header_value(&p), "falcon=blocked");
    }

    #[test]
    fn answers_are_cut_redacted_and_restored() {
        let input = plan(vec![Guardrail::pii("pii", Entities::all(), Action::Mask)]);
        let mut v = Vault::default();
        let mut r = Report::new(&input);
        let mut hits = Vec::new();
        guard_text(&input, "I am a@x.io", &mut v, &mut r, &mut hits).unwrap();
        let output = plan(vec![
            Guardrail::pii(
                "ips",
                Entities::of(&[super::super::Entity::IpAddress]),
                Action::Redact,
            ),
            Guardrail::regex("falcon", &["falcon"], Action::Block).unwrap(),
        ]);
        let mut r = Report::new(&output);
        let c = guard_answer_text(
            Some(&output),
            "Hi [EMAIL_1] at 10.0.0.1",
            false,
            &mut v,
            &mut r,
            &mut hits,
        );
        assert_eq!(c.text.as_deref(), Some("Hi a@x.io at [IP_ADDRESS_1]"));
        let c = guard_answer_text(
            Some(&output),
            "[EMAIL_1]: the falcon is",
            false,
            &mut v,
            &mut r,
            &mut hits,
        );
        assert_eq!(c.text.as_deref(), Some("a@x.io: the "));
        assert_eq!(c.blocked.map(|b| b.at), Some(15));
        let c = guard_answer_text(None, "nothing", false, &mut v, &mut r, &mut hits);
        assert_eq!(c, Checked::default());
    }
}
