//! Integration tests of the `ai-gateway` binary: every test starts the real binary on a free port
//! with its own configuration and, where it needs one, its own in-process fake upstream.
//! Run with `cargo test --test it`.

// Test code: a failed expectation is a panic, and diagnostics go to stderr.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::disallowed_methods,
    reason = "test code: a failed expectation is a panic, diagnostics go to stderr"
)]

mod support;

mod anthropic;
mod architecture;
mod auth;
mod azure;
mod batches;
mod batches_nats;
mod batches_window;
mod bedrock;
mod cache;
mod capacity;
mod chat;
mod cli;
mod connections;
mod console;
mod embeddings;
mod errors;
mod first_contact;
mod gemini;
mod guardrails;
mod hedge;
mod http1;
mod http2;
mod import;
mod jobs;
mod keys_cli;
mod limits;
mod observability;
mod passthrough;
mod presets;
mod prices;
mod reload;
mod request_log;
mod resilience;
mod responses;
mod routing;
mod scale_nats;
mod scale_redis;
mod secrets;
mod semantic;
mod shadow;
mod shutdown;
mod streaming;
mod surface;
mod usage_report;
mod webhooks;
