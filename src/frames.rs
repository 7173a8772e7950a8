//! A body's data frames gathered into one `Bytes`: a body that comes in one frame (most do) is
//! kept as it came, without a copy or an allocation; a second frame starts a buffer. The one
//! implementation behind the request body's read (`api::read_body`) and a whole upstream
//! answer's (`providers`), in place of `http_body_util`'s `collect`, whose list of frames cost an
//! allocation on every answer.

use bytes::{Bytes, BytesMut};

/// The data gathered so far.
#[derive(Debug, Default)]
pub struct Gather {
    first: Option<Bytes>,
    buf: Option<BytesMut>,
    len: usize,
}

impl Gather {
    /// Bytes gathered so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Add one frame's data. `capacity` sizes the buffer a second frame starts (never below
    /// what it must hold).
    pub fn push(&mut self, data: Bytes, capacity: usize) {
        if data.is_empty() {
            return;
        }
        self.len += data.len();
        if let Some(b) = self.buf.as_mut() {
            b.extend_from_slice(&data);
        } else if let Some(f) = self.first.take() {
            let mut b = BytesMut::with_capacity(capacity.max(self.len));
            b.extend_from_slice(&f);
            b.extend_from_slice(&data);
            self.buf = Some(b);
        } else {
            self.first = Some(data);
        }
    }

    /// Everything gathered, as one `Bytes`.
    pub fn finish(self) -> Bytes {
        self.buf
            .map(BytesMut::freeze)
            .or(self.first)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_frame_is_kept_as_it_came() {
        let data = Bytes::from_static(b"{\"a\":1}");
        let mut g = Gather::default();
        g.push(Bytes::new(), 0);
        g.push(data.clone(), 0);
        assert_eq!(g.len(), 7);
        let out = g.finish();
        assert_eq!(out, data);
        assert_eq!(out.as_ptr(), data.as_ptr(), "no copy of a single frame");
    }

    #[test]
    fn frames_are_joined_in_order() {
        let mut g = Gather::default();
        for part in ["ab", "", "cde", "f"] {
            g.push(Bytes::from(part), 2);
        }
        assert_eq!(g.len(), 6);
        assert_eq!(g.finish(), "abcdef");
        assert_eq!(Gather::default().finish(), "");
    }
}
