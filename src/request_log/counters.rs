//! The counters behind the usage report and the overview statistics, kept as named hashes of
//! numbers (Redis hashes `aigw:{reqlog}:report:<name>` written with `HINCRBY`/`HINCRBYFLOAT`, so every
//! replica adds to the same totals; or rows `{name}\x1f{field}` of the embedded store):
//!
//! - `d:{YYYY-MM-DD}`: the usage report, fields `{key}\x1f{model}\x1f{provider}\x1f{metric}`,
//!   kept `request_log.usage_retention`;
//! - `m:{unix minute start}` and `h:{unix hour start}`: the overview (`GET /admin/stats`),
//!   fields `{metric}` and `l{i}`, the count of calls whose latency fell in bucket `i` of a
//!   log-scale histogram (so percentiles add up over replicas), kept 2 hours and 2 days.

use std::collections::{BTreeMap, HashMap};

use foldhash::fast::RandomState;

use super::Entry;

/// A hash's fields and values.
pub type Hash = HashMap<String, f64>;

/// The metrics of a usage row.
pub const METRICS: [&str; 6] = [
    "requests",
    "errors",
    "cache_hits",
    "input_tokens",
    "output_tokens",
    "cost_usd",
];

/// Separates the parts of a field name.
pub const SEP: char = '\u{1f}';

pub const MINUTE_KEEP_SECS: u64 = 2 * 3600;
pub const HOUR_KEEP_SECS: u64 = 2 * 86_400;

/// What one batch adds: `(hash, field)` → amount, and when each hash may go (unix seconds
/// after its period; the store adds the retention).
#[derive(Debug, Default)]
pub struct Deltas {
    pub ints: BTreeMap<(String, String), i64>,
    pub floats: BTreeMap<(String, String), f64>,
    /// hash → how long after now it is kept (seconds).
    pub keep: BTreeMap<String, Keep>,
}

/// How long a hash is kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Keep {
    /// `request_log.usage_retention`.
    Retention,
    Secs(u64),
}

/// The latency histogram's bucket of a duration: ~10 % wide.
pub fn latency_bucket(ms: u64) -> u32 {
    let v = (ms.max(1) as f64).ln() / 1.1f64.ln();
    v.floor().clamp(0.0, 200.0) as u32
}

/// The value a bucket stands for (its geometric middle), in ms.
pub fn bucket_value(b: u32) -> f64 {
    1.1f64.powf(f64::from(b) + 0.5)
}

fn add_int(d: &mut Deltas, hash: &str, field: String, v: i64) {
    if v != 0 {
        *d.ints.entry((hash.to_owned(), field)).or_default() += v;
    }
}

fn add_float(d: &mut Deltas, hash: &str, field: String, v: f64) {
    if v != 0.0 {
        *d.floats.entry((hash.to_owned(), field)).or_default() += v;
    }
}

/// A usage row's sums within a batch.
#[derive(Default)]
struct Row {
    requests: i64,
    errors: i64,
    cache_hits: i64,
    input_tokens: i64,
    output_tokens: i64,
    cost_usd: f64,
}

/// An overview bucket's sums within a batch, with its latency histogram.
#[derive(Default)]
struct Bucket {
    row: Row,
    latency: BTreeMap<u32, i64>,
}

/// The counter changes of a batch of entries: summed first by borrowed group (a batch has few
/// distinct days × keys × models × providers), then named once per group.
pub fn deltas<S: std::ops::Deref<Target = str>>(entries: &[Entry<S>]) -> Deltas {
    let mut rows: HashMap<(u64, &str, &str, &str), Row, RandomState> = HashMap::default();
    // (b'm' or b'h', period start) → sums.
    let mut buckets: HashMap<(u8, u64), Bucket, RandomState> = HashMap::default();
    for e in entries {
        let error = i64::from(e.status >= 400);
        let input = i64::try_from(e.input_tokens.unwrap_or(0)).unwrap_or(i64::MAX);
        let output = i64::try_from(e.output_tokens.unwrap_or(0)).unwrap_or(i64::MAX);
        let cost = e.cost_usd.unwrap_or(0.0);
        let group = (
            e.created_at / 86_400,
            e.key.as_deref().unwrap_or(""),
            e.model.as_deref().unwrap_or(""),
            e.provider.as_deref().unwrap_or(""),
        );
        let row = rows.entry(group).or_default();
        row.requests += 1;
        row.errors += error;
        row.cache_hits += i64::from(e.cache.as_deref() == Some("HIT"));
        row.input_tokens = row.input_tokens.saturating_add(input);
        row.output_tokens = row.output_tokens.saturating_add(output);
        row.cost_usd += cost;
        let bucket = latency_bucket(e.latency_ms);
        for period in [
            (b'm', e.created_at / 60 * 60),
            (b'h', e.created_at / 3600 * 3600),
        ] {
            let b = buckets.entry(period).or_default();
            b.row.requests += 1;
            b.row.errors += error;
            b.row.input_tokens = b.row.input_tokens.saturating_add(input);
            b.row.output_tokens = b.row.output_tokens.saturating_add(output);
            b.row.cost_usd += cost;
            *b.latency.entry(bucket).or_default() += 1;
        }
    }
    let mut d = Deltas::default();
    let sep = SEP.to_string();
    for ((day, key, model, provider), r) in rows {
        let day = format!("d:{}", day_string(i64::try_from(day).unwrap_or(0)));
        d.keep.insert(day.clone(), Keep::Retention);
        let group = [key, model, provider]
            .map(|s| s.replace(SEP, " "))
            .join(&sep);
        let f = |m: &str| format!("{group}{SEP}{m}");
        add_int(&mut d, &day, f("requests"), r.requests);
        add_int(&mut d, &day, f("errors"), r.errors);
        add_int(&mut d, &day, f("cache_hits"), r.cache_hits);
        add_int(&mut d, &day, f("input_tokens"), r.input_tokens);
        add_int(&mut d, &day, f("output_tokens"), r.output_tokens);
        add_float(&mut d, &day, f("cost_usd"), r.cost_usd);
    }
    for ((kind, start), b) in buckets {
        let (hash, keep) = if kind == b'm' {
            (format!("m:{start}"), MINUTE_KEEP_SECS)
        } else {
            (format!("h:{start}"), HOUR_KEEP_SECS)
        };
        d.keep.insert(hash.clone(), Keep::Secs(keep));
        add_int(&mut d, &hash, "requests".into(), b.row.requests);
        add_int(&mut d, &hash, "errors".into(), b.row.errors);
        add_int(&mut d, &hash, "input_tokens".into(), b.row.input_tokens);
        add_int(&mut d, &hash, "output_tokens".into(), b.row.output_tokens);
        add_float(&mut d, &hash, "cost_usd".into(), b.row.cost_usd);
        for (bucket, n) in b.latency {
            add_int(&mut d, &hash, format!("l{bucket}"), n);
        }
    }
    d
}

// ------------------------------------------------------------------ dates

/// `YYYY-MM-DD` (UTC) of a unix time.
pub fn day_of(unix_secs: u64) -> String {
    let (y, m, d) = civil_from_days(i64::try_from(unix_secs / 86_400).unwrap_or(0));
    format!("{y:04}-{m:02}-{d:02}")
}

/// The days since 1970-01-01 of a `YYYY-MM-DD` date; `None` when it is not a real date.
pub fn parse_day(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// `YYYY-MM-DD` of a day number.
pub fn day_string(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

// Howard Hinnant's civil-date algorithms.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

// ------------------------------------------------------------------ reading

/// The usage report's dimensions.
pub const DIMENSIONS: [&str; 4] = ["day", "key", "model", "provider"];

/// Rows of the usage report for the days `from..=to` (their hashes, in that order), grouped by
/// `group_by` (a subset of [`DIMENSIONS`]), sorted by the grouped fields.
pub fn usage_rows(days: &[(String, Hash)], group_by: &[&str]) -> Vec<serde_json::Value> {
    let mut rows: BTreeMap<Vec<String>, [f64; 6]> = BTreeMap::new();
    for (day, hash) in days {
        for (field, v) in hash {
            let mut parts = field.split(SEP);
            let (Some(key), Some(model), Some(provider), Some(metric)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Some(i) = METRICS.iter().position(|m| *m == metric) else {
                continue;
            };
            let group: Vec<String> = group_by
                .iter()
                .map(|g| match *g {
                    "day" => day.clone(),
                    "key" => key.to_owned(),
                    "model" => model.to_owned(),
                    _ => provider.to_owned(),
                })
                .collect();
            rows.entry(group).or_default()[i] += v;
        }
    }
    rows.into_iter()
        .filter(|(_, m)| m[0] > 0.0)
        .map(|(group, m)| {
            let mut o = serde_json::Map::new();
            for (g, v) in group_by.iter().zip(group) {
                // A call without a key (a gateway without keys), model or provider: null.
                let v = if v.is_empty() && *g != "day" {
                    serde_json::Value::Null
                } else {
                    serde_json::Value::String(v)
                };
                o.insert((*g).to_owned(), v);
            }
            for (name, v) in METRICS.iter().zip(m) {
                let v = if *name == "cost_usd" {
                    serde_json::json!((v * 1e9).round() / 1e9)
                } else {
                    serde_json::json!(v as u64)
                };
                o.insert((*name).to_owned(), v);
            }
            serde_json::Value::Object(o)
        })
        .collect()
}

/// One overview bucket (or the totals) from its hashes.
pub fn stats_of(start: Option<u64>, hashes: &[&Hash]) -> serde_json::Value {
    let mut sums = [0f64; 5];
    let names = [
        "requests",
        "errors",
        "input_tokens",
        "output_tokens",
        "cost_usd",
    ];
    let mut hist: BTreeMap<u32, f64> = BTreeMap::new();
    for h in hashes {
        for (k, v) in *h {
            if let Some(i) = names.iter().position(|n| n == k) {
                sums[i] += v;
            } else if let Some(b) = k.strip_prefix('l').and_then(|b| b.parse::<u32>().ok()) {
                *hist.entry(b).or_default() += v;
            }
        }
    }
    let total: f64 = hist.values().sum();
    let pct = |p: f64| -> u64 {
        if total <= 0.0 {
            return 0;
        }
        let want = (p * total).ceil().max(1.0);
        let mut seen = 0.0;
        for (b, n) in &hist {
            seen += n;
            if seen >= want {
                return bucket_value(*b).round() as u64;
            }
        }
        0
    };
    let mut o = serde_json::Map::new();
    if let Some(s) = start {
        o.insert("start".into(), s.into());
    }
    for (n, v) in names.iter().zip(sums) {
        let v = if *n == "cost_usd" {
            serde_json::json!((v * 1e9).round() / 1e9)
        } else {
            serde_json::json!(v as u64)
        };
        o.insert((*n).to_owned(), v);
    }
    o.insert("p50_ms".into(), pct(0.5).into());
    o.insert("p95_ms".into(), pct(0.95).into());
    serde_json::Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(day_of(0), "1970-01-01");
        assert_eq!(day_of(1_796_515_200), "2026-12-06");
        let d = parse_day("2026-12-06").unwrap();
        assert_eq!(day_string(d), "2026-12-06");
        assert_eq!(day_string(parse_day("2024-02-29").unwrap()), "2024-02-29");
        for bad in [
            "2026-02-30",
            "2025-02-29",
            "2026-13-01",
            "26-12-06",
            "2026-1-06",
            "x",
        ] {
            assert!(parse_day(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_batch_adds_what_its_entries_add_one_by_one() {
        let day = 1_796_515_200; // 2026-12-06 00:00 UTC
        let entry = |at: u64, key: &str, status: u16, cost: Option<f64>, ms: u64| Entry {
            created_at: at,
            key: Some(key.to_owned()),
            model: Some("gpt".to_owned()),
            provider: Some("openai".to_owned()),
            status,
            latency_ms: ms,
            cache: (status == 200 && ms == 1).then(|| "HIT".to_owned()),
            input_tokens: Some(10),
            output_tokens: Some(5),
            cost_usd: cost,
            ..Entry::default()
        };
        let batch = [
            entry(day + 30, "a", 200, Some(0.5), 1),
            entry(day + 40, "a", 500, None, 100),
            entry(day + 90, "b\u{1f}x", 200, Some(0.25), 100),
            entry(day + 86_400 + 5, "a", 200, Some(1.0), 100),
        ];
        let together = deltas(&batch);
        let mut ints: BTreeMap<(String, String), i64> = BTreeMap::new();
        let mut floats: BTreeMap<(String, String), f64> = BTreeMap::new();
        let mut keep = BTreeMap::new();
        for e in &batch {
            let one = deltas(std::slice::from_ref(e));
            for (k, v) in one.ints {
                *ints.entry(k).or_default() += v;
            }
            for (k, v) in one.floats {
                *floats.entry(k).or_default() += v;
            }
            keep.extend(one.keep);
        }
        assert_eq!(together.ints, ints);
        assert_eq!(together.floats, floats);
        assert_eq!(together.keep, keep);
        let field = |h: &str, f: &str| (h.to_owned(), f.to_owned());
        let a = format!("a{SEP}gpt{SEP}openai{SEP}");
        assert_eq!(ints[&field("d:2026-12-06", &format!("{a}requests"))], 2);
        assert_eq!(ints[&field("d:2026-12-06", &format!("{a}errors"))], 1);
        assert_eq!(ints[&field("d:2026-12-06", &format!("{a}cache_hits"))], 1);
        assert_eq!(ints[&field("d:2026-12-07", &format!("{a}requests"))], 1);
        // A separator inside a name is made a space, so it cannot shift the fields.
        let b = format!("b x{SEP}gpt{SEP}openai{SEP}requests");
        assert_eq!(ints[&field("d:2026-12-06", &b)], 1);
        let minute = format!("m:{day}");
        assert_eq!(ints[&field(&minute, "requests")], 2);
        assert_eq!(ints[&field(&minute, "input_tokens")], 20);
        assert_eq!(floats[&field(&minute, "cost_usd")], 0.5);
        assert_eq!(ints[&field(&format!("h:{day}"), "requests")], 3);
    }

    #[test]
    fn percentiles_from_buckets() {
        let mut h = Hash::new();
        for ms in [10u64, 10, 10, 10, 10, 10, 10, 10, 10, 1000] {
            *h.entry(format!("l{}", latency_bucket(ms))).or_default() += 1.0;
        }
        h.insert("requests".into(), 10.0);
        let s = stats_of(Some(60), &[&h]);
        let p50 = s["p50_ms"].as_u64().unwrap();
        let p95 = s["p95_ms"].as_u64().unwrap();
        assert!((9..=11).contains(&p50), "{p50}");
        assert!((900..=1100).contains(&p95), "{p95}");
        assert_eq!(s["requests"], 10);
    }
}
