//! ai-gateway: one binary that speaks the OpenAI and Anthropic APIs to every client and routes
//! each request to OpenAI, Azure OpenAI, Anthropic, any OpenAI-compatible server or the built-in
//! mock. `ARCHITECTURE.md` maps the modules; `app` documents the request path.

pub mod accounting;
pub mod api;
pub mod app;
pub mod auth;
pub mod backoff;
pub mod boxed;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod config;
pub mod cors;
pub mod error;
pub mod frames;
pub mod guardrails;
pub mod headers;
pub mod ids;
pub mod import;
pub mod jobs;
pub mod keys;
pub mod limits;
pub mod metrics;
pub mod mock_server;
pub mod pipeline;
pub mod providers;
pub mod record;
pub mod request_log;
pub mod responses;
pub mod router;
pub mod runtime;
pub mod server;
pub mod slots;
pub mod sse;
pub mod state;
pub mod store;
pub mod stream_usage;
pub mod tasks;
pub mod telemetry;
pub mod tokens;
pub mod translate;
pub mod usage;
pub mod webhooks;
pub mod wire;
