//! Property tests of the guardrails: valid cards and IBANs are always found and wrong check
//! digits never are; mask-then-restore is the identity; the streaming restorer and the streamed
//! output checks give the same text for every split of an answer; the request walker leaves an
//! unmatched body byte-identical and changes only the strings it masks.

use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;

use super::pii::testing::{check_digits, luhn};
use super::text::{RequestFormat, guard_request};
use super::{
    Action, Entities, Entity, Guardrail, Hit, Plan, Report, Restorer, TextStream, Vault, guard_text,
};

/// Issuer prefixes and a length each uses.
const ISSUERS: &[(&str, usize)] = &[
    ("4", 16),
    ("4", 13),
    ("4", 19),
    ("51", 16),
    ("55", 16),
    ("2221", 16),
    ("2720", 16),
    ("34", 15),
    ("37", 15),
    ("6011", 16),
    ("65", 16),
    ("644", 16),
    ("3528", 16),
    ("3589", 19),
    ("36", 14),
    ("300", 14),
    ("62", 17),
    ("6304", 18),
];

/// A card number with `len` digits starting with `prefix`, the last digit `check_shift` away
/// from the correct Luhn digit.
fn card_digits(prefix: &str, len: usize, body: &[u8], check_shift: u8) -> String {
    let mut d: Vec<u8> = prefix.bytes().map(|c| c - b'0').collect();
    d.extend(body.iter().take(len - 1 - d.len()).map(|x| x % 10));
    let check = (0..10).find(|c| {
        let mut all = d.clone();
        all.push(*c);
        luhn(&all)
    });
    d.push((check.unwrap_or(0) + check_shift) % 10);
    d.iter().map(|x| char::from(b'0' + x)).collect()
}

fn grouped(digits: &str, sep: &str) -> String {
    let chunks: Vec<&str> = digits
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap_or(""))
        .collect();
    chunks.join(sep)
}

fn plan(rails: Vec<Guardrail>) -> Plan {
    Plan::new(rails.into_iter().map(Arc::new).collect())
}

fn entity_hits(text: &str, e: Entity) -> Vec<String> {
    let p = plan(vec![Guardrail::pii("pii", Entities::all(), Action::Mask)]);
    let mut hits: Vec<Hit> = Vec::new();
    p.scan(text, &mut hits);
    hits.iter()
        .filter(|h| h.entity == Some(e))
        .map(|h| text[h.range.clone()].to_owned())
        .collect()
}

/// Country code and BBAN shape: `n` digits, `a` capitals, `c` either.
const COUNTRIES: &[(&str, &str)] = &[
    ("DE", "nnnnnnnnnnnnnnnnnn"),
    ("GB", "aaaannnnnnnnnnnnnn"),
    ("FR", "nnnnnnnnnncccccccccccnn"),
    ("NL", "aaaannnnnnnnnn"),
    ("ES", "nnnnnnnnnnnnnnnnnnnn"),
    ("IT", "annnnnnnnnncccccccccccc"),
    ("BE", "nnnnnnnnnnnn"),
    ("CH", "nnnnncccccccccccc"),
];

fn bban(shape: &str, seed: &[u8]) -> String {
    const CAPS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    shape
        .bytes()
        .zip(seed.iter().cycle())
        .map(|(k, &r)| match k {
            b'n' => char::from(b'0' + r % 10),
            b'a' => char::from(CAPS[usize::from(r) % CAPS.len()]),
            _ => char::from(ALNUM[usize::from(r) % ALNUM.len()]),
        })
        .collect()
}

fn paper(iban: &str) -> String {
    grouped(iban, " ")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn valid_cards_are_found(
        issuer in 0..ISSUERS.len(),
        body in proptest::collection::vec(any::<u8>(), 19),
        sep in prop::sample::select(vec!["", " ", "-"]),
        before in "[a-z ]{0,8}",
    ) {
        let (prefix, len) = ISSUERS[issuer];
        let digits = card_digits(prefix, len, &body, 0);
        let card = grouped(&digits, sep);
        let text = format!("{before} card {card}, thanks");
        prop_assert_eq!(entity_hits(&text, Entity::CreditCard), vec![card]);
    }

    #[test]
    fn wrong_check_digits_are_not_cards(
        issuer in 0..ISSUERS.len(),
        body in proptest::collection::vec(any::<u8>(), 19),
        shift in 1u8..10,
        sep in prop::sample::select(vec!["", " ", "-"]),
    ) {
        let (prefix, len) = ISSUERS[issuer];
        let card = grouped(&card_digits(prefix, len, &body, shift), sep);
        let text = format!("card {card} end");
        prop_assert!(entity_hits(&text, Entity::CreditCard).is_empty());
        prop_assert!(entity_hits(&text, Entity::Iban).is_empty());
    }

    #[test]
    fn random_digit_strings_are_mostly_not_cards(digits in "[0-9]{13,19}") {
        // A random digit string is a card only when both its prefix and its Luhn digit say so.
        let d: Vec<u8> = digits.bytes().map(|c| c - b'0').collect();
        let expected = super::pii::testing::issuer_accepts(&d) && luhn(&d);
        let found = !entity_hits(&format!("n {digits} n"), Entity::CreditCard).is_empty();
        prop_assert_eq!(found, expected);
    }

    #[test]
    fn valid_ibans_are_found(
        country in 0..COUNTRIES.len(),
        seed in proptest::collection::vec(any::<u8>(), 1..40),
        spaced in any::<bool>(),
    ) {
        let (cc, shape) = COUNTRIES[country];
        let b = bban(shape, &seed);
        let iban = format!("{cc}{}{b}", check_digits(cc, &b));
        let written = if spaced { paper(&iban) } else { iban };
        let text = format!("pay to {written}. Thanks");
        prop_assert_eq!(entity_hits(&text, Entity::Iban), vec![written]);
    }

    #[test]
    fn wrong_iban_check_digits_are_not_found(
        country in 0..COUNTRIES.len(),
        seed in proptest::collection::vec(any::<u8>(), 1..40),
        wrong in 0u32..100,
        spaced in any::<bool>(),
    ) {
        let (cc, shape) = COUNTRIES[country];
        let b = bban(shape, &seed);
        let right = check_digits(cc, &b);
        let cd = format!("{wrong:02}");
        prop_assume!(cd != right);
        let iban = format!("{cc}{cd}{b}");
        let written = if spaced { paper(&iban) } else { iban };
        let text = format!("pay to {written}.");
        prop_assert!(entity_hits(&text, Entity::Iban).is_empty());
    }

    #[test]
    fn mask_then_restore_is_the_identity(
        words in proptest::collection::vec(prop::sample::select(vec![
            "hello", "jane@example.com", "+44 20 7946 0958", "4111 1111 1111 1111", "10.0.0.1",
            "DE89 3704 0044 0532 0130 00", "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8t", "[EMAIL_1]", "[",
            "falcon", "é", "\n", "2001:db8::1", "bob@corp.io",
        ]), 0..30),
        seps in proptest::collection::vec(prop::sample::select(vec![" ", ", ", "\t", " (", "\n"]), 30),
    ) {
        let text: String = words.iter().zip(&seps).map(|(w, s)| format!("{w}{s}")).collect();
        let p = plan(vec![
            Guardrail::pii("pii", Entities::all(), Action::Mask),
            Guardrail::regex("projects", &["falcon"], Action::Mask).unwrap(),
        ]);
        let mut v = Vault::default();
        let mut r = Report::new(&p);
        let mut hits = Vec::new();
        let masked = guard_text(&p, &text, &mut v, &mut r, &mut hits).unwrap();
        match masked {
            None => prop_assert!(v.restore(&text, false).is_none()),
            Some(m) => {
                for w in ["jane@example.com", "4111 1111 1111 1111", "falcon"] {
                    prop_assert!(!m.contains(w));
                }
                let back = v.restore(&m, false);
                prop_assert_eq!(back.as_deref(), Some(text.as_str()));
            }
        }
    }

    #[test]
    fn streaming_restore_matches_whole_restore(
        parts in proptest::collection::vec(prop::sample::select(vec![
            "Dear ", "[EMAIL_1]", "[EMAIL_2]", "[PHONE_1]", "[", "]", "[EMAIL_", "x", "é", " [1] ",
            "[NO_INTERNAL_PROJECTS_1]", "[SECRET_1]",
        ]), 0..20),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let answer: String = parts.concat();
        let mut v = Vault::default();
        v.placeholder("EMAIL", "jane@example.com", true);
        v.placeholder("EMAIL", "bob@corp.io", true);
        v.placeholder("NO_INTERNAL_PROJECTS", "falcon", true);
        v.placeholder("SECRET", "sk-xyz", false);
        let whole = v.restore(&answer, false).unwrap_or_else(|| answer.clone());
        // Every single split, then a random multi-way split.
        let mut splits: Vec<Vec<usize>> = (0..=answer.len())
            .filter(|&i| answer.is_char_boundary(i))
            .map(|i| vec![i])
            .collect();
        let mut many: Vec<usize> = cuts.iter().map(|c| c.index(answer.len() + 1)).filter(|&i| answer.is_char_boundary(i)).collect();
        many.sort_unstable();
        splits.push(many);
        for points in splits {
            let mut r = Restorer::new(false);
            let mut out = String::new();
            let mut last = 0;
            for &p in points.iter().chain(std::iter::once(&answer.len())) {
                r.push(&v, &answer[last..p], &mut out);
                last = p;
            }
            r.finish(&mut out);
            prop_assert_eq!(&out, &whole, "split at {:?}", points);
        }
    }

    #[test]
    fn streamed_output_checks_match_the_whole_text(
        parts in proptest::collection::vec(prop::sample::select(vec![
            "Call ", "+44 20 7946 0958", " or mail ", "jane@example.com", ". ", "[EMAIL_1]",
            "card 4111 1111 1111 1111", "lorem ipsum dolor ", "10.0.0.1", "\n",
        ]), 0..24),
        chunk in 1usize..40,
    ) {
        let answer: String = parts.concat();
        let p = plan(vec![Guardrail::pii("pii", Entities::all(), Action::Redact)]);
        let mut hits = Vec::new();
        let mut v1 = Vault::default();
        v1.placeholder("EMAIL", "x@y.io", true);
        let mut v2 = Vault::default();
        v2.placeholder("EMAIL", "x@y.io", true);
        let mut r = Report::new(&p);
        let whole = super::apply::guard_answer_text(Some(&p), &answer, false, &mut v1, &mut r, &mut hits);
        let whole = whole.text.unwrap_or_else(|| answer.clone());
        let mut s = TextStream::new(true, false);
        let mut out = String::new();
        for piece in answer.as_bytes().chunks(chunk) {
            let piece = std::str::from_utf8(piece).unwrap_or_default();
            s.push(Some(&p), &mut v2, &mut r, &mut hits, piece, &mut out).unwrap();
        }
        s.finish(Some(&p), &mut v2, &mut r, &mut hits, &mut out).unwrap();
        prop_assert_eq!(out, whole);
    }

    #[test]
    fn unmatched_bodies_are_untouched_and_matched_ones_change_only_strings(
        texts in proptest::collection::vec("[a-zA-Z ,.!?é\"\\\\\n]{0,40}", 1..6),
        pii in proptest::collection::vec(any::<bool>(), 6),
        pad in prop::sample::select(vec!["", " ", "\n  "]),
    ) {
        let p = plan(vec![Guardrail::pii("pii", Entities::all(), Action::Mask)]);
        let msgs: Vec<String> = texts.iter().zip(&pii).map(|(t, &with)| {
            let t = if with { format!("{t} mail jane@example.com") } else { t.clone() };
            format!("{pad}{{{pad}\"role\":{pad}\"user\",\"content\":{pad}{}}}", serde_json::to_string(&t).unwrap_or_default())
        }).collect();
        let body = format!("{{\"model\":\"m\",{pad}\"messages\":[{}],\"temperature\":0.5{pad}}}", msgs.join(","));
        let bytes = Bytes::from(body.clone());
        let mut v = Vault::default();
        let mut r = Report::new(&p);
        let out = guard_request(&p, RequestFormat::OpenAiChat, &bytes, &mut v, &mut r).unwrap();
        let any_pii = pii.iter().take(texts.len()).any(|&b| b);
        match out {
            None => prop_assert!(!any_pii),
            Some(new) => {
                prop_assert!(any_pii);
                let a: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                let b: serde_json::Value = serde_json::from_slice(&new).unwrap();
                for (i, (ma, mb)) in a["messages"].as_array().unwrap().iter().zip(b["messages"].as_array().unwrap()).enumerate() {
                    let ca = ma["content"].as_str().unwrap();
                    let cb = mb["content"].as_str().unwrap();
                    prop_assert_eq!(cb, ca.replace("jane@example.com", "[EMAIL_1]"), "message {}", i);
                }
                prop_assert_eq!(&a["temperature"], &b["temperature"]);
                // Only the masked values changed: every other byte is the same.
                prop_assert_eq!(
                    std::str::from_utf8(&new).unwrap(),
                    body.replace("jane@example.com", "[EMAIL_1]")
                );
            }
        }
    }
}
