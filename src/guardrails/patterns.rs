//! The patterns of a `type: regex` guardrail, compiled once when the configuration loads.
//! One pattern is searched as itself; several are searched as one alternation (one pass over
//! the text), each pattern in its own group so a bad one is reported with its index.

use std::ops::Range;

use regex::{Regex, RegexBuilder};

use crate::config::{PATTERN_SIZE_LIMIT, compile_pattern};

/// A pattern that does not compile: its index in the guardrail's `patterns` list and the
/// regex library's message. The configuration loader turns it into an error with the
/// pattern's path and line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("patterns[{index}]: {message}")]
pub struct PatternError {
    pub index: usize,
    pub message: String,
}

/// Compiled patterns: one regex searching for all of them.
pub(super) struct Patterns {
    re: Regex,
    count: usize,
}

impl Patterns {
    pub(super) fn compile<S: AsRef<str>>(patterns: &[S]) -> Result<Patterns, PatternError> {
        if patterns.is_empty() {
            return Err(PatternError {
                index: 0,
                message: "a regex guardrail needs at least one pattern".into(),
            });
        }
        if let [one] = patterns {
            let re = compile_pattern(one.as_ref())
                .map_err(|message| PatternError { index: 0, message })?;
            return Ok(Patterns { re, count: 1 });
        }
        // Each alone first, so an error names the pattern that has it.
        for (index, p) in patterns.iter().enumerate() {
            compile_pattern(p.as_ref()).map_err(|message| PatternError { index, message })?;
        }
        let joined = patterns
            .iter()
            .map(|p| format!("(?:{})", p.as_ref()))
            .collect::<Vec<_>>()
            .join("|");
        let re = RegexBuilder::new(&joined)
            .size_limit(PATTERN_SIZE_LIMIT)
            .build()
            .map_err(|e| PatternError {
                index: 0,
                message: e.to_string(),
            })?;
        Ok(Patterns {
            re,
            count: patterns.len(),
        })
    }

    pub(super) fn len(&self) -> usize {
        self.count
    }

    /// Report each non-empty match, leftmost first.
    pub(super) fn find(&self, text: &str, emit: &mut dyn FnMut(Range<usize>)) {
        for m in self.re.find_iter(text) {
            if !m.is_empty() {
                emit(m.range());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_pattern_names_its_index() {
        let e = Patterns::compile(&["ok", "(unclosed", "fine"])
            .err()
            .unwrap();
        assert_eq!(e.index, 1);
        assert!(e.to_string().starts_with("patterns[1]: "), "{e}");
        assert!(Patterns::compile::<&str>(&[]).is_err());
    }

    #[test]
    fn finds_every_pattern() {
        let p = Patterns::compile(&["(?i)project\\s+falcon", "ACME-\\d{4}", "x*"]).unwrap();
        let text = "about PROJECT  falcon and ACME-1234";
        let mut got = Vec::new();
        p.find(text, &mut |r| got.push(&text[r]));
        assert_eq!(got, vec!["PROJECT  falcon", "ACME-1234"]);
    }
}
