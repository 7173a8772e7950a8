//! Email addresses and IPv6 addresses.
//!
//! Emails: found from each `@` (memchr): a local part of `A-Z a-z 0-9 . _ % + -` (not starting
//! with a dot) before it, and after it a domain of at least two dot-separated labels of letters,
//! digits and inner dashes whose last label (the TLD) is two or more letters. ASCII only.
//!
//! IPv6: found from each `:` (memchr): the run of hex digits, `:` and `.` around it, not touching
//! a letter, digit or `_`, with at least two colons and one hex digit, that the standard parser
//! accepts (so `::ffff:192.0.2.1` and `fe80::1` are found, times like `12:30:45` and MAC
//! addresses are not). A zone (`%eth0`) is left out of the value.

use std::net::Ipv6Addr;
use std::ops::Range;

use memchr::memchr_iter;

use super::Entity;

fn is_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

pub(super) fn emails(text: &str, emit: &mut dyn FnMut(Range<usize>, Entity)) {
    let b = text.as_bytes();
    let mut done = 0;
    for at in memchr_iter(b'@', b) {
        if at < done {
            continue;
        }
        let mut s = at;
        while s > done && is_local(b[s - 1]) {
            s -= 1;
        }
        while s < at && b[s] == b'.' {
            s += 1;
        }
        if s == at {
            continue;
        }
        if let Some(e) = domain_end(b, at + 1) {
            emit(s..e, Entity::Email);
            done = e;
        }
    }
}

/// The end of a domain name starting at `i` with at least two labels and an alphabetic TLD.
fn domain_end(b: &[u8], mut i: usize) -> Option<usize> {
    let mut labels = 0;
    let mut last = i..i;
    loop {
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'-') {
            i += 1;
        }
        while i > start && b[i - 1] == b'-' {
            i -= 1;
        }
        if i == start || b[start] == b'-' {
            // An empty or dash-edged label: the domain ends before its dot.
            if labels == 0 {
                return None;
            }
            break;
        }
        labels += 1;
        last = start..i;
        if b.get(i) == Some(&b'.') && b.get(i + 1).is_some_and(u8::is_ascii_alphanumeric) {
            i += 1;
            continue;
        }
        break;
    }
    let tld = &b[last.clone()];
    (labels >= 2 && tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic)).then_some(last.end)
}

fn is_v6(b: u8) -> bool {
    b.is_ascii_hexdigit() || b == b':' || b == b'.'
}

pub(super) fn ipv6(text: &str, emit: &mut dyn FnMut(Range<usize>, Entity)) {
    let b = text.as_bytes();
    let mut done = 0;
    for colon in memchr_iter(b':', b) {
        if colon < done {
            continue;
        }
        let mut s = colon;
        while s > done && is_v6(b[s - 1]) {
            s -= 1;
        }
        let mut e = colon + 1;
        while e < b.len() && is_v6(b[e]) {
            e += 1;
        }
        done = e;
        // Trailing punctuation: a full stop, or one colon (not `::`).
        while e > s && b[e - 1] == b'.' {
            e -= 1;
        }
        if e > s + 1 && b[e - 1] == b':' && b[e - 2] != b':' {
            e -= 1;
        }
        while s < e && b[s] == b'.' {
            s += 1;
        }
        let touches = |i: Option<&u8>| i.is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_');
        if touches(s.checked_sub(1).and_then(|p| b.get(p))) || touches(b.get(e)) {
            continue;
        }
        let cand = &text[s..e];
        let colons = cand.bytes().filter(|&c| c == b':').count();
        if colons >= 2
            && cand.bytes().any(|c| c.is_ascii_hexdigit())
            && cand.parse::<Ipv6Addr>().is_ok()
        {
            emit(s..e, Entity::IpAddress);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emails_in(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        emails(text, &mut |r, _| out.push(&text[r]));
        out
    }

    fn v6_in(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        ipv6(text, &mut |r, _| out.push(&text[r]));
        out
    }

    #[test]
    fn finds_emails() {
        assert_eq!(
            emails_in("mail jane.doe+x@example.co.uk."),
            vec!["jane.doe+x@example.co.uk"]
        );
        assert_eq!(
            emails_in("<a@b.io>, c_d@sub-domain.example.org"),
            vec!["a@b.io", "c_d@sub-domain.example.org"]
        );
        assert_eq!(emails_in("\"to\":\"bob@corp.com\""), vec!["bob@corp.com"]);
        assert_eq!(emails_in(".x@ex.com"), vec!["x@ex.com"]);
        assert_eq!(emails_in("a@b.example.c0m.io-"), vec!["a@b.example.c0m.io"]);
    }

    #[test]
    fn email_near_misses() {
        for text in [
            "@handle",
            "user@localhost",
            "a@b.c",
            "x @ y.com",
            "price@5.00",
            "me@-bad.com",
            "email@",
            "a@b.123",
        ] {
            assert_eq!(emails_in(text), Vec::<&str>::new(), "{text}");
        }
    }

    #[test]
    fn finds_ipv6() {
        for (text, ip) in [
            ("at 2001:db8::ff00:42:8329 now", "2001:db8::ff00:42:8329"),
            ("[::1]:8080", "::1"),
            ("fe80::1%eth0", "fe80::1"),
            ("::ffff:192.0.2.1.", "::ffff:192.0.2.1"),
            ("addr: 1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"),
            ("host=2001:db8::1: down", "2001:db8::1"),
        ] {
            assert_eq!(v6_in(text), vec![ip], "{text}");
        }
        for text in [
            "12:30:45",
            "00:1A:2B:3C:4D:5E",
            "std::fmt::Debug",
            "Foo::bar",
            "note: see below",
            "::",
            "1::2::3",
            "fe80::1g",
        ] {
            assert_eq!(v6_in(text), Vec::<&str>::new(), "{text}");
        }
    }
}
