//! Streamed answer text, one delta at a time.
//!
//! [`Restorer`] restores masked placeholders and holds back only a possible placeholder split
//! across deltas: the text from the last `[` when it is a proper prefix of one of the vault's
//! restorable placeholders (`…[EMA` waits for `IL_1]…`); anything else is released at once, and
//! the held text is released at the end. Its output is the same for every split of an answer.
//!
//! [`OutputScan`] runs the output-side guardrails (redact, block) over streamed text. A value can
//! only be judged whole, so the last [`HOLD_BACK`] bytes are held (and more, back to the start of
//! a value that crosses that point, and up to `RELEASE_STEP` more between scans); text before
//! them is released with redacted values replaced,
//! and a blocking value stops the stream where it starts. The scan keeps some released text as
//! left context, so boundaries are judged as in the whole text. Values up to `HOLD_BACK` bytes
//! long are judged exactly as in the whole text.
//!
//! [`TextStream`] chains the two: output checks on the model's own text, then restoring.

use super::apply::{Side, replace};
use super::{Blocked, Hit, Outcome, Plan, Report, Vault};

/// Bytes of streamed text held back while output guardrails judge them.
pub const HOLD_BACK: usize = 64;

/// Text is judged once this much more than [`HOLD_BACK`] is pending, so a stream of small
/// deltas is scanned every few deltas rather than at each.
const RELEASE_STEP: usize = 32;

/// Bytes of released text kept as left context for the next scan.
const CONTEXT: usize = 64;

/// Restores placeholders in streamed text.
#[derive(Debug, Default)]
pub struct Restorer {
    held: String,
    /// The text is JSON source (tool-call arguments): originals are written escaped.
    json: bool,
}

impl Restorer {
    pub fn new(json: bool) -> Restorer {
        Restorer {
            held: String::new(),
            json,
        }
    }

    /// Restore what can be restored of `held + delta` into `out`; hold a possible placeholder
    /// prefix at the end.
    pub fn push(&mut self, vault: &Vault, delta: &str, out: &mut String) {
        if vault.longest() == 0 {
            out.push_str(&self.held);
            self.held.clear();
            out.push_str(delta);
            return;
        }
        let joined;
        let text = if self.held.is_empty() {
            delta
        } else {
            joined = std::mem::take(&mut self.held) + delta;
            joined.as_str()
        };
        let done = vault.restore_into(text, self.json, out);
        let rest = &text[done..];
        let hold_from = match memchr::memrchr(b'[', rest.as_bytes()) {
            Some(i) if vault.could_complete(&rest[i..]) => i,
            _ => rest.len(),
        };
        out.push_str(&rest[..hold_from]);
        self.held.push_str(&rest[hold_from..]);
    }

    /// Release the held text (it cannot be a placeholder any more).
    pub fn finish(&mut self, out: &mut String) {
        out.push_str(&self.held);
        self.held.clear();
    }

    /// Bytes currently held back.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

/// Output-side guardrails over streamed text.
#[derive(Debug, Default)]
pub struct OutputScan {
    /// Left context (`..ctx`, already released) and the text not yet released (`ctx..`).
    pending: String,
    ctx: usize,
    /// Bytes of the stream's text released and dropped from `pending` so far.
    dropped: usize,
}

impl OutputScan {
    /// Add a delta; append the text now judged (redacted) to `out`. On a block, `out` ends where
    /// the blocked value starts and nothing more should be sent of this text.
    pub fn push(
        &mut self,
        plan: &Plan,
        vault: &mut Vault,
        report: &mut Report,
        hits: &mut Vec<Hit>,
        delta: &str,
        out: &mut String,
    ) -> Result<(), Blocked> {
        self.pending.push_str(delta);
        if self.pending.len() - self.ctx <= HOLD_BACK + RELEASE_STEP {
            return Ok(());
        }
        self.release(plan, vault, report, hits, false, out)
    }

    /// Judge and release the rest.
    pub fn finish(
        &mut self,
        plan: &Plan,
        vault: &mut Vault,
        report: &mut Report,
        hits: &mut Vec<Hit>,
        out: &mut String,
    ) -> Result<(), Blocked> {
        self.release(plan, vault, report, hits, true, out)
    }

    fn release(
        &mut self,
        plan: &Plan,
        vault: &mut Vault,
        report: &mut Report,
        hits: &mut Vec<Hit>,
        last: bool,
        out: &mut String,
    ) -> Result<(), Blocked> {
        let text = self.pending.as_str();
        let mut cut = if last {
            text.len()
        } else {
            floor_boundary(text, text.len() - HOLD_BACK)
        };
        plan.scan(text, hits);
        // Values that started in the context were judged before.
        hits.retain(|h| h.range.start >= self.ctx);
        let mut blocked = None;
        if let Some(mut b) = plan.blocking(hits)
            && b.at < cut
        {
            cut = b.at;
            report.note(b.rail, Outcome::Blocked);
            b.at += self.dropped;
            blocked = Some(b);
        }
        if let Some(h) = hits
            .iter()
            .find(|h| h.range.start < cut && h.range.end > cut)
        {
            cut = h.range.start;
        }
        hits.retain(|h| h.range.end <= cut);
        replace(
            plan,
            &text[..cut],
            self.ctx,
            hits,
            vault,
            report,
            Side::Output,
            out,
        );
        if let Some(b) = blocked {
            self.pending.clear();
            self.ctx = 0;
            return Err(b);
        }
        let keep_from = floor_boundary(text, cut.saturating_sub(CONTEXT));
        self.pending.drain(..keep_from);
        self.dropped += keep_from;
        self.ctx = cut - keep_from;
        Ok(())
    }
}

/// The largest char boundary at or below `i`.
fn floor_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// One streamed text (a choice's content, a content block, a tool call's arguments): output
/// checks, when the answer has any, then restoring.
#[derive(Debug, Default)]
pub struct TextStream {
    scan: Option<OutputScan>,
    restorer: Restorer,
    scratch: String,
}

impl TextStream {
    /// `checks`: output guardrails apply to this text; `json`: the text is JSON source.
    pub fn new(checks: bool, json: bool) -> TextStream {
        TextStream {
            scan: checks.then(OutputScan::default),
            restorer: Restorer::new(json),
            scratch: String::new(),
        }
    }

    /// Add a delta; append what can be sent now to `out`. On a block, `out` holds the text
    /// before the blocked value and the stream should end.
    pub fn push(
        &mut self,
        plan: Option<&Plan>,
        vault: &mut Vault,
        report: &mut Report,
        hits: &mut Vec<Hit>,
        delta: &str,
        out: &mut String,
    ) -> Result<(), Blocked> {
        match (&mut self.scan, plan) {
            (Some(scan), Some(plan)) => {
                self.scratch.clear();
                let r = scan.push(plan, vault, report, hits, delta, &mut self.scratch);
                self.restorer.push(vault, &self.scratch, out);
                if r.is_err() {
                    self.restorer.finish(out);
                }
                r
            }
            _ => {
                self.restorer.push(vault, delta, out);
                Ok(())
            }
        }
    }

    /// The end of this text: release everything held.
    pub fn finish(
        &mut self,
        plan: Option<&Plan>,
        vault: &mut Vault,
        report: &mut Report,
        hits: &mut Vec<Hit>,
        out: &mut String,
    ) -> Result<(), Blocked> {
        let mut r = Ok(());
        if let (Some(scan), Some(plan)) = (&mut self.scan, plan) {
            self.scratch.clear();
            r = scan.finish(plan, vault, report, hits, &mut self.scratch);
            self.restorer.push(vault, &self.scratch, out);
        }
        self.restorer.finish(out);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::plan;
    use super::super::{Action, Entities, Guardrail};
    use super::*;

    fn vault() -> Vault {
        let mut v = Vault::default();
        v.placeholder("EMAIL", "jane@example.com", true);
        v.placeholder("NO_INTERNAL_PROJECTS", "falcon", true);
        v
    }

    fn restore_chunks(v: &Vault, chunks: &[&str]) -> (String, usize) {
        let mut r = Restorer::new(false);
        let mut out = String::new();
        let mut max_held = 0;
        for c in chunks {
            r.push(v, c, &mut out);
            max_held = max_held.max(r.held());
        }
        r.finish(&mut out);
        (out, max_held)
    }

    #[test]
    fn a_placeholder_split_across_deltas_is_restored() {
        let v = vault();
        let (out, _) = restore_chunks(&v, &["Write to [EMA", "IL_1] today", " [", "EMAIL_1]"]);
        assert_eq!(out, "Write to jane@example.com today jane@example.com");
        let (out, held) = restore_chunks(&v, &["a [link](x) and [NO_INTERNAL_", "PROJECTS_1]"]);
        assert_eq!(out, "a [link](x) and falcon");
        assert!(held <= 24);
        // A `[` that cannot start a placeholder is released at once.
        let mut r = Restorer::new(false);
        let mut out = String::new();
        r.push(&v, "list [1", &mut out);
        assert_eq!(out, "list [1");
        r.push(&v, "x [EMAIL_9", &mut out);
        assert_eq!(r.held(), 0);
        r.push(&v, "x [EMAIL_1", &mut out);
        assert_eq!(r.held(), "[EMAIL_1".len());
    }

    #[test]
    fn output_scan_redacts_and_blocks_across_deltas() {
        let p = plan(vec![
            Guardrail::pii("pii", Entities::all(), Action::Redact),
            Guardrail::regex("falcon", &["(?i)project falcon"], Action::Block).unwrap(),
        ]);
        let mut v = Vault::default();
        let mut r = Report::new(&p);
        let mut hits = Vec::new();
        let mut s = TextStream::new(true, false);
        let mut out = String::new();
        let text = "Reach me at jane@exam".to_owned()
            + "ple.com or 555-123-4567. "
            + &"filler ".repeat(20);
        for ch in text.as_bytes().chunks(7) {
            let ch = std::str::from_utf8(ch).unwrap();
            s.push(Some(&p), &mut v, &mut r, &mut hits, ch, &mut out)
                .unwrap();
        }
        s.finish(Some(&p), &mut v, &mut r, &mut hits, &mut out)
            .unwrap();
        assert_eq!(
            out,
            "Reach me at [EMAIL_1] or [PHONE_1]. ".to_owned() + &"filler ".repeat(20)
        );

        let mut s = TextStream::new(true, false);
        let mut out = String::new();
        let mut blocked = None;
        for ch in ["About Proj", "ect Fal", "con: the plan", &"x".repeat(100)] {
            if let Err(b) = s.push(Some(&p), &mut v, &mut r, &mut hits, ch, &mut out) {
                blocked = Some(b);
                break;
            }
        }
        assert_eq!(out, "About ");
        assert_eq!(
            blocked.map(|b| (b.guardrail, b.at)),
            Some(("falcon".into(), 6))
        );
        assert_eq!(r.header_value(&p), "pii=redacted,falcon=blocked");
    }
}
