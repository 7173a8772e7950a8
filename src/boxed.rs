//! Futures made directly in their box.
//!
//! `Box::pin(fut)` makes the whole future on the stack and copies all of it into the box,
//! although a future that has not started holds only its captures: the direct path's handler
//! (~7 KiB) and an attempt's upstream call (~2.8 KiB) were copied so on every request
//! (docs/benchmarks.md, "What changed what"). [`in_place`] allocates the box first, so the
//! compiler writes the future's first state into it.
//!
//! A wrapper around such a future (a timeout, a span's `Instrumented`) wraps the box, not the
//! future: made around the future, it copied the whole future into itself, and itself into its
//! caller (the direct path's deadline, an attempt's span, `Provider::bounded`'s timeout: ~45 %
//! of `memmove`'s time before `cb56422`).

use std::future::Future;
use std::pin::Pin;

/// The future `make` returns, made in its box.
pub fn in_place<F: Future>(make: impl FnOnce() -> F) -> Pin<Box<F>> {
    let slot = Box::<F>::new_uninit();
    Box::into_pin(Box::write(slot, make()))
}
