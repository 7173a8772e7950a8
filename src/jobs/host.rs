//! What the job machinery needs from the application, as a trait it owns: the running
//! configuration, the process's job slots, the admin-made keys, and a way to run one model call
//! as a synchronous request would. `api::context::AppState` implements it, so the jobs code
//! stands below the handlers and calls the pipeline without importing them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;

use crate::auth::Caller;
use crate::keys::KeyStore;
use crate::runtime::Runtime;
use crate::slots::Slots;
use crate::wire::Endpoint;

/// A boxed call future (the host's pipeline).
pub type CallFuture<'a> = Pin<Box<dyn Future<Output = Response> + Send + 'a>>;

/// The application as the job workers see it.
pub trait Host: Send + Sync + 'static {
    /// The running configuration and deployments (swapped by a reload).
    fn runtime(&self) -> Arc<Runtime>;
    /// How many jobs this process runs at once (`jobs.workers`).
    fn job_slots(&self) -> &Arc<Slots>;
    /// The admin-made keys (a job runs as the key that submitted it).
    fn keys(&self) -> &KeyStore;
    /// Run one model call (the stored body) through the pipeline, as `request_id`, under the
    /// whole-request deadline counted from now; errors come back in the endpoint's shape.
    fn run_call<'a>(
        self: Arc<Self>,
        caller: &'a Caller,
        request_id: &'a str,
        headers: &'a HeaderMap,
        body: Bytes,
        endpoint: Endpoint,
    ) -> CallFuture<'a>;
}

/// The application, shared by the workers.
pub type SharedHost = Arc<dyn Host>;
