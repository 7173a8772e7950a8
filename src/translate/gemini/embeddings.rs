//! OpenAI embeddings <-> Gemini `batchEmbedContents`.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::super::json::JStr;
use super::super::{Dropped, TranslateError};

#[derive(Deserialize)]
struct EmbReq<'a> {
    #[serde(borrow)]
    input: Option<&'a RawValue>,
    dimensions: Option<u64>,
    #[serde(borrow)]
    encoding_format: Option<Cow<'a, str>>,
    user: Option<IgnoredAny>,
}

#[derive(Serialize)]
struct BatchOut<'b> {
    requests: Vec<EmbedOut<'b>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EmbedOut<'b> {
    model: &'b str,
    content: ContentOut<'b>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_dimensionality: Option<u64>,
}

#[derive(Serialize)]
struct ContentOut<'b> {
    parts: [TextOut<'b>; 1],
}

#[derive(Serialize)]
struct TextOut<'b> {
    text: JStr<'b>,
}

/// Whether an OpenAI embeddings request asks for base64 (`encoding_format: "base64"`); the
/// answer's translation needs to know.
pub fn embeddings_encoding_is_base64(body: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Head<'a> {
        #[serde(borrow)]
        encoding_format: Option<Cow<'a, str>>,
    }
    serde_json::from_slice::<Head>(body)
        .is_ok_and(|h| h.encoding_format.as_deref() == Some("base64"))
}

/// OpenAI embeddings request -> Gemini `batchEmbedContents` body: one request per input text,
/// each naming `models/{model}`. Token-array inputs cannot be sent (Gemini takes text).
pub fn embeddings_request_to_gemini(
    body: &[u8],
    model: &str,
    dropped: &mut Dropped,
) -> Result<Vec<u8>, TranslateError> {
    let req: EmbReq =
        serde_json::from_slice(body).map_err(|e| TranslateError::json("request", &e))?;
    let input = req
        .input
        .ok_or_else(|| TranslateError::Invalid("`input` is required".into()))?;
    let texts: Vec<JStr> = match JStr::from_raw(input) {
        Some(one) => vec![one],
        None => serde_json::from_str(input.get()).map_err(|_| {
            TranslateError::Invalid(
                "`input` must be a string or an array of strings for a Gemini model (token arrays cannot be sent)"
                    .into(),
            )
        })?,
    };
    if texts.is_empty() {
        return Err(TranslateError::Invalid("`input` must not be empty".into()));
    }
    if req.user.is_some() {
        dropped.push("user");
    }
    if req
        .encoding_format
        .as_deref()
        .is_some_and(|f| f != "float" && f != "base64")
    {
        dropped.push("encoding_format");
    }
    let name = format!("models/{model}");
    let out = BatchOut {
        requests: texts
            .into_iter()
            .map(|text| EmbedOut {
                model: &name,
                content: ContentOut {
                    parts: [TextOut { text }],
                },
                output_dimensionality: req.dimensions,
            })
            .collect(),
    };
    serde_json::to_vec(&out)
        .map_err(|e| TranslateError::Invalid(format!("cannot write the translated request: {e}")))
}

#[derive(Deserialize)]
struct BatchResp<'a> {
    #[serde(borrow)]
    embeddings: Option<Vec<EmbeddingIn<'a>>>,
}

#[derive(Deserialize)]
struct EmbeddingIn<'a> {
    #[serde(borrow)]
    values: &'a RawValue,
}

#[derive(Serialize)]
struct ListOut<'b> {
    object: &'static str,
    data: Vec<EmbeddingOut<'b>>,
    model: &'b str,
    usage: EmbUsage,
}

#[derive(Serialize)]
struct EmbeddingOut<'b> {
    object: &'static str,
    index: usize,
    embedding: Vector<'b>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Vector<'b> {
    Floats(&'b RawValue),
    Base64(String),
}

#[derive(Serialize)]
struct EmbUsage {
    prompt_tokens: u64,
    total_tokens: u64,
}

/// Gemini `batchEmbedContents` answer -> OpenAI embeddings list. `base64`: the request asked
/// for `encoding_format: "base64"` (little-endian `f32`s, as OpenAI sends them); otherwise the
/// float arrays are copied as they came. Gemini reports no usage, so `prompt_tokens` is the
/// caller's own count of the input.
pub fn gemini_embeddings_to_openai(
    body: &[u8],
    model: &str,
    base64: bool,
    prompt_tokens: u64,
) -> Result<Vec<u8>, TranslateError> {
    let resp: BatchResp =
        serde_json::from_slice(body).map_err(|e| TranslateError::json("Gemini embeddings", &e))?;
    let embeddings = resp.embeddings.ok_or_else(|| {
        TranslateError::Invalid("Gemini embeddings answer has no `embeddings`".into())
    })?;
    let mut data = Vec::with_capacity(embeddings.len());
    for (index, e) in embeddings.iter().enumerate() {
        let embedding = if base64 {
            let floats: Vec<f32> = serde_json::from_str(e.values.get())
                .map_err(|e| TranslateError::json("Gemini embedding values", &e))?;
            let mut bytes = Vec::with_capacity(floats.len() * 4);
            for f in floats {
                bytes.extend_from_slice(&f.to_le_bytes());
            }
            Vector::Base64(STANDARD.encode(bytes))
        } else {
            Vector::Floats(e.values)
        };
        data.push(EmbeddingOut {
            object: "embedding",
            index,
            embedding,
        });
    }
    let out = ListOut {
        object: "list",
        data,
        model,
        usage: EmbUsage {
            prompt_tokens,
            total_tokens: prompt_tokens,
        },
    };
    serde_json::to_vec(&out)
        .map_err(|e| TranslateError::Invalid(format!("cannot write the translated answer: {e}")))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn requests() {
        let mut d = Dropped::default();
        let out = embeddings_request_to_gemini(
            br#"{"model":"emb","input":["The food was delicious","and the wine\n\"superb\""],"dimensions":256,"user":"u1"}"#,
            "gemini-embedding-001",
            &mut d,
        )
        .expect("translates");
        let v: Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(
            v,
            json!({"requests": [
                {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "The food was delicious"}]}, "outputDimensionality": 256},
                {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "and the wine\n\"superb\""}]}, "outputDimensionality": 256}
            ]})
        );
        assert_eq!(d.join(","), "user");
        let out = embeddings_request_to_gemini(br#"{"input":"one"}"#, "m", &mut d).expect("ok");
        let v: Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["requests"][0]["content"]["parts"][0]["text"], "one");
        for bad in [
            &br#"{"input":[1,2,3]}"#[..],
            br#"{"input":[[1,2]]}"#,
            br#"{"input":[]}"#,
            br#"{"model":"x"}"#,
            b"nope",
        ] {
            assert!(embeddings_request_to_gemini(bad, "m", &mut d).is_err());
        }
    }

    #[test]
    fn answers_float_and_base64() {
        let body =
            br#"{"embeddings":[{"values":[0.013168523, -0.008711934, 0.5]},{"values":[1.0,2.0]}]}"#;
        let out = gemini_embeddings_to_openai(body, "emb", false, 9).expect("translates");
        let v: Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(
            v,
            json!({"object": "list", "data": [
                {"object": "embedding", "index": 0, "embedding": [0.013168523, -0.008711934, 0.5]},
                {"object": "embedding", "index": 1, "embedding": [1.0, 2.0]}
            ], "model": "emb", "usage": {"prompt_tokens": 9, "total_tokens": 9}})
        );
        let out = gemini_embeddings_to_openai(body, "emb", true, 9).expect("translates");
        let v: Value = serde_json::from_slice(&out).expect("json");
        let b = STANDARD
            .decode(v["data"][1]["embedding"].as_str().expect("a string"))
            .expect("base64");
        assert_eq!(b, [1.0f32.to_le_bytes(), 2.0f32.to_le_bytes()].concat());
        assert!(embeddings_encoding_is_base64(
            br#"{"encoding_format":"base64"}"#
        ));
        assert!(!embeddings_encoding_is_base64(
            br#"{"encoding_format":"float"}"#
        ));
        assert!(gemini_embeddings_to_openai(b"{}", "emb", false, 0).is_err());
    }
}
