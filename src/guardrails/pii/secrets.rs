//! Secrets: API-key-shaped tokens.
//!
//! By their prefix (one regex, whose literal prefixes make it a fast substring search):
//! - `sk-…` (OpenAI `sk-`, `sk-proj-`, `sk-svcacct-`, Anthropic `sk-ant-…`, this gateway's
//!   `sk-gw-…`): `sk-` and 20 or more of `A-Z a-z 0-9 _ -`, with at least one digit;
//! - AWS access key ids: `AKIA` or `ASIA` and 16 capitals or digits; a 40-character secret key
//!   (`A-Z a-z 0-9 / +`, with a digit) standing within 160 bytes after one is a secret too;
//! - GitHub tokens `ghp_ gho_ ghu_ ghs_ ghr_` and 36+ letters or digits, `github_pat_…`;
//! - Google API keys `AIza` and 35 of `A-Z a-z 0-9 _ -`; Slack `xoxb- xoxp- xoxa- xoxo- xoxs-`;
//!   GitLab `glpat-`;
//! - `Bearer <token>` (16+ token characters): the token is the value, `Bearer ` stays.
//!
//! Labelled: a label ending in `key`, `token`, `secret`, `password`/`passwd`/`pwd` or
//! `credential(s)` (any case, e.g. `api_key`, `X-Auth-Token`, `aws_secret_access_key`), then `:`
//! or `=` (quotes and spaces allowed around), then a value of 32+ of `A-Z a-z 0-9 _ - + / = . ~`
//! that mixes letters and digits and has at least 3 bits of entropy per character.

use std::ops::Range;
use std::sync::LazyLock;

use memchr::memchr2_iter;
use regex::Regex;

use super::Entity;

static PREFIXED: LazyLock<Result<Regex, regex::Error>> = LazyLock::new(|| {
    Regex::new(
        r"(?x-u)
        \b(?:
            sk-[A-Za-z0-9_\-]{20,}
          | (?:AKIA|ASIA)[A-Z0-9]{16}\b
          | gh[pousr]_[A-Za-z0-9]{36,255}\b
          | github_pat_[A-Za-z0-9_]{22,255}
          | AIza[A-Za-z0-9_\-]{35}
          | xox[bpaos]-[A-Za-z0-9\-]{10,}
          | glpat-[A-Za-z0-9_\-]{20,}
          | Bearer[\ \t]+([A-Za-z0-9\-._~+/]{16,}=*)
        )",
    )
});

/// How far after an AWS access key id its secret key is looked for.
const AWS_PAIR_WINDOW: usize = 160;

pub(super) fn scan(text: &str, emit: &mut dyn FnMut(Range<usize>, Entity)) {
    prefixed(text, emit);
    labelled(text, emit);
}

fn prefixed(text: &str, emit: &mut dyn FnMut(Range<usize>, Entity)) {
    let Ok(re) = PREFIXED.as_ref() else {
        return;
    };
    let b = text.as_bytes();
    let mut at = 0;
    while let Some(caps) = re.captures_at(text, at) {
        let Some(whole) = caps.get(0) else { break };
        at = whole.end();
        let value = caps.get(1).unwrap_or(whole);
        let s = value.as_str();
        if s.starts_with("sk-") && !s.bytes().any(|c| c.is_ascii_digit()) {
            continue;
        }
        emit(value.range(), Entity::Secret);
        if (s.starts_with("AKIA") || s.starts_with("ASIA"))
            && let Some(r) = aws_secret_after(b, at)
        {
            at = r.end;
            emit(r, Entity::Secret);
        }
    }
}

fn is_aws_secret_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'/' || c == b'+'
}

/// A 40-character AWS secret access key standing alone within the window after `from`.
fn aws_secret_after(b: &[u8], from: usize) -> Option<Range<usize>> {
    let end = (from + AWS_PAIR_WINDOW).min(b.len());
    let mut i = from;
    while i < end {
        if !is_aws_secret_char(b[i]) {
            i += 1;
            continue;
        }
        let s = i;
        while i < b.len() && is_aws_secret_char(b[i]) {
            i += 1;
        }
        let standalone = (s == 0 || !matches!(b[s - 1], b'=' | b'_' | b'-'))
            && b.get(i)
                .is_none_or(|&c| c != b'=' && c != b'_' && c != b'-');
        let word = &b[s..i];
        if i - s == 40 && standalone && word.iter().any(u8::is_ascii_digit) {
            return Some(s..i);
        }
    }
    None
}

fn is_value_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'+' | b'/' | b'=' | b'.' | b'~')
}

fn labelled(text: &str, emit: &mut dyn FnMut(Range<usize>, Entity)) {
    let b = text.as_bytes();
    let mut done = 0;
    for sep in memchr2_iter(b':', b'=', b) {
        if sep < done || !has_secret_label(b, sep) {
            continue;
        }
        let mut s = sep + 1;
        while s < b.len() && matches!(b[s], b' ' | b'\t' | b'"' | b'\'') {
            s += 1;
        }
        let mut e = s;
        while e < b.len() && is_value_char(b[e]) {
            e += 1;
        }
        if e - s >= 32 && looks_random(&b[s..e]) {
            emit(s..e, Entity::Secret);
            done = e;
        }
    }
}

/// Whether the word before `sep` (past spaces and a closing quote) names a secret.
fn has_secret_label(b: &[u8], sep: usize) -> bool {
    let mut e = sep;
    while e > 0 && matches!(b[e - 1], b' ' | b'\t' | b'"' | b'\'') {
        e -= 1;
    }
    let mut s = e;
    while s > 0
        && e - s < 64
        && (b[s - 1].is_ascii_alphanumeric() || matches!(b[s - 1], b'_' | b'-' | b'.'))
    {
        s -= 1;
    }
    let word = &b[s..e];
    let ends = |suffix: &[u8]| {
        word.len() >= suffix.len() && word[word.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
    };
    ends(b"key")
        || ends(b"token")
        || ends(b"secret")
        || ends(b"password")
        || ends(b"passwd")
        || ends(b"pwd")
        || ends(b"credential")
        || ends(b"credentials")
}

/// Letters and digits mixed, and at least 3 bits of Shannon entropy per character.
fn looks_random(v: &[u8]) -> bool {
    if !v.iter().any(u8::is_ascii_digit) || !v.iter().any(u8::is_ascii_alphabetic) {
        return false;
    }
    let mut counts = [0u32; 128];
    for &c in v {
        counts[usize::from(c & 0x7f)] += 1;
    }
    let n = v.len() as f64;
    let bits: f64 = counts
        .iter()
        .filter(|&&k| k > 0)
        .map(|&k| {
            let p = f64::from(k) / n;
            -p * p.log2()
        })
        .sum();
    bits >= 3.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        scan(text, &mut |r, _| out.push(&text[r]));
        out
    }

    #[test]
    fn the_pattern_compiles() {
        assert!(PREFIXED.is_ok());
    }

    #[test]
    fn prefixed_tokens() {
        for (text, secret) in [
            (
                "key sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z here",
                "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
            ),
            (
                "sk-ant-api03-abcdefghij0123456789ABCDEFG",
                "sk-ant-api03-abcdefghij0123456789ABCDEFG",
            ),
            (
                "sk-gw-0123456789abcdefghijABCDEFGHIJ0123456789",
                "sk-gw-0123456789abcdefghijABCDEFGHIJ0123456789",
            ),
            ("AKIAIOSFODNN7EXAMPLE,", "AKIAIOSFODNN7EXAMPLE"),
            (
                "ghp_0123456789abcdefghijABCDEFGHIJ012345",
                "ghp_0123456789abcdefghijABCDEFGHIJ012345",
            ),
            (
                "AIzaSyA1234567890abcdefghijklmnopqrstuv",
                "AIzaSyA1234567890abcdefghijklmnopqrstuv",
            ),
            (
                "xoxb-123456789012-abcdefABCDEF",
                "xoxb-123456789012-abcdefABCDEF",
            ),
            (
                "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc",
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc",
            ),
        ] {
            assert_eq!(found(text), vec![secret], "{text}");
        }
    }

    #[test]
    fn aws_pair() {
        let text = "aws AKIAIOSFODNN7EXAMPLE / wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY end";
        assert_eq!(
            found(text),
            vec![
                "AKIAIOSFODNN7EXAMPLE",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
            ]
        );
    }

    #[test]
    fn labelled_tokens() {
        assert_eq!(
            found(r#"{"api_key": "Zx81kQp0rT5vW2yB7nC4mL9aS6dF3gH1"}"#),
            vec!["Zx81kQp0rT5vW2yB7nC4mL9aS6dF3gH1"]
        );
        assert_eq!(
            found("aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            vec!["wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"]
        );
        assert_eq!(
            found("X-Auth-Token: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"),
            vec!["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]
        );
    }

    #[test]
    fn near_misses() {
        for text in [
            "task-0123456789abcdefghijklmnop",     // sk- inside a word
            "sk-learn-compatible-estimators-here", // no digit
            "AKIA1234",                            // too short
            "AKIAIOSFODNN7EXAMPLEX",               // too long
            "Bearer short",
            "token: this_is_a_long_descriptive_identifier_name",
            "token: 00000000000000000000000000000000000",
            "monkey business: none",
            "ghp_short",
        ] {
            assert_eq!(found(text), Vec::<&str>::new(), "{text}");
        }
    }
}
