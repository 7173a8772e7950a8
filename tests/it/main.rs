//! Integration tests of the `ai-gateway` binary: every test starts the real binary on a free port
//! with its own configuration and, where it needs one, its own in-process fake upstream.
//! Run with `cargo test --test it`.

// Test code: a failed expectation is a panic, and diagnostics go to stderr.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::print_stdout
)]

mod support;

mod anthropic;
mod auth;
mod azure;
mod cache;
mod chat;
mod cli;
mod connections;
mod embeddings;
mod errors;
mod first_contact;
mod guardrails;
mod import;
mod jobs;
mod limits;
mod observability;
mod reload;
mod resilience;
mod routing;
mod secrets;
mod semantic;
mod shutdown;
mod streaming;
mod webhooks;
