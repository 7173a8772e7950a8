//! TEMPORARY stub: replaced by the real translation layer.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;
#[derive(Debug, thiserror::Error)]
pub enum TranslateError {
    #[error("{0}")]
    Invalid(String),
}
fn no() -> TranslateError {
    TranslateError::Invalid("translation not available yet".into())
}
pub fn chat_request_to_messages(_b: &[u8], _m: &str) -> Result<Vec<u8>, TranslateError> {
    Err(no())
}
pub fn messages_request_to_chat(_b: &[u8], _m: &str) -> Result<Vec<u8>, TranslateError> {
    Err(no())
}
pub fn messages_response_to_chat(_b: &[u8], _m: &str) -> Result<Vec<u8>, TranslateError> {
    Err(no())
}
pub fn chat_response_to_messages(_b: &[u8], _m: &str) -> Result<Vec<u8>, TranslateError> {
    Err(no())
}
pub fn error_from_anthropic(body: &[u8]) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    Some((
        v["error"]["type"].as_str()?.to_owned(),
        v["error"]["message"].as_str()?.to_owned(),
    ))
}
pub fn error_from_openai(body: &[u8]) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    Some((
        v["error"]["type"].as_str().unwrap_or("").to_owned(),
        v["error"]["message"].as_str()?.to_owned(),
    ))
}
pub struct MessagesToChatStream;
impl MessagesToChatStream {
    pub fn new(_m: &str, _u: bool) -> Self {
        Self
    }
    pub fn on_event(&mut self, _e: &str, _d: &str, _o: &mut Vec<u8>) {}
    pub fn finish(&mut self, _o: &mut Vec<u8>) {}
}
pub struct ChatToMessagesStream;
impl ChatToMessagesStream {
    pub fn new(_m: &str) -> Self {
        Self
    }
    pub fn on_data(&mut self, _d: &str, _o: &mut Vec<u8>) {}
    pub fn finish(&mut self, _o: &mut Vec<u8>) {}
}
pub fn openai_stream_error(kind: &str, message: &str, out: &mut Vec<u8>) {
    let v = serde_json::json!({"error":{"type":kind,"message":message}});
    out.extend_from_slice(format!("data: {v}\n\ndata: [DONE]\n\n").as_bytes());
}
pub fn anthropic_stream_error(kind: &str, message: &str, out: &mut Vec<u8>) {
    let v = serde_json::json!({"type":"error","error":{"type":kind,"message":message}});
    out.extend_from_slice(format!("event: error\ndata: {v}\n\n").as_bytes());
}
