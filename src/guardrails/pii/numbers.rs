//! Numbers in text: credit-card numbers, phone numbers and IPv4 addresses, found from one scan of
//! "numeric runs" — digit groups joined by single separators — and classified by their shape.
//!
//! A run starts at a digit, a `+` before a digit or a `(` before a digit, where the byte before
//! it is not a letter, digit or one of `_ . - / + @ # %` (so digits inside identifiers, versions,
//! paths and UUIDs never start one). Groups are digits, or digits in parentheses; between groups
//! stands at most one of space, `-` or `.` (a parenthesised group may touch the next). A run
//! ends with a digit or `)` and must not be followed by a letter, digit, `_` or `@`.
//!
//! Classification, first match wins (see `docs/guardrails.md` for the same rules in prose):
//! - four `.`-separated groups of 1-3 digits (standing apart from the rest of the run by
//!   spaces): an IPv4 address when the standard parser accepts it (no octet over 255, no leading
//!   zeros), otherwise nothing;
//! - a credit card: 13-19 digits in groups joined by spaces or dashes, a known issuer prefix
//!   with a length that issuer uses, and a correct Luhn check digit; a run of more than 19 digits
//!   is tried group range by group range (`4111 1111 1111 1111 12 26` still finds the card), a
//!   shorter one as a whole or without leading groups of fewer than four digits (`2 4111 1111
//!   1111 1111`), so a card with a wrong check digit never yields a shorter one;
//! - a phone number: `+` and 8-15 digits (E.164), or `00` and 10-17 digits, in any grouping; or a
//!   national form of 10-12 digits in at least two groups (spaces, dashes, dots or parentheses),
//!   groups of at least two digits except the first, at most eight digits each, dotted groups at
//!   most four and not mixed with other separators, five or more groups only as pairs. Never a date-shaped start (`2024-01-15`, `15.01.2024`), never an amount in
//!   thousands (`1 234 567 890`: groups of three after a first of 1-3), never part of a list of
//!   numbers joined by the same separator as its own groups, never four-digit groups
//!   of 12 or more digits (card-shaped), never a plain run of digits without a `+` (an id).

use std::net::Ipv4Addr;
use std::ops::Range;

use super::{Entities, Entity};

/// At most this many groups are tried together (cards have at most 5, phones 6).
const MAX_SPAN_GROUPS: usize = 8;

#[derive(Clone, Debug)]
struct Group {
    /// Byte range of the digits (parentheses excluded).
    digits: Range<usize>,
    /// Byte range including a surrounding `(` `)`.
    outer: Range<usize>,
    paren: bool,
    /// The separator before this group (`0` for the first group or a touching one).
    sep: u8,
}

impl Group {
    fn len(&self) -> usize {
        self.digits.end - self.digits.start
    }
}

fn blocks_start(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'/' | b'+' | b'@' | b'#' | b'%')
}

fn blocks_end(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'@')
}

/// Find cards, phones and IPv4 addresses (those of `want`) and report each.
pub(super) fn scan(text: &str, want: Entities, emit: &mut dyn FnMut(Range<usize>, Entity)) {
    let b = text.as_bytes();
    let mut groups: Vec<Group> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let starts = c.is_ascii_digit()
            || (matches!(c, b'+' | b'(') && b.get(i + 1).is_some_and(u8::is_ascii_digit));
        if !starts {
            i += 1;
            continue;
        }
        if i > 0 && blocks_start(b[i - 1]) {
            // Skip the rest of this word or number: nothing in it can start a run.
            i += 1;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            continue;
        }
        let plus = c == b'+';
        let end = read_run(b, if plus { i + 1 } else { i }, &mut groups);
        if groups.is_empty() {
            // `(` without its `)`: the digits after it may still start a run.
            i += 1;
            continue;
        }
        if end < b.len() && blocks_end(b[end]) {
            i = end.max(i + 1);
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            continue;
        }
        classify(b, i, plus, &groups, want, emit);
        i = end;
    }
}

/// Read the groups of a run starting at `i`; the end of the run (exclusive).
fn read_run(b: &[u8], mut i: usize, groups: &mut Vec<Group>) -> usize {
    groups.clear();
    let mut sep = 0u8;
    let mut end = i;
    loop {
        let outer_start = i;
        let paren = b.get(i) == Some(&b'(');
        let ds = if paren { i + 1 } else { i };
        let mut j = ds;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j == ds || (paren && b.get(j) != Some(&b')')) {
            break;
        }
        let outer_end = if paren { j + 1 } else { j };
        groups.push(Group {
            digits: ds..j,
            outer: outer_start..outer_end,
            paren,
            sep,
        });
        end = outer_end;
        i = outer_end;
        // A parenthesised group may be followed directly by digits: `(0)20`.
        if paren && b.get(i).is_some_and(u8::is_ascii_digit) {
            sep = 0;
            continue;
        }
        match (b.get(i), b.get(i + 1)) {
            (Some(&s @ (b' ' | b'-' | b'.')), Some(&n)) if n.is_ascii_digit() || n == b'(' => {
                sep = s;
                i += 1;
            }
            _ => break,
        }
    }
    end
}

fn classify(
    b: &[u8],
    start: usize,
    plus: bool,
    groups: &[Group],
    want: Entities,
    emit: &mut dyn FnMut(Range<usize>, Entity),
) {
    let any_paren = groups.iter().any(|g| g.paren);
    // A run of 13-19 digits is judged whole as a card; longer runs range by range.
    let whole_digits: usize = groups.iter().map(Group::len).sum();
    let card_ranges = whole_digits > 19;
    let mut g = 0;
    while g < groups.len() {
        let mut found = None;
        let top = groups.len().min(g + MAX_SPAN_GROUPS);
        for e in (g + 1..=top).rev() {
            let span = &groups[g..e];
            let lead_plus = plus && g == 0;
            let whole = g == 0 && e == groups.len();
            let apart =
                (g == 0 || span[0].sep == b' ') && groups.get(e).is_none_or(|n| n.sep == b' ');
            if span.len() == 4 && !lead_plus && apart && ipv4_shaped(span) {
                if want.contains(Entity::IpAddress)
                    && is_ipv4(&b[span[0].outer.start..span[3].outer.end])
                {
                    found = Some((e, Entity::IpAddress));
                    break;
                }
                continue;
            }
            let short_lead = e == groups.len() && groups[..g].iter().all(|x| x.len() < 4);
            if want.contains(Entity::CreditCard)
                && (whole || card_ranges || short_lead)
                && !lead_plus
                && !any_paren
                && is_card(b, span)
            {
                found = Some((e, Entity::CreditCard));
                break;
            }
            if want.contains(Entity::Phone)
                && (whole || stands_apart(groups, g, e))
                && is_phone(b, span, lead_plus)
            {
                found = Some((e, Entity::Phone));
                break;
            }
        }
        match found {
            Some((e, entity)) => {
                let from = if g == 0 && plus {
                    start
                } else {
                    groups[g].outer.start
                };
                emit(from..groups[e - 1].outer.end, entity);
                g = e;
            }
            None => g += 1,
        }
    }
}

/// Whether groups `g..e` of a run read as a number of their own: they start after a space and
/// are joined by other separators than the spaces around them (`555-123-4567` in
/// `2024-01-15 555-123-4567 2`), so a list of numbers (`5 10 20 40 80 160`) yields no phone.
fn stands_apart(groups: &[Group], g: usize, e: usize) -> bool {
    let inner = |s: u8| (g + 1..e).any(|k| groups[k].sep == s && !groups[k - 1].paren);
    let before = if g == 0 { 0 } else { groups[g].sep };
    let after = groups.get(e).map_or(0, |n| n.sep);
    (g == 0 || before == b' ') && !(before != 0 && inner(before)) && !(after != 0 && inner(after))
}

/// Four dot-separated groups of 1-3 digits (an address or not, never a phone or a card).
fn ipv4_shaped(span: &[Group]) -> bool {
    span.iter().all(|g| !g.paren && g.len() <= 3) && span[1..].iter().all(|g| g.sep == b'.')
}

fn is_ipv4(s: &[u8]) -> bool {
    std::str::from_utf8(s).is_ok_and(|s| s.parse::<Ipv4Addr>().is_ok())
}

/// The digits of `groups`, at most 24 of them (longer spans are neither cards nor phones).
fn digits(b: &[u8], groups: &[Group]) -> Option<([u8; 24], usize)> {
    let mut out = [0u8; 24];
    let mut n = 0;
    for g in groups {
        for &d in &b[g.digits.clone()] {
            *out.get_mut(n)? = d - b'0';
            n += 1;
        }
    }
    Some((out, n))
}

fn is_card(b: &[u8], groups: &[Group]) -> bool {
    if groups[1..].iter().any(|g| g.sep == b'.') {
        return false;
    }
    let Some((d, n)) = digits(b, groups) else {
        return false;
    };
    (13..=19).contains(&n) && issuer_accepts(&d[..n]) && luhn(&d[..n])
}

/// The Luhn check over digit values (0-9).
pub(crate) fn luhn(d: &[u8]) -> bool {
    let mut sum = 0u32;
    for (k, &x) in d.iter().rev().enumerate() {
        let x = u32::from(x);
        sum += if k % 2 == 1 {
            let y = x * 2;
            if y > 9 { y - 9 } else { y }
        } else {
            x
        };
    }
    sum.is_multiple_of(10)
}

/// Whether the digits start with a known card issuer prefix (IIN) with a length that issuer
/// uses: Visa, Mastercard, American Express, Discover, Diners Club, JCB, UnionPay, Maestro, Mir.
/// (Cards are 13-19 digits here; a 12-digit Maestro is not looked for.)
pub(crate) fn issuer_accepts(d: &[u8]) -> bool {
    let n = d.len();
    let p = |k: usize| d.iter().take(k).fold(0u32, |a, &x| a * 10 + u32::from(x));
    let (p2, p3, p4) = (p(2), p(3), p(4));
    match d.first() {
        Some(4) => matches!(n, 13 | 16 | 19),
        Some(2) => (2221..=2720).contains(&p4) && n == 16 || (2200..=2204).contains(&p4) && n >= 16,
        Some(3) => {
            matches!(p2, 34 | 37) && n == 15
                || ((300..=305).contains(&p3) || matches!(p2, 36 | 38 | 39))
                    && (14..=19).contains(&n)
                || (3528..=3589).contains(&p4) && n >= 16
        }
        Some(5) => {
            (51..=55).contains(&p2) && n == 16 || matches!(p4, 5018 | 5020 | 5038 | 5893) && n >= 12
        }
        Some(6) => {
            (p4 == 6011 || (644..=649).contains(&p3) || p2 == 65 || p2 == 62) && n >= 16
                || matches!(p4, 6304 | 6759 | 6761..=6763) && n >= 12
        }
        _ => false,
    }
}

fn is_phone(b: &[u8], groups: &[Group], plus: bool) -> bool {
    let Some((d, n)) = digits(b, groups) else {
        return false;
    };
    if plus {
        return (8..=15).contains(&n) && d[0] != 0;
    }
    if groups.len() < 2 || groups.iter().any(|g| g.len() > 8) || date_shaped(groups) {
        return false;
    }
    let dots = groups.iter().any(|g| g.sep == b'.');
    if dots
        && groups
            .iter()
            .any(|g| g.len() > 4 || matches!(g.sep, b' ' | b'-'))
    {
        // Dotted groups are short and not mixed with other separators (`0.025 0.05` are not).
        return false;
    }
    if n >= 12 && d[0] == 0 && d[1] == 0 {
        // International, after the `00` prefix.
        return n <= 17;
    }
    if !(10..=12).contains(&n) || groups.iter().skip(1).any(|g| g.len() < 2) {
        return false;
    }
    if groups.len() > 4 && !groups[1..].iter().all(|g| g.len() == 2) {
        // Five or more groups only in pairs (`01 23 45 67 89`), not `5 10 20 40 80 160`.
        return false;
    }
    if n >= 12 && groups.iter().all(|g| g.len() == 4) {
        return false;
    }
    !thousands_shaped(groups)
}

/// `1 234 567 890`, `12.345.678.901`: an amount with thousands separators.
fn thousands_shaped(groups: &[Group]) -> bool {
    !groups[0].paren
        && groups[0].len() <= 3
        && groups[1..]
            .iter()
            .all(|g| g.len() == 3 && !g.paren && matches!(g.sep, b' ' | b'.'))
}

/// `2024-01-15…`, `15.01.2024…`, `01-15-2024…`.
fn date_shaped(groups: &[Group]) -> bool {
    if groups.len() < 3 || groups[0].paren {
        return false;
    }
    let lens = (groups[0].len(), groups[1].len(), groups[2].len());
    let seps_ok = groups[1].sep != b' ' && groups[1].sep == groups[2].sep;
    seps_ok && matches!(lens, (4, 1..=2, 1..=2) | (1..=2, 1..=2, 4))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<(&str, Entity)> {
        let mut out = Vec::new();
        scan(text, Entities::all(), &mut |r, e| out.push((&text[r], e)));
        out
    }

    #[test]
    fn cards() {
        for (text, card) in [
            ("card 4111 1111 1111 1111 exp", "4111 1111 1111 1111"),
            ("4111-1111-1111-1111", "4111-1111-1111-1111"),
            ("pay with 5500005555555559.", "5500005555555559"),
            ("amex 3782 822463 10005", "3782 822463 10005"),
            ("4111 1111 1111 1111 12 26", "4111 1111 1111 1111"),
            ("mc 2223 0000 4841 0010 ok", "2223 0000 4841 0010"),
            ("discover 6011 1111 1111 1117", "6011 1111 1111 1117"),
            ("(4111 1111 1111 1111)", "4111 1111 1111 1111"),
            ("(4111 1111 1111 1111 ", "4111 1111 1111 1111"),
            ("qty 2 4111 1111 1111 1111", "4111 1111 1111 1111"),
        ] {
            assert_eq!(found(text), vec![(card, Entity::CreditCard)], "{text}");
        }
        assert_eq!(
            found("two 4111 1111 1111 1111 5555 5555 5555 4444"),
            vec![
                ("4111 1111 1111 1111", Entity::CreditCard),
                ("5555 5555 5555 4444", Entity::CreditCard)
            ]
        );
        // Wrong check digit, unknown issuer, inside an identifier, dotted.
        for text in [
            "4111 1111 1111 1112",
            "9111 1111 1111 1113",
            "id-4111111111111111",
            "x4111111111111111",
            "4111111111111111abc",
            "4111.1111.1111.1111",
            "6304 0000 0000 0000 01", // 18 digits, wrong check digit: no shorter card inside
        ] {
            assert!(
                found(text).iter().all(|(_, e)| *e != Entity::CreditCard),
                "{text}: {:?}",
                found(text)
            );
        }
    }

    #[test]
    fn phones() {
        for (text, phone) in [
            ("call +44 20 7946 0958 now", "+44 20 7946 0958"),
            ("+1 (555) 123-4567", "+1 (555) 123-4567"),
            ("+15551234567", "+15551234567"),
            ("(555) 123-4567", "(555) 123-4567"),
            ("555-123-4567", "555-123-4567"),
            ("555.123.4567", "555.123.4567"),
            ("tel 01 23 45 67 89", "01 23 45 67 89"),
            ("+44 (0)20 7946 0958", "+44 (0)20 7946 0958"),
            ("0044 20 7946 0958", "0044 20 7946 0958"),
            ("030 12345678", "030 12345678"),
            ("+49-30-1234567", "+49-30-1234567"),
            ("call 555-123-4567 2 times", "555-123-4567"),
            ("on 2024-01-15 555-123-4567", "555-123-4567"),
        ] {
            assert_eq!(found(text), vec![(phone, Entity::Phone)], "{text}");
        }
        for text in [
            "5551234567",       // a plain id
            "order 1764000000", // a timestamp
            "2024-01-15 12:30", // a date
            "15.01.2024",       // a date
            "2024-01-15 1234",  // a date and a time
            "3.14159265358",    // a decimal
            "1 234 567 890",    // an amount
            "12.345.678.901",   // an amount
            "5 10 20 40 80 160",
            "0.025 0.05 0.1 0.25",
            "buckets 5 10 20 40 80 160 320 640",
            "1.2.3.4.5.6",    // a version
            "4111 1111 1111", // card-shaped
            "550e8400-e29b-41d4-a716-446655440000",
            "v1-555-123-4567",
            "+1 23",
            "12 34",
        ] {
            assert_eq!(found(text), vec![], "{text}");
        }
    }

    #[test]
    fn ipv4() {
        assert_eq!(
            found("host 192.168.1.20:8080"),
            vec![("192.168.1.20", Entity::IpAddress)]
        );
        assert_eq!(found("10.0.0.1."), vec![("10.0.0.1", Entity::IpAddress)]);
        assert_eq!(found("10.0.0.0/8"), vec![("10.0.0.0", Entity::IpAddress)]);
        assert_eq!(
            found("10.0.0.1 4111 1111 1111 1111"),
            vec![
                ("10.0.0.1", Entity::IpAddress),
                ("4111 1111 1111 1111", Entity::CreditCard)
            ]
        );
        for text in ["256.1.1.1", "01.2.3.4", "1.2.3", "1.2.3.4.5", "v1.2.3.4"] {
            assert_eq!(found(text), vec![], "{text}");
        }
    }

    #[test]
    fn only_wanted_entities() {
        let text = "4111 1111 1111 1111 and +44 20 7946 0958 at 10.0.0.1";
        let mut out = Vec::new();
        scan(text, Entities::of(&[Entity::Phone]), &mut |r, e| {
            out.push((r, e))
        });
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1, Entity::Phone);
    }
}
