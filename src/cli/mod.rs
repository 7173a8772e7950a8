//! Commands that talk to a running gateway (the `ai-gateway` binary's client side).

pub mod keys;
