//! TEMPORARY stub: replaced by the real SSE parser.
#[derive(Default)]
pub struct SseParser;
pub struct SseEvent<'a> {
    pub event: &'a str,
    pub data: &'a str,
}
impl SseParser {
    pub fn new() -> Self {
        Self
    }
    pub fn push(&mut self, _chunk: &[u8], _f: impl FnMut(SseEvent<'_>)) {}
    pub fn buffered(&self) -> usize {
        0
    }
}
