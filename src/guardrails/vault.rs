//! The per-request vault: each distinct value replaced in a request gets one placeholder
//! (`[EMAIL_1]`, `[EMAIL_2]`, `[NO_INTERNAL_PROJECTS_1]`), the same one wherever it appears in
//! the request, and masked values are kept to restore them in the answer. Redacted values are
//! not kept. The vault lives as long as its request; its `Debug` shows counts, never values.

use std::collections::{HashMap, HashSet};

use foldhash::fast::RandomState;

struct Entry {
    placeholder: Box<str>,
    /// The original value, kept only while every use of it was a mask.
    original: Option<Box<str>>,
}

/// Placeholders and the originals they stand for.
#[derive(Default)]
pub struct Vault {
    entries: Vec<Entry>,
    /// Value (or, for redacted values, never-kept value's placeholder) → entry.
    by_value: HashMap<Box<str>, usize, RandomState>,
    by_placeholder: HashMap<Box<str>, usize, RandomState>,
    /// Placeholder-shaped text the request already carried: never issued, never restored.
    reserved: HashSet<Box<str>, RandomState>,
    /// Placeholders issued per label.
    counts: HashMap<Box<str>, usize, RandomState>,
    /// The longest restorable placeholder, in bytes (the streaming hold-back's bound).
    longest: usize,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("placeholders", &self.entries.len())
            .field("restorable", &self.restorable())
            .finish()
    }
}

impl Vault {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many placeholders restore to an original.
    pub fn restorable(&self) -> usize {
        self.entries.iter().filter(|e| e.original.is_some()).count()
    }

    /// The placeholder of `value` under `label`: the one it already has in this request, or a
    /// new one. `keep` (mask) keeps the original for restoring; a value redacted anywhere in the
    /// request is never restored.
    pub fn placeholder(&mut self, label: &str, value: &str, keep: bool) -> &str {
        let idx = match self.by_value.get(value) {
            Some(&i) => {
                if !keep {
                    self.entries[i].original = None;
                }
                i
            }
            None => {
                let n = self.counts.entry(label.into()).or_insert(0);
                let mut p = String::with_capacity(label.len() + 8);
                loop {
                    *n += 1;
                    p.clear();
                    p.push('[');
                    p.push_str(label);
                    p.push('_');
                    p.push_str(itoa::Buffer::new().format(*n));
                    p.push(']');
                    if !self.reserved.contains(p.as_str()) {
                        break;
                    }
                }
                let placeholder: Box<str> = p.into();
                let i = self.entries.len();
                self.by_value.insert(value.into(), i);
                self.by_placeholder.insert(placeholder.clone(), i);
                self.entries.push(Entry {
                    placeholder,
                    original: keep.then(|| value.into()),
                });
                i
            }
        };
        let e = &self.entries[idx];
        if e.original.is_some() {
            self.longest = self.longest.max(e.placeholder.len());
        }
        &self.entries[idx].placeholder
    }

    /// Note the placeholder-shaped text (`[EMAIL_1]`) a request already carries, so no value is
    /// given that placeholder and the caller's own text is never "restored" into a value.
    pub fn reserve_literals(&mut self, text: &str) {
        let b = text.as_bytes();
        for open in memchr::memchr_iter(b'[', b) {
            let rest = &b[open + 1..b.len().min(open + 66)];
            let Some(close) = rest
                .iter()
                .position(|&c| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_'))
            else {
                continue;
            };
            let inner = &rest[..close];
            let digits = inner
                .iter()
                .rev()
                .take_while(|c| c.is_ascii_digit())
                .count();
            if rest[close] == b']'
                && digits > 0
                && inner.len() > digits + 1
                && inner[inner.len() - digits - 1] == b'_'
            {
                self.reserved.insert(text[open..open + close + 2].into());
            }
        }
    }

    /// The original a placeholder restores to.
    pub(super) fn original(&self, placeholder: &str) -> Option<&str> {
        let i = *self.by_placeholder.get(placeholder)?;
        self.entries[i].original.as_deref()
    }

    /// The longest restorable placeholder's length (0 when nothing restores).
    pub(super) fn longest(&self) -> usize {
        self.longest
    }

    /// Whether `tail` (starting with `[`) is a proper prefix of a restorable placeholder.
    pub(super) fn could_complete(&self, tail: &str) -> bool {
        tail.len() < self.longest
            && self.entries.iter().any(|e| {
                e.original.is_some()
                    && e.placeholder.len() > tail.len()
                    && e.placeholder.starts_with(tail)
            })
    }

    /// `text` with every restorable placeholder replaced by its original, or `None` when it
    /// holds none. With `json`, the text is JSON source (tool arguments) and each original is
    /// written escaped as JSON string content.
    pub fn restore(&self, text: &str, json: bool) -> Option<String> {
        let mut out = String::new();
        let done = self.restore_into(text, json, &mut out);
        (done > 0).then(|| {
            out.push_str(&text[done..]);
            out
        })
    }

    /// Append `text` to `out` up to just after its last restored placeholder, restoring each;
    /// returns how much of `text` was consumed (0 when it holds no placeholder, `out` untouched).
    pub(super) fn restore_into(&self, text: &str, json: bool, out: &mut String) -> usize {
        if self.longest == 0 {
            return 0;
        }
        let b = text.as_bytes();
        let mut done = 0;
        for open in memchr::memchr_iter(b'[', b) {
            if open < done {
                continue;
            }
            let window = &b[open..b.len().min(open + self.longest)];
            let Some(close) = memchr::memchr(b']', window) else {
                continue;
            };
            let candidate = &text[open..=open + close];
            if let Some(original) = self.original(candidate) {
                out.push_str(&text[done..open]);
                push_original(out, original, json);
                done = open + close + 1;
            }
        }
        done
    }
}

fn push_original(out: &mut String, original: &str, json: bool) {
    if json
        && original
            .bytes()
            .any(|c| c == b'"' || c == b'\\' || c < 0x20)
    {
        let quoted = serde_json::Value::String(original.to_owned()).to_string();
        out.push_str(&quoted[1..quoted.len() - 1]);
    } else {
        out.push_str(original);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_placeholder_per_value() {
        let mut v = Vault::default();
        assert_eq!(v.placeholder("EMAIL", "a@x.io", true), "[EMAIL_1]");
        assert_eq!(v.placeholder("EMAIL", "b@x.io", true), "[EMAIL_2]");
        assert_eq!(v.placeholder("EMAIL", "a@x.io", true), "[EMAIL_1]");
        assert_eq!(
            v.placeholder("PHONE", "+44 20 7946 0958", false),
            "[PHONE_1]"
        );
        assert_eq!(
            v.restore("to [EMAIL_2], [EMAIL_1] and [PHONE_1] [EMAIL_3]", false)
                .as_deref(),
            Some("to b@x.io, a@x.io and [PHONE_1] [EMAIL_3]")
        );
        assert_eq!(v.restore("nothing [here]", false), None);
        assert!(!format!("{v:?}").contains("x.io"));
    }

    #[test]
    fn placeholders_the_caller_wrote_are_never_issued() {
        let mut v = Vault::default();
        v.reserve_literals("see [EMAIL_1] and [EMAIL_2], not [EMAIL_] or [x_1]");
        assert_eq!(v.placeholder("EMAIL", "a@x.io", true), "[EMAIL_3]");
        assert_eq!(
            v.restore("[EMAIL_1] [EMAIL_3]", false).as_deref(),
            Some("[EMAIL_1] a@x.io")
        );
    }

    #[test]
    fn a_value_redacted_anywhere_is_not_restored() {
        let mut v = Vault::default();
        v.placeholder("SECRET", "k", true);
        v.placeholder("SECRET", "k", false);
        assert_eq!(v.restore("[SECRET_1]", false), None);
    }

    #[test]
    fn json_source_gets_escaped_originals() {
        let mut v = Vault::default();
        v.placeholder("Q", "say \"hi\"", true);
        assert_eq!(
            v.restore("{\"a\":\"[Q_1]\"}", true).as_deref(),
            Some("{\"a\":\"say \\\"hi\\\"\"}")
        );
        assert_eq!(v.restore("[Q_1]", false).as_deref(), Some("say \"hi\""));
    }
}
