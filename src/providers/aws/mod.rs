//! What talking to AWS Bedrock takes besides the translation (`translate::bedrock`): request
//! signing ([`sigv4`]), the binary event-stream framing of streamed answers ([`eventstream`]),
//! the two together for a `ConverseStream` body ([`ConverseStreamToChat`]) and the runtime URLs
//! ([`bedrock_url`]).

pub mod eventstream;
pub mod sigv4;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::translate::{BedrockToChatStream, StreamFault, error_fault, exception_fault};
use eventstream::{EventStreamDecoder, FrameKind};

/// Characters escaped in a URL path segment: all but RFC 3986's unreserved ones.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The default base URL of a region's Bedrock runtime.
pub fn bedrock_base_url(region: &str) -> String {
    format!("https://bedrock-runtime.{region}.amazonaws.com")
}

/// `{base}/model/{model}/converse` (or `/converse-stream`), the model id percent-encoded as one
/// path segment (`:` in `…-v1:0`, `/` and `:` in an inference-profile ARN). Sign exactly this
/// URL.
pub fn bedrock_url(base_url: &str, model: &str, stream: bool) -> String {
    let op = if stream {
        "converse-stream"
    } else {
        "converse"
    };
    format!(
        "{}/model/{}/{op}",
        base_url.trim_end_matches('/'),
        utf8_percent_encode(model, SEGMENT)
    )
}

/// A `ConverseStream` answer's body, as it arrives, -> OpenAI chunks: the event-stream decoder
/// and the event converter in one. A corrupt frame ends the stream with an `upstream_error`
/// event (and `[DONE]`); so does a body that ends inside a frame or before the answer was
/// complete.
#[derive(Debug)]
pub struct ConverseStreamToChat {
    decoder: EventStreamDecoder,
    conv: BedrockToChatStream,
    /// A fault was handed back: nothing more is decoded.
    failed: bool,
}

impl ConverseStreamToChat {
    pub fn new(conv: BedrockToChatStream) -> Self {
        ConverseStreamToChat {
            decoder: EventStreamDecoder::new(),
            conv,
            failed: false,
        }
    }

    /// One network chunk of the body.
    pub fn on_bytes(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        if let Err(f) = self.on_bytes_checked(chunk, out) {
            self.conv.on_error_fault(&f, out);
        }
    }

    /// One network chunk of the body; an exception or error frame, or a broken frame, is
    /// handed back instead of written (nothing more is decoded after it).
    pub fn on_bytes_checked(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), StreamFault> {
        if self.failed || self.conv.is_done() {
            return Ok(());
        }
        self.decoder.push(chunk);
        loop {
            match self.decoder.next_frame() {
                Ok(Some(frame)) => match frame.kind() {
                    FrameKind::Event(kind) => self.conv.on_event(kind, frame.payload(), out),
                    FrameKind::Exception(kind) => {
                        return Err(self.fail(exception_fault(kind, frame.payload())));
                    }
                    FrameKind::Error { code, message } => {
                        return Err(self.fail(error_fault(code, message)));
                    }
                    FrameKind::Other(kind) => {
                        tracing::debug!(kind, "skipped an event-stream frame of an unknown type")
                    }
                },
                Ok(None) => return Ok(()),
                Err(e) => {
                    tracing::debug!(error = %e, "the upstream's event stream is broken");
                    return Err(self.fail(StreamFault {
                        error_type: "upstream_error",
                        message: format!("the upstream's event stream is broken: {e}"),
                    }));
                }
            }
        }
    }

    fn fail(&mut self, f: StreamFault) -> StreamFault {
        self.failed = true;
        f
    }

    /// The body ended.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if let Err(f) = self.finish_checked(out) {
            self.conv.on_error_fault(&f, out);
        }
    }

    /// The body ended: the closing chunks, or the fault of a body cut inside a frame or before
    /// the answer was complete (not written).
    pub fn finish_checked(&mut self, out: &mut Vec<u8>) -> Result<(), StreamFault> {
        if self.failed {
            return Ok(());
        }
        if let Err(e) = self.decoder.finish() {
            tracing::debug!(error = %e, "the upstream's event stream was cut");
        }
        self.conv.finish_checked(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            bedrock_url(
                &bedrock_base_url("us-east-1"),
                "anthropic.claude-3-5-sonnet-20240620-v1:0",
                false
            ),
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
        );
        assert_eq!(
            bedrock_url(
                "http://127.0.0.1:9/",
                "arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.amazon.nova-pro-v1:0",
                true
            ),
            "http://127.0.0.1:9/model/arn%3Aaws%3Abedrock%3Aeu-west-1%3A123456789012%3Ainference-profile%2Feu.amazon.nova-pro-v1%3A0/converse-stream"
        );
    }
}
