//! IBANs: two capital letters (the country) and two check digits, not touching a letter, digit or
//! `_` before them, then the BBAN in capitals and digits, written either without spaces or in
//! groups of four separated by single spaces (the "paper" form). The value must pass the
//! ISO 13616 mod-97 check; for the countries in the SWIFT IBAN registry it must also have that
//! country's length and BBAN format (the `iban_validate` crate holds the registry). A value of a
//! country outside the registry is accepted on its checksum alone, with 15-34 characters.

use std::ops::Range;

use iban::{BaseIban, Iban, IbanLike, ParseIbanError};

use super::Entity;

/// The longest IBAN (34 characters) in the paper form: 34 + 8 spaces.
const MAX_PAPER: usize = 42;

pub(super) fn scan(text: &str, emit: &mut dyn FnMut(Range<usize>, Entity)) {
    let b = text.as_bytes();
    let mut i = 0;
    while i + 4 <= b.len() {
        let head = b[i].is_ascii_uppercase()
            && b[i + 1].is_ascii_uppercase()
            && b[i + 2].is_ascii_digit()
            && b[i + 3].is_ascii_digit();
        if !head || (i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) {
            i += 1;
            continue;
        }
        match longest_iban(b, i) {
            Some(end) => {
                emit(i..end, Entity::Iban);
                i = end;
            }
            None => i += 1,
        }
    }
}

/// The end of the longest valid IBAN starting at `start`, trying the ends of its space-separated
/// groups from the longest down.
fn longest_iban(b: &[u8], start: usize) -> Option<usize> {
    let mut ends = [0usize; 12];
    let mut n = 0;
    let mut i = start;
    let limit = (start + MAX_PAPER).min(b.len());
    loop {
        let g = i;
        while i < limit && (b[i].is_ascii_uppercase() || b[i].is_ascii_digit()) {
            i += 1;
        }
        if i == g || (i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_')) {
            break;
        }
        if n == ends.len() {
            break;
        }
        ends[n] = i;
        n += 1;
        if i + 1 < limit && b[i] == b' ' && b[i + 1].is_ascii_alphanumeric() {
            i += 1;
        } else {
            break;
        }
    }
    ends[..n]
        .iter()
        .rev()
        .copied()
        .find(|&end| std::str::from_utf8(&b[start..end]).is_ok_and(valid))
}

fn valid(s: &str) -> bool {
    match s.parse::<Iban>() {
        Ok(_) => true,
        Err(ParseIbanError::UnknownCountry(base)) => plausible(&base),
        Err(_) => false,
    }
}

fn plausible(base: &BaseIban) -> bool {
    (15..=34).contains(&base.electronic_str().len())
}

/// The two check digits that make `country` + `bban` a valid IBAN (test helper).
#[cfg(test)]
pub(crate) fn check_digits(country: &str, bban: &str) -> String {
    let rearranged = format!("{bban}{country}00");
    let mut rem: u32 = 0;
    for c in rearranged.chars() {
        let v = c.to_digit(36).unwrap_or(0);
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    format!("{:02}", 98 - rem)
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
    fn finds_ibans() {
        for (text, iban) in [
            (
                "IBAN: DE89 3704 0044 0532 0130 00, thanks",
                "DE89 3704 0044 0532 0130 00",
            ),
            ("GB29NWBK60161331926819", "GB29NWBK60161331926819"),
            (
                "to FR14 2004 1010 0505 0001 3M02 606 today",
                "FR14 2004 1010 0505 0001 3M02 606",
            ),
            ("NL91ABNA0417164300 IBAN", "NL91ABNA0417164300"),
            ("(DE89370400440532013000)", "DE89370400440532013000"),
        ] {
            assert_eq!(found(text), vec![iban], "{text}");
        }
    }

    #[test]
    fn near_misses() {
        for text in [
            "DE89 3704 0044 0532 0130 01", // wrong check digits
            "DE88370400440532013000",      // wrong check digits
            "DE89 3704 0044 0532 0130",    // too short for Germany
            "xDE89370400440532013000",     // inside a word
            "DE89370400440532013000x",
            "de89370400440532013000", // lower case
            "AB12 3456",
        ] {
            assert_eq!(found(text), Vec::<&str>::new(), "{text}");
        }
    }

    #[test]
    fn check_digit_helper_agrees() {
        assert_eq!(check_digits("DE", "370400440532013000"), "89");
        assert_eq!(check_digits("GB", "NWBK60161331926819"), "29");
    }
}
