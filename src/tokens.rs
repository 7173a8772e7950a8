//! Prompt token counts for tokens-per-minute reservations.
//!
//! OpenAI-format models are counted with OpenAI's own `o200k_base` vocabulary and pre-tokenizer
//! pattern. `build.rs` takes both out of tiktoken-rs at build time and the binary embeds the
//! vocabulary as compact records (~1.6 MB); the first time a tokens limit needs them, a blocking
//! thread indexes the records (~200,000 borrowed slices in one hash map, ~6 MB, a few
//! milliseconds) and compiles the pattern. tiktoken-rs itself builds three maps (to decode as well
//! as encode, which a rate limiter never does) and a regex per thread: ~40 MB resident.
//! Until the index is ready, and for Anthropic-format models, the estimate is body bytes / 4.
//! Either way the reservation is corrected with the real usage when the answer ends.
//!
//! The pattern's one look-ahead (`\s+(?!\S)`) would need a backtracking engine (tiktoken-rs
//! uses fancy-regex, which ran the whole pattern in its VM: a quarter of the gateway's CPU with
//! a tpm key). build.rs drops that alternative, the `regex` crate runs the rest, and
//! [`Tokenizer::count`] gives a run of spaces followed by more text the piece the look-ahead
//! would have given it.
//!
//! The merge is byte-pair encoding as tiktoken does it: in each piece, join the adjacent pair
//! whose bytes have the lowest rank until no pair is a token; a piece counts as many tokens as
//! parts remain. Tests check the counts against tiktoken-rs.
//!
//! Requests repeat most of their text: an application sends the same system prompt and tool
//! definitions with every call, and a conversation sends all its earlier turns again with each new
//! one. [`Tokenizer::count_remembered`] keeps the counts of recent texts in a small table keyed by
//! a seeded hash of the text (foldhash: far cheaper per byte than counting; docs/benchmarks.md),
//! so a text seen before costs a hash and one atomic load. The table is a fixed array of atomics (no
//! lock, no allocation after start): a slot holds 40 bits of the hash as its tag and the count,
//! and a newer text takes the slot of an older one. Two texts whose hashes share the slot and the
//! tag (2^-40 per look-up; the seed is random per process, so a client cannot aim at one) would
//! share a count: a reservation off by one text's tokens, which the answer's usage corrects.

use std::borrow::Cow;
use std::hash::BuildHasher;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use regex::Regex;
use rustc_hash::FxHashMap;
use serde::Deserialize;
use serde_json::value::RawValue;

/// `[len: u8][bytes]` per ordinary token, in rank order (written by build.rs).
static VOCAB: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/o200k_base.bin"));
/// The pre-tokenizer pattern of `o200k_base` without its look-ahead (written by build.rs).
const PATTERN: &str = include_str!(concat!(env!("OUT_DIR"), "/o200k_base.pat"));
/// Pieces longer than this are estimated (bytes / 4) instead of merged, which is quadratic in the
/// piece's length. The pattern cuts ordinary text into words, numbers of up to 3 digits, runs of
/// punctuation and of spaces, so only unusual input (a run of 256 letters) reaches it.
const LONGEST_MERGED: usize = 256;

static BPE: OnceLock<Tokenizer> = OnceLock::new();
static LOADING: AtomicBool = AtomicBool::new(false);

/// The `o200k_base` token counter.
pub struct Tokenizer {
    ranks: FxHashMap<&'static [u8], u32>,
    split: Regex,
    memo: Memo,
}

/// Counts of recently counted texts (see the module's documentation).
struct Memo {
    seed: foldhash::quality::RandomState,
    /// `tag << COUNT_BITS | count`; 0 is an empty slot (a tag is never 0).
    slots: Box<[AtomicU64]>,
}

/// Slots in the table: 512 KiB, made (zeroed) with the tokenizer, which only a `tpm` limit loads.
const MEMO_SLOTS: usize = 1 << 16;
const COUNT_BITS: u32 = 24;
/// Texts shorter than this are counted each time (as fast as a look-up).
const MEMO_SHORTEST: usize = 16;

impl Memo {
    fn new() -> Self {
        Self {
            seed: foldhash::quality::RandomState::default(),
            slots: (0..MEMO_SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The slot of `text` and the tag it would carry there.
    fn place(&self, text: &str) -> (&AtomicU64, u64) {
        let h = self.seed.hash_one(text);
        // The index takes the low bits, the tag the high 40; `| 1` keeps a tag from being 0.
        let slot = &self.slots[h as usize & (MEMO_SLOTS - 1)];
        (slot, (h >> COUNT_BITS) | 1)
    }
}

impl Tokenizer {
    /// Indexes the embedded vocabulary and compiles the pattern.
    pub fn o200k_base() -> Result<Self, regex::Error> {
        let mut ranks = FxHashMap::with_capacity_and_hasher(200_000, Default::default());
        let mut rest = VOCAB;
        let mut rank = 0u32;
        while let Some((&len, tail)) = rest.split_first() {
            let Some((token, tail)) = tail.split_at_checked(usize::from(len)) else {
                break;
            };
            ranks.insert(token, rank);
            rank += 1;
            rest = tail;
        }
        let split = Regex::new(PATTERN)?;
        Ok(Self {
            ranks,
            split,
            memo: Memo::new(),
        })
    }

    /// [`Tokenizer::count`], remembered: a text counted recently is not counted again.
    pub fn count_remembered(&self, text: &str) -> u64 {
        if text.len() < MEMO_SHORTEST {
            return self.count(text);
        }
        let (slot, tag) = self.memo.place(text);
        let held = slot.load(Ordering::Relaxed);
        if held >> COUNT_BITS == tag {
            return held & ((1 << COUNT_BITS) - 1);
        }
        let n = self.count(text);
        if n < 1 << COUNT_BITS {
            slot.store(tag << COUNT_BITS | n, Ordering::Relaxed);
        }
        n
    }

    /// The number of tokens of `text`, without special tokens.
    pub fn count(&self, text: &str) -> u64 {
        if text.is_ascii() {
            let text = text.as_bytes();
            let mut n = 0;
            let mut at = 0;
            while at < text.len() {
                let end = ascii_piece_end(text, at);
                n += self.count_piece(&text[at..end]);
                at = end;
            }
            return n;
        }
        let mut n = 0;
        let mut at = 0;
        while let Some(m) = self.split.find_at(text, at) {
            let mut end = m.end();
            // The pattern's `\s+(?!\S)`, taken out of it (build.rs): a run of spaces or tabs (no
            // line break: that is an earlier alternative) with more text after it leaves its last
            // character to the next piece.
            let piece = m.as_str();
            if end < text.len()
                && let Some(last) = piece.chars().next_back()
                && last.is_whitespace()
                && last != '\n'
                && last != '\r'
                && piece.len() > last.len_utf8()
            {
                end -= last.len_utf8();
            }
            n += self.count_piece(&text.as_bytes()[m.start()..end]);
            at = end;
        }
        n
    }

    fn count_piece(&self, piece: &[u8]) -> u64 {
        if piece.len() <= 1 || self.ranks.contains_key(piece) {
            return piece.len().min(1) as u64;
        }
        if piece.len() > LONGEST_MERGED {
            return estimate(piece);
        }
        // Part i is piece[starts[i]..starts[i + 1]]; pair[i] is the rank of parts i and i + 1
        // joined (u32::MAX when that is no token or there is no part i + 1).
        let mut starts: Vec<usize> = (0..=piece.len()).collect();
        let rank_at = |starts: &[usize], i: usize| -> u32 {
            match starts.get(i + 2) {
                Some(&end) => self
                    .ranks
                    .get(&piece[starts[i]..end])
                    .copied()
                    .unwrap_or(u32::MAX),
                None => u32::MAX,
            }
        };
        let mut pair: Vec<u32> = (0..starts.len()).map(|i| rank_at(&starts, i)).collect();
        // The lowest rank (the leftmost of equal ones), while one joins two parts into a token.
        while let Some((i, _)) = pair
            .iter()
            .enumerate()
            .min_by_key(|(_, r)| **r)
            .filter(|(_, r)| **r != u32::MAX)
        {
            starts.remove(i + 1);
            pair.remove(i + 1);
            pair[i] = rank_at(&starts, i);
            if i > 0 {
                pair[i - 1] = rank_at(&starts, i - 1);
            }
        }
        (starts.len() - 1) as u64
    }
}

/// The end of the piece that starts at `i` (< `t.len()`) of ASCII text: the pattern's
/// alternatives, tried in order, as the backtracking engine would match them; in ASCII its letter
/// classes are `[A-Z]` (upper) and `[a-z]` (lower) and `\s` is `[\t\n\x0B\x0C\r ]`. Through
/// the regex (which searches forwards, then backwards for the start) the whole count of the bench
/// prompt took 1.9 us instead of 0.6; prompts are mostly ASCII. Tests hold both to tiktoken.
fn ascii_piece_end(t: &[u8], i: usize) -> usize {
    let space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r');
    let other = |b: u8| !space(b) && !b.is_ascii_alphanumeric();
    fn run(t: &[u8], mut j: usize, f: impl Fn(u8) -> bool) -> usize {
        while j < t.len() && f(t[j]) {
            j += 1;
        }
        j
    }
    let b = t[i];
    // `[^\r\n\p{L}\p{N}]?` then upper case letters then lower case ones (one at least), or upper
    // case ones (one at least) then lower case ones; then a contraction.
    let start = if b != b'\r' && b != b'\n' && !b.is_ascii_alphanumeric() {
        i + 1
    } else {
        i
    };
    let upper = run(t, start, |c| c.is_ascii_uppercase());
    let letters = run(t, upper, |c| c.is_ascii_lowercase());
    if letters > start {
        return letters + contraction_len(&t[letters..]);
    }
    // `\p{N}{1,3}`
    if b.is_ascii_digit() {
        return run(t, i, |c| c.is_ascii_digit()).min(i + 3);
    }
    // ` ?[^\s\p{L}\p{N}]+[\r\n/]*`
    let k = if b == b' ' && t.get(i + 1).is_some_and(|&c| other(c)) {
        i + 1
    } else {
        i
    };
    if other(t[k]) {
        return run(t, run(t, k, other), |c| matches!(c, b'\r' | b'\n' | b'/'));
    }
    // `b` is white space. `\s*[\r\n]+`: through the run's last line break.
    let end = run(t, i, space);
    if let Some(k) = t[i..end].iter().rposition(|&c| c == b'\r' || c == b'\n') {
        return i + k + 1;
    }
    // `\s+(?!\S)`, else `\s+`: a run followed by more text leaves it its last character.
    if end == t.len() || end - i == 1 {
        end
    } else {
        end - 1
    }
}

/// The length of the contraction `(?i:'s|'t|'re|'ve|'m|'ll|'d)` that `rest` starts with (0 for
/// none). Trying the seven alternatives in turn after every word was two thirds of the count.
fn contraction_len(rest: &[u8]) -> usize {
    let [b'\'', c, tail @ ..] = rest else {
        return 0;
    };
    match (
        c.to_ascii_lowercase(),
        tail.first().map(u8::to_ascii_lowercase),
    ) {
        (b's' | b't' | b'm' | b'd', _) => 2,
        (b'r' | b'v', Some(b'e')) | (b'l', Some(b'l')) => 3,
        _ => 0,
    }
}

/// The tokenizer if it is ready; starts building it (once, off the async runtime) if not.
pub fn tokenizer() -> Option<&'static Tokenizer> {
    if let Some(b) = BPE.get() {
        return Some(b);
    }
    if !LOADING.swap(true, Ordering::AcqRel)
        && let Ok(rt) = tokio::runtime::Handle::try_current()
    {
        rt.spawn_blocking(|| match Tokenizer::o200k_base() {
            Ok(b) => {
                let _ = BPE.set(b);
                tracing::debug!("tokenizer o200k_base ready");
            }
            Err(e) => tracing::warn!(error = %e, "cannot build the tokenizer; estimating tokens"),
        });
    }
    None
}

/// The bytes / 4 estimate.
pub fn estimate(body: &[u8]) -> u64 {
    (body.len() as u64).div_ceil(4)
}

#[derive(Deserialize)]
struct Req<'a> {
    #[serde(default, borrow)]
    messages: Vec<Message<'a>>,
    #[serde(default, borrow)]
    tools: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(default, borrow)]
    content: Option<&'a RawValue>,
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tool_calls: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Part<'a> {
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
}

/// Prompt tokens of an OpenAI chat request, counted the way OpenAI documents it (text of each
/// message + 3 per message + 3 for the reply's priming; tools and tool calls as their JSON).
/// `None` while the tokenizer is not ready or the body does not parse.
pub fn count_openai_chat(body: &[u8]) -> Option<u64> {
    count_openai_chat_with(tokenizer()?, body)
}

/// [`count_openai_chat`] with a given tokenizer (`None` when the body does not parse).
pub fn count_openai_chat_with(bpe: &Tokenizer, body: &[u8]) -> Option<u64> {
    // As text: one UTF-8 check of the body instead of one per string serde reads.
    let req: Req = serde_json::from_str(std::str::from_utf8(body).ok()?).ok()?;
    let messages = req.messages.into_iter().map(|m| ChatText {
        content: m.content.map(RawValue::get),
        name: m.name,
        tool_calls: m.tool_calls.map(RawValue::get),
    });
    Some(count_chat(bpe, messages, req.tools.map(RawValue::get)))
}

/// The texts of one chat message that count, as the request's JSON holds them (`name` decoded).
pub struct ChatText<'a> {
    /// The raw JSON of `content`: a string or an array of parts.
    pub content: Option<&'a str>,
    pub name: Option<Cow<'a, str>>,
    /// The raw JSON of `tool_calls`.
    pub tool_calls: Option<&'a str>,
}

/// The prompt tokens of `messages` and the raw JSON of `tools`, as [`count_openai_chat`] counts
/// them (for a caller that has parsed the request already).
pub fn count_chat<'a>(
    bpe: &Tokenizer,
    messages: impl Iterator<Item = ChatText<'a>>,
    tools: Option<&str>,
) -> u64 {
    let mut n = 3u64;
    for m in messages {
        n += 3;
        if let Some(content) = m.content {
            n += count_content(bpe, content);
        }
        if let Some(name) = &m.name {
            n += 1 + bpe.count(name);
        }
        if let Some(calls) = m.tool_calls {
            n += bpe.count_remembered(calls);
        }
    }
    if let Some(tools) = tools {
        n += bpe.count_remembered(tools);
    }
    n
}

/// A message's content: a string, or the text parts of an array joined by newlines.
fn count_content(bpe: &Tokenizer, raw: &str) -> u64 {
    if raw.starts_with('"') {
        // Borrowed when the string has no escapes (a `Cow<str>` would always copy it).
        return match serde_json::from_str::<&str>(raw) {
            Ok(text) => bpe.count_remembered(text),
            Err(_) => {
                serde_json::from_str::<String>(raw).map_or(0, |text| bpe.count_remembered(&text))
            }
        };
    }
    match serde_json::from_str::<Vec<Part>>(raw) {
        Ok(parts) => {
            let mut texts = parts.iter().filter_map(|p| p.text.as_deref());
            match (texts.next(), texts.next()) {
                (None, _) => 0,
                (Some(one), None) => bpe.count_remembered(one),
                (Some(a), Some(b)) => {
                    let mut joined = format!("{a}\n{b}");
                    for t in texts {
                        joined.push('\n');
                        joined.push_str(t);
                    }
                    bpe.count_remembered(&joined)
                }
            }
        }
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ours() -> &'static Tokenizer {
        static T: OnceLock<Tokenizer> = OnceLock::new();
        T.get_or_init(|| Tokenizer::o200k_base().unwrap())
    }

    fn theirs() -> &'static tiktoken_rs::CoreBPE {
        static T: OnceLock<tiktoken_rs::CoreBPE> = OnceLock::new();
        T.get_or_init(|| tiktoken_rs::o200k_base().unwrap())
    }

    fn same_as_tiktoken(text: &str) {
        assert_eq!(
            ours().count(text),
            theirs().encode_ordinary(text).len() as u64,
            "{text:?}"
        );
    }

    #[test]
    fn the_embedded_vocabulary_is_whole() {
        assert_eq!(ours().ranks.len(), 199_998);
        assert_eq!(ours().ranks.get(&b"!"[..]), Some(&0));
    }

    #[test]
    fn counts_like_tiktoken() {
        for text in [
            "",
            "Hello, world! How are you today?",
            "  leading and trailing spaces   ",
            "line one\nline two\r\n\r\n\tindented\n\n\n",
            "fn main() {\n    println!(\"{}\", 1 + 2_000_000);\n}\n",
            "{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{}}}",
            "I'm sure they'll've DONE it; WE'RE here. McDonald's HELLOworld helloWorld 'S 'x",
            "a\x0b\x0cb \x0b c\x00\x7f(d) 12345 1/2 ..//\r\n //\n\r x",
            "数字 12345678901234567890 和中文混合的文本，还有标点。",
            "Ünïcödé, emoji 🙂🙃👍🏽 and ZWJ 👨‍👩‍👧‍👦 family",
            "https://example.com/a/b?c=d&e=f#frag",
            "a  b   c\t\t d \u{a0}\u{a0}e \u{3000}\u{3000}f  \n  g   ",
            "trailing run    ",
            " \t \r\n  \n\n   x",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
        ] {
            same_as_tiktoken(text);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn counts_like_tiktoken_on_any_text(
            text in "[a-zA-Z0-9 \\t\\n\\r\\x0b\\x0c\\x00\\x7f.,;:'\"!?()\\[\\]{}<>/\\\\_+=*&^%$#@~`|-]{0,200}|[a-z \\t\\n\\u{a0}\\u{3000}1.]{0,80}|\\PC{0,60}"
        ) {
            prop_assume!(!text.split(|c: char| !c.is_alphanumeric()).any(|w| w.len() > LONGEST_MERGED));
            same_as_tiktoken(&text);
        }
    }

    #[test]
    fn a_remembered_count_is_the_count() {
        let bpe = Tokenizer::o200k_base().unwrap();
        let texts: Vec<String> = (0..3000)
            .map(|i| {
                format!(
                    "Message number {i}: please summarise the text below in {} words.",
                    i % 97
                )
            })
            .chain(["short".to_owned(), String::new(), "x".repeat(5000)])
            .collect();
        // Twice over: the first pass counts and fills the table, the second reads it back (and
        // any slot two texts share holds the later one, whose tag the earlier does not match).
        for _ in 0..2 {
            for t in &texts {
                assert_eq!(bpe.count_remembered(t), bpe.count(t), "{t:?}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn remembered_counts_match_fresh_ones(texts in proptest::collection::vec("\\PC{0,80}", 1..20)) {
            let bpe = ours();
            for t in texts.iter().chain(texts.iter()) {
                prop_assert_eq!(bpe.count_remembered(t), bpe.count(t));
            }
        }
    }

    #[test]
    fn long_pieces_are_estimated_not_merged() {
        let run = "x".repeat(10_000);
        assert_eq!(ours().count(&run), 2_500);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn counts_with_the_real_tokenizer_once_ready() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"Hello, world! How are you today?"},{"role":"user","name":"bob","content":[{"type":"text","text":"Hi"},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"there"}]}]}"#;
        let mut got = None;
        for _ in 0..200 {
            got = count_openai_chat(body);
            if got.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // "Hello, world! How are you today?" is 9 tokens in o200k_base; "bob" 1 (+1); "Hi\nthere"
        // 3; + 3 per message + 3.
        let parts = theirs().encode_ordinary("Hi\nthere").len() as u64;
        assert_eq!(got, Some(3 + (3 + 9) + (3 + 2 + parts)));
        // A string with escapes counts its decoded text.
        let escaped = br#"{"messages":[{"role":"user","content":"line one\nline \"two\""}]}"#;
        let text = theirs().encode_ordinary("line one\nline \"two\"").len() as u64;
        assert_eq!(count_openai_chat(escaped), Some(3 + 3 + text));
        assert_eq!(estimate(b"12345678"), 2);
    }
}
