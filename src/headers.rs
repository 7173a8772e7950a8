//! Names of the headers the gateway reads or writes on every request, made once.
//!
//! `HeaderMap::insert("x-cache", …)` parses and validates the name on every call, and
//! `get("x-request-id")` too, on every request (its cost: docs/benchmarks.md, "What changed
//! what"). These constants are built at compile time.

use axum::http::HeaderName;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const ANTHROPIC_BETA: HeaderName = HeaderName::from_static("anthropic-beta");
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");
pub const X_CACHE_LAYER: HeaderName = HeaderName::from_static("x-cache-layer");
pub const X_CACHE_SIMILARITY: HeaderName = HeaderName::from_static("x-cache-similarity");
pub const X_GATEWAY_GUARDRAILS: HeaderName = HeaderName::from_static("x-gateway-guardrails");
pub const X_GATEWAY_PROVIDER: HeaderName = HeaderName::from_static("x-gateway-provider");
pub const X_GATEWAY_DEPLOYMENT_MODEL: HeaderName =
    HeaderName::from_static("x-gateway-deployment-model");
pub const X_GATEWAY_HEDGED: HeaderName = HeaderName::from_static("x-gateway-hedged");
pub const X_GATEWAY_ATTEMPTS: HeaderName = HeaderName::from_static("x-gateway-attempts");
pub const X_GATEWAY_COST_USD: HeaderName = HeaderName::from_static("x-gateway-cost-usd");
/// Request fields a translation or the serving provider left out (comma-separated).
pub const X_GATEWAY_DROPPED: HeaderName = HeaderName::from_static("x-gateway-dropped");
pub const X_GATEWAY_CACHE_TTL: HeaderName = HeaderName::from_static("x-gateway-cache-ttl");
pub const X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");
pub const X_RATELIMIT_LIMIT_REQUESTS: HeaderName =
    HeaderName::from_static("x-ratelimit-limit-requests");
pub const X_RATELIMIT_REMAINING_REQUESTS: HeaderName =
    HeaderName::from_static("x-ratelimit-remaining-requests");
pub const X_RATELIMIT_RESET_REQUESTS: HeaderName =
    HeaderName::from_static("x-ratelimit-reset-requests");
pub const X_RATELIMIT_LIMIT_TOKENS: HeaderName =
    HeaderName::from_static("x-ratelimit-limit-tokens");
pub const X_RATELIMIT_REMAINING_TOKENS: HeaderName =
    HeaderName::from_static("x-ratelimit-remaining-tokens");
pub const X_RATELIMIT_RESET_TOKENS: HeaderName =
    HeaderName::from_static("x-ratelimit-reset-tokens");

/// A number as a header value, inline (`HeaderValue::from(u64)` makes two allocations).
pub fn number(n: u64) -> OwnValue {
    let mut t = InlineText::new();
    t.push(itoa::Buffer::new().format(n).as_bytes());
    OwnValue::inline(t)
}

/// Room for a value made for one answer: a number, a duration, a cost, a generated request id
/// (`req_` and 32 digits).
const INLINE: usize = 38;

/// Text written piece by piece into a fixed buffer of [`INLINE`] bytes (numbers, durations,
/// costs), without an allocation; a piece that does not fit is left out.
#[derive(Clone, Copy)]
pub struct InlineText {
    len: u8,
    buf: [u8; INLINE],
}

impl InlineText {
    pub const fn new() -> Self {
        Self {
            len: 0,
            buf: [0; INLINE],
        }
    }

    pub fn push(&mut self, piece: &[u8]) {
        let at = usize::from(self.len);
        let end = at + piece.len();
        if let (Some(dst), Ok(len)) = (self.buf.get_mut(at..end), u8::try_from(end)) {
            dst.copy_from_slice(piece);
            self.len = len;
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..usize::from(self.len)).unwrap_or_default()
    }
}

impl Default for InlineText {
    fn default() -> Self {
        Self::new()
    }
}

/// The value of a header the gateway sets itself (on an answer: [`OwnHeaders`]; on an upstream
/// request: `providers::http::Outgoing`). Text made for one answer or request is kept inline,
/// where a `HeaderValue` is an allocation and a copy (a request had seven of them); a value
/// that exists already (a configured name, a client's request id, a signature) is shared.
#[derive(Clone)]
pub enum OwnValue {
    Shared(http::HeaderValue),
    Inline(InlineText),
}

impl OwnValue {
    /// `text` as a value: inline when it fits, shared otherwise; `None` when it is not a valid
    /// header value.
    pub fn text(text: &[u8]) -> Option<Self> {
        if text.len() <= INLINE && visible(text) {
            let mut t = InlineText::new();
            t.push(text);
            return Some(Self::Inline(t));
        }
        http::HeaderValue::from_bytes(text).ok().map(Self::Shared)
    }

    /// Text the gateway wrote (digits and letters): inline; anything outside visible ASCII
    /// (never written so) goes through [`OwnValue::text`]'s check.
    pub fn inline(t: InlineText) -> Self {
        if visible(t.as_bytes()) {
            Self::Inline(t)
        } else {
            Self::text(t.as_bytes()).unwrap_or(Self::Inline(InlineText::new()))
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Shared(v) => v.as_bytes(),
            Self::Inline(t) => t.as_bytes(),
        }
    }

    /// As a `HeaderValue` (for a writer that takes only those).
    pub fn into_header_value(self) -> http::HeaderValue {
        match self {
            Self::Shared(v) => v,
            Self::Inline(t) => http::HeaderValue::from_bytes(t.as_bytes())
                .unwrap_or_else(|_| http::HeaderValue::from_static("")),
        }
    }
}

/// Visible ASCII and spaces: a subset of what a header value may hold.
fn visible(text: &[u8]) -> bool {
    text.iter().all(|b| (b' '..=b'~').contains(b))
}

impl From<http::HeaderValue> for OwnValue {
    fn from(v: http::HeaderValue) -> Self {
        Self::Shared(v)
    }
}

impl PartialEq<&str> for OwnValue {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl std::fmt::Debug for OwnValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // A shared value may be marked sensitive: its own `Debug` hides it then.
            Self::Shared(v) => v.fmt(f),
            Self::Inline(t) => String::from_utf8_lossy(t.as_bytes()).fmt(f),
        }
    }
}
/// Anthropic's request id answer header (on `/v1/messages`, beside `x-request-id`).
pub const REQUEST_ID: HeaderName = HeaderName::from_static("request-id");
/// The Anthropic API version a client sends (its model list gets Anthropic's shape).
pub const ANTHROPIC_VERSION: HeaderName = HeaderName::from_static("anthropic-version");

/// The headers an answer gets under the gateway's own names on every call (the request id,
/// `x-ratelimit-*`, `x-cache`, `x-gateway-provider`, `-deployment-model`, `-attempts`,
/// `-cost-usd`), kept in the answer's extensions beside its header map rather than in it: a
/// `HeaderMap` hashes a custom name byte by byte on every insert (~300 instructions a header,
/// ~3,500 of every request, docs/benchmarks.md "What changed what"); here they are pushed. The
/// server writes them after the map (`server::h1`), or moves them into the map before hyper
/// writes the answer (`server::conn::Answer`). Each of these names is set this way only, and once
/// per answer, so none is in both places.
#[derive(Clone, Debug, Default)]
pub struct OwnHeaders(Vec<(HeaderName, OwnValue)>);

impl OwnHeaders {
    /// `resp`'s own headers, to set some (one look-up in the extensions for several).
    pub fn on<B>(resp: &mut http::Response<B>) -> &mut Self {
        resp.extensions_mut()
            .get_or_insert_with(|| OwnHeaders(Vec::with_capacity(12)))
    }

    /// Set `name` (never set before on this answer).
    pub fn set(&mut self, name: HeaderName, value: impl Into<OwnValue>) {
        debug_assert!(
            self.0.iter().all(|(n, _)| *n != name),
            "{name} set twice on one answer"
        );
        self.0.push((name, value.into()));
    }

    /// `resp`'s own headers, if any were set.
    pub fn of<B>(resp: &http::Response<B>) -> Option<&Self> {
        resp.extensions().get::<Self>()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &OwnValue)> {
        self.0.iter().map(|(n, v)| (n, v))
    }

    /// Move them into the answer's header map (for a writer that reads only the map).
    pub fn into_map<B>(resp: &mut http::Response<B>) {
        if let Some(own) = resp.extensions_mut().remove::<Self>() {
            let headers = resp.headers_mut();
            for (name, value) in own.0 {
                headers.insert(name, value.into_header_value());
            }
        }
    }
}

/// A cost in USD with eight decimals, as `format!("{usd:.8}")` writes it, without the float
/// formatting machinery (~1,300 instructions of every priced answer) when the figure is small
/// enough for `usd * 1e8` to round to the same integer as the exact value does: below 2^32
/// hundred-millionths (about 42.9 USD), off the half-way point by more than the product's
/// error. Anything else goes through `format!`.
pub fn usd(usd: f64) -> Option<OwnValue> {
    let scaled = usd * 1e8;
    let fraction = scaled - scaled.floor();
    if usd >= 0.0 && scaled < 4_294_967_296.0 && (fraction - 0.5).abs() > 1e-3 {
        // Exact: `scaled` is below 2^32, so it converts to an integer without loss.
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "checked above"
        )]
        let n = scaled.round() as u64;
        let mut t = InlineText::new();
        t.push(itoa::Buffer::new().format(n / 100_000_000).as_bytes());
        t.push(b".");
        // Eight digits with their leading zeros: the fraction plus 10^8, its leading 1 left out.
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(n % 100_000_000 + 100_000_000).as_bytes();
        t.push(digits.get(1..).unwrap_or_default());
        return Some(OwnValue::inline(t));
    }
    OwnValue::text(format!("{usd:.8}").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::OwnValue;

    #[test]
    fn own_values_are_inline_when_short_and_shared_otherwise() {
        let id = "req_0123456789abcdef0123456789abcdef";
        let v = OwnValue::text(id.as_bytes()).unwrap();
        assert!(matches!(v, OwnValue::Inline(_)));
        assert_eq!(v, id);
        assert_eq!(v.clone().into_header_value(), id);
        // Longer than the inline room (a client's own request id): a shared value, the same text.
        let long = "x".repeat(100);
        let v = OwnValue::text(long.as_bytes()).unwrap();
        assert!(matches!(v, OwnValue::Shared(_)));
        assert_eq!(v.as_bytes(), long.as_bytes());
        // Text a header value cannot hold is refused either way; obs-text is kept as HTTP allows.
        assert!(OwnValue::text(b"a\nb").is_none());
        assert!(OwnValue::text(&[b'a'; 60][..]).is_some());
        assert!(
            OwnValue::text("caf\u{e9}".as_bytes())
                .is_some_and(|v| matches!(v, OwnValue::Shared(_)))
        );
        assert_eq!(super::number(0), "0");
        assert_eq!(super::number(u64::MAX), "18446744073709551615");
        assert_eq!(format!("{:?}", super::number(42)), "\"42\"");
    }

    #[test]
    fn usd_reads_as_format_writes_it() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut values = vec![
            0.0,
            1e-9,
            4e-9,
            5e-9,
            6e-9,
            1.5e-8,
            2.5e-8,
            0.000_001_23,
            0.000_125,
            0.1,
            0.5,
            0.999_999_995,
            1.0,
            42.949_672_95,
            42.949_672_96,
            43.0,
            1234.5678,
            1e12,
        ];
        for _ in 0..200_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Costs from a millionth of a cent up to ~100 USD, and exact half-way points.
            let x = (seed % 10_000_000_000) as f64 * 1e-8;
            values.push(x);
            values.push(x * 1e-3);
            values.push((seed % 1_000_000) as f64 * 1e-8 + 5e-9);
        }
        for v in values {
            assert_eq!(super::usd(v).unwrap(), format!("{v:.8}").as_str(), "{v:e}");
        }
    }
}
