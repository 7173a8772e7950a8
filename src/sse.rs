//! Incremental Server-Sent Events parser (the WHATWG `text/event-stream` rules).
//!
//! Lines end with `\n`, `\r\n` or `\r`; a frame may be split anywhere across network chunks,
//! including between the `\r` and `\n` of one line ending. `event:` sets the event name, `data:`
//! lines are joined with `\n`, lines starting with `:` are comments, `id` and `retry` are ignored
//! (the gateway does not reconnect), and an event is dispatched at a blank line when it has data.
//! A leading byte-order mark is skipped.
//!
//! The common case costs no copy: an event whose lines all sit in one chunk is handed to the
//! callback as slices of that chunk. Only a line cut by a chunk boundary, or an event spread over
//! several chunks, is buffered.

use std::ops::Range;

use memchr::memchr2;

/// One dispatched event. `event` is empty when the stream named none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseEvent<'a> {
    pub event: &'a str,
    pub data: &'a str,
}

/// Where a field's value currently lives.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Src {
    /// Not seen in this event.
    None,
    /// A range of the chunk being pushed (valid only during one `push`).
    Chunk(Range<usize>),
    /// In the parser's own buffer.
    Owned,
}

/// Incremental SSE parser; feed it network chunks with [`SseParser::push`].
#[derive(Debug)]
pub struct SseParser {
    /// The start of a line whose end has not arrived yet.
    line: Vec<u8>,
    /// The previous chunk ended in `\r`: a `\n` starting the next one belongs to that line end.
    pending_cr: bool,
    /// No line completed yet (a byte-order mark may start the first one).
    at_start: bool,
    data_src: Src,
    data: Vec<u8>,
    event_src: Src,
    event: Vec<u8>,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SseParser {
    pub fn new() -> Self {
        Self {
            line: Vec::new(),
            pending_cr: false,
            at_start: true,
            data_src: Src::None,
            data: Vec::new(),
            event_src: Src::None,
            event: Vec::new(),
        }
    }

    /// Bytes held that do not yet form a complete event (a partial line plus the fields of the
    /// event being assembled), so the caller can bound memory.
    pub fn buffered(&self) -> usize {
        self.line.len() + self.data.len() + self.event.len()
    }

    /// Feed one network chunk; `f` is called for each complete event. An event whose name or
    /// data is not valid UTF-8 is skipped.
    pub fn push(&mut self, chunk: &[u8], mut f: impl FnMut(SseEvent<'_>)) {
        let mut pos = 0;
        if self.pending_cr && !chunk.is_empty() {
            self.pending_cr = false;
            if chunk[0] == b'\n' {
                pos = 1;
            }
        }
        while pos < chunk.len() {
            let Some(i) = memchr2(b'\n', b'\r', &chunk[pos..]) else {
                self.line.extend_from_slice(&chunk[pos..]);
                break;
            };
            let end = pos + i;
            let next = if chunk[end] == b'\r' {
                match chunk.get(end + 1) {
                    Some(b'\n') => end + 2,
                    Some(_) => end + 1,
                    None => {
                        self.pending_cr = true;
                        end + 1
                    }
                }
            } else {
                end + 1
            };
            if self.line.is_empty() {
                self.line_from_chunk(chunk, pos..end, &mut f);
            } else {
                self.line.extend_from_slice(&chunk[pos..end]);
                let line = std::mem::take(&mut self.line);
                self.owned_line(&line, chunk, &mut f);
                // Keep the allocation for the next split line.
                self.line = line;
                self.line.clear();
            }
            pos = next;
        }
        // Ranges into this chunk do not outlive the call.
        if let Src::Chunk(r) = &self.data_src {
            self.data.clear();
            self.data.extend_from_slice(&chunk[r.clone()]);
            self.data_src = Src::Owned;
        }
        if let Src::Chunk(r) = &self.event_src {
            self.event.clear();
            self.event.extend_from_slice(&chunk[r.clone()]);
            self.event_src = Src::Owned;
        }
    }

    /// Strip a byte-order mark from the stream's first line.
    fn skip_bom(&mut self, line: Range<usize>, bytes: &[u8]) -> Range<usize> {
        if !self.at_start {
            return line;
        }
        self.at_start = false;
        if bytes[line.clone()].starts_with(b"\xEF\xBB\xBF") {
            line.start + 3..line.end
        } else {
            line
        }
    }

    /// A complete line lying in `chunk[line]`.
    fn line_from_chunk(
        &mut self,
        chunk: &[u8],
        line: Range<usize>,
        f: &mut impl FnMut(SseEvent<'_>),
    ) {
        let line = self.skip_bom(line, chunk);
        if line.is_empty() {
            self.dispatch(chunk, f);
            return;
        }
        let Some((field, value)) = split_field(chunk, line) else {
            return;
        };
        match &chunk[field] {
            b"data" => match &self.data_src {
                Src::None => self.data_src = Src::Chunk(value),
                Src::Chunk(r) => {
                    let r = r.clone();
                    self.data.clear();
                    self.data.extend_from_slice(&chunk[r]);
                    self.data.push(b'\n');
                    self.data.extend_from_slice(&chunk[value]);
                    self.data_src = Src::Owned;
                }
                Src::Owned => {
                    self.data.push(b'\n');
                    self.data.extend_from_slice(&chunk[value]);
                }
            },
            b"event" => {
                self.event.clear();
                self.event_src = Src::Chunk(value);
            }
            _ => {}
        }
    }

    /// A complete line that was assembled in the parser's buffer (`chunk` is the current chunk,
    /// which earlier fields of this event may still point into).
    fn owned_line(&mut self, line: &[u8], chunk: &[u8], f: &mut impl FnMut(SseEvent<'_>)) {
        let range = self.skip_bom(0..line.len(), line);
        if range.is_empty() {
            self.dispatch(chunk, f);
            return;
        }
        let Some((field, value)) = split_field(line, range) else {
            return;
        };
        match &line[field] {
            b"data" => {
                match std::mem::replace(&mut self.data_src, Src::Owned) {
                    Src::None => self.data.clear(),
                    Src::Chunk(r) => {
                        self.data.clear();
                        self.data.extend_from_slice(&chunk[r]);
                        self.data.push(b'\n');
                    }
                    Src::Owned => self.data.push(b'\n'),
                }
                self.data.extend_from_slice(&line[value]);
            }
            b"event" => {
                self.event.clear();
                self.event.extend_from_slice(&line[value]);
                self.event_src = Src::Owned;
            }
            _ => {}
        }
    }

    /// A blank line: hand over the event being assembled (if it has data) and start a new one.
    fn dispatch(&mut self, chunk: &[u8], f: &mut impl FnMut(SseEvent<'_>)) {
        let data: Option<&[u8]> = match &self.data_src {
            Src::None => None,
            Src::Chunk(r) => Some(&chunk[r.clone()]),
            Src::Owned => Some(&self.data),
        };
        if let Some(data) = data {
            let event: &[u8] = match &self.event_src {
                Src::None => b"",
                Src::Chunk(r) => &chunk[r.clone()],
                Src::Owned => &self.event,
            };
            match (std::str::from_utf8(event), std::str::from_utf8(data)) {
                (Ok(event), Ok(data)) => f(SseEvent { event, data }),
                _ => tracing::debug!("skipping a server-sent event that is not valid UTF-8"),
            }
        }
        self.data_src = Src::None;
        self.data.clear();
        self.event_src = Src::None;
        self.event.clear();
    }
}

/// Split a non-empty line into its field name and value (one leading space of the value
/// removed). `None` for a comment.
fn split_field(bytes: &[u8], line: Range<usize>) -> Option<(Range<usize>, Range<usize>)> {
    let l = &bytes[line.clone()];
    if l.first() == Some(&b':') {
        return None;
    }
    match memchr::memchr(b':', l) {
        None => Some((line.clone(), line.end..line.end)),
        Some(c) => {
            let mut v = line.start + c + 1;
            if bytes.get(v) == Some(&b' ') && v < line.end {
                v += 1;
            }
            Some((line.start..line.start + c, v..line.end))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn collect(parts: &[&[u8]]) -> Vec<(String, String)> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for part in parts {
            p.push(part, |e| out.push((e.event.to_owned(), e.data.to_owned())));
        }
        out
    }

    fn ev(e: &str, d: &str) -> (String, String) {
        (e.to_owned(), d.to_owned())
    }

    #[test]
    fn basic_events() {
        let s = b"event: message_start\ndata: {\"a\":1}\n\n: comment\n\ndata: x\ndata: y\n\n";
        assert_eq!(
            collect(&[s]),
            vec![ev("message_start", "{\"a\":1}"), ev("", "x\ny")]
        );
    }

    #[test]
    fn line_endings() {
        let s = b"data:a\r\n\r\ndata:b\r\rdata: c\n\n";
        assert_eq!(collect(&[s]), vec![ev("", "a"), ev("", "b"), ev("", "c")]);
    }

    #[test]
    fn crlf_split_between_chunks() {
        let got = collect(&[b"data: a\r", b"\n\r", b"\ndata: b\r", b"\r"]);
        assert_eq!(got, vec![ev("", "a"), ev("", "b")]);
    }

    #[test]
    fn fields_without_values_and_ignored_fields() {
        let s = b"data\n\nid: 7\nretry: 10\nfoo: bar\ndata:  two spaces\n\nevent: x\n\n";
        // "data" alone is an empty data line; an event with no data is not dispatched.
        assert_eq!(collect(&[s]), vec![ev("", ""), ev("", " two spaces")]);
    }

    #[test]
    fn event_name_resets_after_dispatch() {
        let s = b"event: a\ndata: 1\n\ndata: 2\n\n";
        assert_eq!(collect(&[s]), vec![ev("a", "1"), ev("", "2")]);
    }

    #[test]
    fn bom_is_skipped_even_when_split() {
        let got = collect(&[b"\xEF", b"\xBB\xBFdata: a\n\n"]);
        assert_eq!(got, vec![ev("", "a")]);
        let got = collect(&[b"\xEF\xBB\xBFevent: e\ndata: a\n\n"]);
        assert_eq!(got, vec![ev("e", "a")]);
    }

    #[test]
    fn invalid_utf8_event_is_skipped() {
        let got = collect(&[b"data: \xff\xfe\n\ndata: ok\n\n"]);
        assert_eq!(got, vec![ev("", "ok")]);
    }

    #[test]
    fn utf8_split_across_chunks() {
        let s = "data: h\u{e9}llo \u{1F600}\n\n".as_bytes();
        for cut in 0..s.len() {
            let got = collect(&[&s[..cut], &s[cut..]]);
            assert_eq!(got, vec![ev("", "h\u{e9}llo \u{1F600}")]);
        }
    }

    #[test]
    fn buffered_counts_partial_event() {
        let mut p = SseParser::new();
        p.push(b"event: a\ndata: 12", |_| {});
        // the name "a" and the partial line "data: 12"
        assert_eq!(p.buffered(), 1 + 8);
        let mut n = 0;
        p.push(b"3\n\n", |e| {
            assert_eq!(
                e,
                SseEvent {
                    event: "a",
                    data: "123"
                }
            );
            n += 1;
        });
        assert_eq!(n, 1);
        assert_eq!(p.buffered(), 0);
    }

    #[test]
    fn event_spread_over_chunks_keeps_earlier_fields() {
        let got = collect(&[b"event: x\ndata: 1\n", b"data: 2\n", b"\n"]);
        assert_eq!(got, vec![ev("x", "1\n2")]);
        let got = collect(&[b"event: x\nda", b"ta: 1\ndata: 2\n\n"]);
        assert_eq!(got, vec![ev("x", "1\n2")]);
    }

    fn stream_strategy() -> impl Strategy<Value = Vec<u8>> {
        let line = prop_oneof![
            "[a-z0-9 {}\":,é]{0,12}".prop_map(|s| format!("data: {s}")),
            "[a-z_]{1,10}".prop_map(|s| format!("event: {s}")),
            "[a-z ]{0,8}".prop_map(|s| format!(": {s}")),
            Just("data".to_owned()),
            Just("id: 5".to_owned()),
            Just(String::new()),
        ];
        let ending = prop_oneof![Just("\n"), Just("\r\n"), Just("\r")];
        proptest::collection::vec((line, ending), 0..40).prop_map(|v| {
            let mut s = String::new();
            for (l, e) in v {
                s.push_str(&l);
                s.push_str(e);
            }
            s.push_str("\n\n");
            s.into_bytes()
        })
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_events(
            stream in stream_strategy(),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let whole = collect(&[&stream]);
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
            points.sort_unstable();
            let mut parts: Vec<&[u8]> = Vec::new();
            let mut last = 0;
            for p in points {
                parts.push(&stream[last..p]);
                last = p;
            }
            parts.push(&stream[last..]);
            prop_assert_eq!(collect(&parts), whole);
        }

        #[test]
        fn byte_by_byte_gives_the_same_events(stream in stream_strategy()) {
            let whole = collect(&[&stream]);
            let parts: Vec<&[u8]> = stream.chunks(1).collect();
            prop_assert_eq!(collect(&parts), whole);
        }
    }
}
