//! What a request is: the API its body speaks ([`Format`]), the model call it makes
//! ([`Endpoint`]) and what is asked of a provider ([`Op`]).

/// Which API a body speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenAi,
    Anthropic,
}

/// What is being asked of the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Chat,
    Embeddings,
    /// `/v1/moderations` (OpenAI-type providers; what moderation guardrails call).
    Moderations,
    /// Anthropic's `POST /v1/messages/count_tokens` (Anthropic providers only).
    CountTokens,
    /// The pass-through endpoints (`api::passthrough`): legacy `/v1/completions`.
    Completions,
    /// `/v1/images/generations`.
    Images,
    /// `/v1/audio/speech` (a binary answer).
    Speech,
    /// `/v1/audio/transcriptions` (a multipart request; a JSON or text answer).
    Transcriptions,
    /// `/v1/rerank` (Cohere/Jina shape).
    Rerank,
}

impl Op {
    /// The client endpoint of the operation (in errors and docs).
    pub fn path(self) -> &'static str {
        match self {
            Op::Chat => "/v1/chat/completions",
            Op::Embeddings => "/v1/embeddings",
            Op::Moderations => "/v1/moderations",
            Op::CountTokens => "/v1/messages/count_tokens",
            Op::Completions => "/v1/completions",
            Op::Images => "/v1/images/generations",
            Op::Speech => "/v1/audio/speech",
            Op::Transcriptions => "/v1/audio/transcriptions",
            Op::Rerank => "/v1/rerank",
        }
    }

    /// A short name (span names, metrics).
    pub fn name(self) -> &'static str {
        match self {
            Op::Chat => "chat",
            Op::Embeddings => "embeddings",
            Op::Moderations => "moderations",
            Op::CountTokens => "count_tokens",
            Op::Completions => "completions",
            Op::Images => "images",
            Op::Speech => "speech",
            Op::Transcriptions => "transcriptions",
            Op::Rerank => "rerank",
        }
    }

    /// Whether a whole 200 answer is JSON, checked (and its usage read) by the router: not a
    /// speech's audio, nor a transcription, whose `response_format` may ask for text.
    pub fn answers_json(self) -> bool {
        !matches!(self, Op::Speech | Op::Transcriptions)
    }

    /// Whether a streamed answer is an OpenAI or Anthropic event stream whose terminal event
    /// the router checks (chat and legacy completions; not audio bytes nor transcription events).
    pub fn checks_stream_end(self) -> bool {
        matches!(self, Op::Chat | Op::Completions)
    }
}

/// Which operation a body-carrying model call performs (the direct path, async jobs and their
/// stored records name it by its path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat(Format),
    Embeddings,
    /// `POST /v1/responses`: translated to a chat call and back.
    Responses,
    /// The pass-through endpoints (`/v1/completions`, images, audio, moderations, rerank).
    PassThrough(Op),
}

impl Endpoint {
    /// The model call a path is (`None`: not one of them).
    pub fn from_path(path: &str) -> Option<Self> {
        match path {
            "/v1/chat/completions" => Some(Self::Chat(Format::OpenAi)),
            "/v1/messages" => Some(Self::Chat(Format::Anthropic)),
            "/v1/embeddings" => Some(Self::Embeddings),
            "/v1/responses" => Some(Self::Responses),
            _ => None,
        }
    }

    /// The path of the call.
    pub fn path(self) -> &'static str {
        match self {
            Self::Chat(Format::OpenAi) => "/v1/chat/completions",
            Self::Chat(Format::Anthropic) => "/v1/messages",
            Self::Embeddings => "/v1/embeddings",
            Self::Responses => "/v1/responses",
            Self::PassThrough(op) => op.path(),
        }
    }

    /// The error shape of the endpoint.
    pub fn error_format(self) -> Format {
        match self {
            Self::Chat(Format::Anthropic) => Format::Anthropic,
            _ => Format::OpenAi,
        }
    }
}
