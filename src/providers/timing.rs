//! Time in upstream answers: the `retry-after` an upstream asks for, and the idle timeout on a
//! streamed body (no chunk for too long ends it with an error).

use std::pin::Pin;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::Stream;
use http::HeaderMap;

use crate::error::{UpstreamError, UpstreamKind};

/// `retry-after-ms`, or `retry-after` in seconds or as an HTTP date.
pub fn parse_retry_after(h: &HeaderMap) -> Option<Duration> {
    if let Some(ms) = h
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let v = h.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(SystemTime::now()).unwrap_or_default())
}

pin_project_lite::pin_project! {
    /// Ends a stream with a timeout error when no item arrives within `idle`.
    pub(super) struct IdleTimeout<S> {
        #[pin]
        inner: S,
        #[pin]
        sleep: tokio::time::Sleep,
        idle: Duration,
        provider: String,
        done: bool,
    }
}

impl<S> IdleTimeout<S> {
    pub(super) fn new(inner: S, idle: Duration, provider: String) -> Self {
        Self {
            inner,
            sleep: tokio::time::sleep(idle),
            idle,
            provider,
            done: false,
        }
    }
}

impl<S: Stream<Item = Result<Bytes, UpstreamError>>> Stream for IdleTimeout<S> {
    type Item = Result<Bytes, UpstreamError>;
    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        match this.inner.poll_next(cx) {
            Poll::Ready(item) => {
                let deadline = tokio::time::Instant::now() + *this.idle;
                this.sleep.as_mut().reset(deadline);
                if item.is_none() {
                    *this.done = true;
                }
                Poll::Ready(item)
            }
            Poll::Pending => match this.sleep.poll(cx) {
                Poll::Ready(()) => {
                    *this.done = true;
                    Poll::Ready(Some(Err(UpstreamError::new(
                        this.provider,
                        UpstreamKind::Timeout,
                        format!("no data for {}ms mid-stream", this.idle.as_millis()),
                    ))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}
