//! The application: THE layer stack and the route table (serving is `server`, the process's
//! life [`lifecycle`]; the shared state is `api::context`).
//!
//! Request path, outermost first:
//! 1. `CatchPanic`: a panic becomes a 500 in the API's error shape; the process keeps serving.
//! 2. `request_context`: keeps the caller's `x-request-id` (≤128 visible ASCII) or makes one,
//!    echoes it on the answer, writes one access-log line per request.
//! 3. ops routes (`/health`, `/ready`) — no auth.
//! 4. `/admin/*`: master key (404 for the whole tree when none is configured).
//! 5. `/v1/*`: `authenticate` (401) puts the `Caller` in the request; handlers read the body
//!    (413 over `server.max_body_size`), parse it (400), and run `pipeline` under the whole-request
//!    deadline (504).
//!
//! [`HttpService`] runs the three model calls (`POST /v1/chat/completions`, `/v1/messages`,
//! `/v1/embeddings`) through the same steps as plain calls, and hands every other request to the
//! router.

pub mod lifecycle;

use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use std::sync::Arc;
use tokio::time::Instant;

use crate::api;
use crate::api::context::{AppState, RequestId, SharedState, error_format_of};
use crate::api::error::Render;
use crate::auth::Caller;
use crate::error::Error;
use crate::wire::Format;

fn valid_request_id(v: &HeaderValue) -> Option<&str> {
    let s = v.to_str().ok()?;
    (!s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic())).then_some(s)
}

fn new_request_id() -> Arc<str> {
    crate::ids::random_shared_id("req_")
}

/// Records the request's metrics and access-log line when its body ends (streams included),
/// or when the client goes away.
///
/// It holds what the line needs as cheap clones (the request's URI, the caller's key entry, the
/// usage cell with the labels the pipeline set) and turns them into text only when the line is
/// written.
struct Finish {
    started: Instant,
    id: Arc<str>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    endpoint: &'static str,
    status: u16,
    /// The caller (for its key name, never the key).
    caller: Option<crate::auth::Caller>,
    /// Time to the first body frame of a stream.
    ttft: Option<Duration>,
    stream: bool,
    usage: Arc<crate::record::RequestRecord>,
    span: tracing::Span,
}

impl Finish {
    fn on_frame(&mut self) {
        if self.stream && self.ttft.is_none() {
            self.ttft = Some(self.started.elapsed());
        }
    }
}

fn header_str(v: Option<&HeaderValue>) -> &str {
    v.and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn name_label(n: Option<&crate::record::Name>) -> &str {
    n.and_then(|n| n.label.as_deref()).unwrap_or("")
}

impl Drop for Finish {
    fn drop(&mut self) {
        let took = self.started.elapsed();
        crate::metrics::in_flight(false);
        let tokens = self.usage.tokens();
        let labels = self.usage.take_labels();
        let served = labels.served.as_ref();
        let provider = name_label(served.and_then(|s| s.provider.as_ref()));
        let deployment_model = name_label(served.and_then(|s| s.deployment_model.as_ref()));
        let attempts = header_str(served.map(|s| &s.attempts));
        let cache = served.map_or("", |s| s.cache);
        let key = self.caller.as_ref().map_or("", |c| c.name());
        let model = labels.model.as_deref().unwrap_or("");
        crate::telemetry::server_end(
            &self.span,
            &crate::telemetry::ServerEnd {
                status: self.status,
                key_name: key,
                provider,
                deployment_model,
                attempts,
                cache,
                usage: tokens,
            },
        );
        if self.endpoint != "/metrics" && self.endpoint != "/health" && self.endpoint != "/ready" {
            crate::metrics::request(self.endpoint, model, provider, self.status, took);
        }
        tracing::info!(
            target: "access",
            request_id = %self.id,
            method = %self.method,
            path = %self.uri.path(),
            status = self.status,
            model = %model,
            key = %key,
            provider = %provider,
            deployment_model = %deployment_model,
            attempts = %attempts,
            cache = %cache,
            input_tokens = tokens.map(|t| t.0),
            output_tokens = tokens.map(|t| t.1),
            cost_usd = self.usage.cost(),
            latency_ms = took.as_secs_f64() * 1000.0,
            ttft_ms = self.ttft.map(|t| t.as_secs_f64() * 1000.0),
            trace_id = crate::telemetry::trace_id(&self.span),
            "request"
        );
    }
}

/// Request headers larger than this in total are refused with 431.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

async fn request_context(req: Request, next: Next) -> Response {
    in_context(req, |mut req, id, usage, _started| {
        req.extensions_mut().insert(RequestId(id));
        req.extensions_mut().insert(usage);
        async move {
            let mut resp = next.run(req).await;
            // Put there by `authenticate`, for the access log's key name.
            let caller = resp.extensions_mut().remove::<crate::auth::Caller>();
            (resp, caller)
        }
    })
    .await
}

/// The request context around `next` (given the request, its id and its usage cell; giving the
/// answer and the caller it was served to): the header size check, the request id, the server
/// span, and the [`Finish`] that writes the metrics and the access-log line when the answer's
/// body ends.
async fn in_context<F, Fut>(req: Request, next: F) -> Response
where
    F: FnOnce(Request, Arc<str>, Arc<crate::record::RequestRecord>, Instant) -> Fut,
    Fut: std::future::Future<Output = (Response, Option<crate::auth::Caller>)>,
{
    // One pass: the size, and the request id (a look-up would hash the name).
    let mut header_bytes = 0;
    let mut given_id = None;
    for (k, v) in req.headers() {
        header_bytes += k.as_str().len() + v.len() + 4;
        if given_id.is_none() && *k == crate::headers::X_REQUEST_ID {
            given_id = Some(v);
        }
    }
    if header_bytes > MAX_HEADER_BYTES {
        let mut r = Error::invalid(format!(
            "the request headers are {header_bytes} bytes; at most {MAX_HEADER_BYTES} are accepted"
        ))
        .into_response_for(error_format_of(req.uri().path()));
        *r.status_mut() = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
        return r;
    }
    let started = Instant::now();
    crate::metrics::in_flight(true);
    // The answer's header: the client's own value shared, or the id made here inline.
    let (id, id_value) = match given_id.and_then(|v| valid_request_id(v).map(|s| (v, s))) {
        Some((v, s)) => (
            Arc::from(s),
            Some(crate::headers::OwnValue::from(v.clone())),
        ),
        None => {
            let id = new_request_id();
            let value = crate::headers::OwnValue::text(id.as_bytes());
            (id, value)
        }
    };
    let usage = Arc::new(crate::record::RequestRecord::new());
    let method = req.method().clone();
    let uri = req.uri().clone();
    let span = crate::telemetry::server_span(&method, uri.path(), req.headers(), &id);
    let (mut resp, caller) = tracing::Instrument::instrument(
        next(req, id.clone(), usage.clone(), started),
        span.clone(),
    )
    .await;
    if let Some(v) = id_value {
        let own = crate::headers::OwnHeaders::on(&mut resp);
        // Anthropic's clients read their own header name.
        if uri.path().starts_with("/v1/messages") {
            own.set(crate::headers::REQUEST_ID, v.clone());
        }
        own.set(crate::headers::X_REQUEST_ID, v);
    }
    let finish = Finish {
        started,
        caller,
        ttft: None,
        stream: resp
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream")),
        usage,
        span,
        endpoint: crate::metrics::endpoint_label(uri.path()),
        status: resp.status().as_u16(),
        id,
        method,
        uri,
    };
    resp.map(|inner| axum::body::Body::new(Finished { inner, finish }))
}

/// An answer's body that keeps its [`Finish`] until the body ends or is dropped. Its size is
/// the inner body's, so a whole answer goes out with `content-length` (http-body-util's
/// `MapFrame` loses the size hint, and hyper then frames the answer as chunked).
struct Finished {
    inner: axum::body::Body,
    finish: Finish,
}

impl hyper::body::Body for Finished {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, axum::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(_))) = &polled {
            self.finish.on_frame();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Who is calling: the configured or admin-created key the request presents (or nobody when
/// the gateway has no keys), or the 401 to answer.
async fn caller_of(state: &AppState, headers: &axum::http::HeaderMap) -> Result<Caller, Error> {
    let identified = state.runtime.load().auth.identify(headers)?;
    state.keys.caller(identified).await
}

async fn authenticate(State(state): State<SharedState>, mut req: Request, next: Next) -> Response {
    match caller_of(&state, req.headers()).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller.clone());
            let mut resp = next.run(req).await;
            // For the access log's key name.
            resp.extensions_mut().insert(caller);
            resp
        }
        Err(e) => e.into_response_for(error_format_of(req.uri().path())),
    }
}

async fn require_master(State(state): State<SharedState>, req: Request, next: Next) -> Response {
    let rt = state.runtime.load();
    if !rt.auth.has_master_key() {
        return Error::NotFound.into_response_for(Format::OpenAi);
    }
    if !rt.auth.is_master(req.headers()) {
        drop(rt);
        // The console's session cookie stands for the master key (changes: same origin and
        // the sign-in's CSRF token).
        #[cfg(feature = "console")]
        match crate::api::console::admin_access(&state, req.method(), req.uri(), req.headers())
            .await
        {
            Some(Ok(())) => return next.run(req).await,
            Some(Err(refused)) => return refused,
            None => {}
        }
        return Error::Unauthenticated("the admin API needs the master key")
            .into_response_for(Format::OpenAi);
    }
    drop(rt);
    next.run(req).await
}

fn panic_response(_err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    Error::Internal("panic".into()).into_response_for(Format::OpenAi)
}

async fn fallback(req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let mut r = Error::invalid(format!("no endpoint {} {path}", req.method()))
        .into_response_for(error_format_of(&path));
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

/// The whole HTTP stack.
pub fn router(state: SharedState) -> Router {
    let v1 = api::routes().route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    let admin = Router::new()
        .route("/admin/reload", post(api::admin::reload))
        .route("/admin/deployments", get(api::admin::deployments))
        // Batches of every key, for the console (issue 22).
        .route("/admin/batches", get(api::batches::admin_list))
        .route(
            "/admin/keys",
            post(api::admin::create_key).get(api::admin::list_keys),
        )
        .route(
            "/admin/keys/{id}",
            get(api::admin::get_key)
                .patch(api::admin::update_key)
                .delete(api::admin::revoke_key),
        )
        // The request log, usage report and overview numbers (request_log).
        .route("/admin/requests", get(api::admin_log::list))
        .route("/admin/requests/{id}", get(api::admin_log::get))
        .route("/admin/usage", get(api::admin_log::usage))
        .route("/admin/stats", get(api::admin_log::stats))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_master,
        ));
    let app = Router::new()
        .route("/", get(api::home::page))
        .route("/health", get(api::ops::health))
        .route("/ready", get(api::ops::ready))
        .route("/metrics", get(api::ops::metrics))
        .merge(v1)
        .merge(admin);
    // The web console (`/ui/`): its page, files and sign-in.
    #[cfg(feature = "console")]
    let app = app.merge(crate::api::console::routes());
    app.fallback(fallback)
        .with_state(state)
        .layer(middleware::from_fn(request_context))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
}

/// The HTTP service of `ai-gateway serve`. The model calls (`POST /v1/chat/completions`,
/// `/v1/messages`, `/v1/embeddings`) go straight through the same steps as the router's layers
/// (panic guard, request context, authentication, handler) as one future; everything else goes
/// to [`router`]. On the calls this saves the router's per-request work: its boxed layer
/// futures, the service clones of `from_fn` and the extension maps that carry the request id,
/// the usage cell and the caller from layer to handler (measured in docs/benchmarks.md,
/// "What changed what").
#[derive(Clone)]
pub struct HttpService {
    state: SharedState,
    router: Router,
}

impl HttpService {
    pub fn new(state: SharedState) -> Self {
        Self {
            router: router(state.clone()),
            state,
        }
    }
}

/// The model call a request is, if it is one `HttpService` serves directly.
fn direct_endpoint(req: &Request) -> Option<crate::wire::Endpoint> {
    if req.method() != axum::http::Method::POST {
        return None;
    }
    crate::wire::Endpoint::from_path(req.uri().path())
}

type DirectFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Response, std::convert::Infallible>> + Send>,
>;

impl tower::Service<Request> for HttpService {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = futures_util::future::Either<
        DirectFuture,
        axum::routing::future::RouteFuture<std::convert::Infallible>,
    >;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // Browsers only: a request without `Origin` pays one header look-up.
        if req.headers().contains_key(axum::http::header::ORIGIN)
            && let Some(allow) = crate::cors::allowed(
                &self.state.runtime.load().config.server.cors_allowed_origins,
                req.headers(),
            )
        {
            return futures_util::future::Either::Left(crate::cors::serve(allow, req, |r| {
                self.serve(r)
            }));
        }
        self.serve(req)
    }
}

impl HttpService {
    /// The answer to a request, CORS aside.
    fn serve(&mut self, req: Request) -> <Self as tower::Service<Request>>::Future {
        if self.state.connections.is_draining() && refused_while_draining(&req) {
            return futures_util::future::Either::Left(Box::pin(draining(req)));
        }
        let Some(endpoint) = direct_endpoint(&req) else {
            return futures_util::future::Either::Right(tower::Service::call(
                &mut self.router,
                req,
            ));
        };
        futures_util::future::Either::Left(crate::boxed::in_place(|| {
            direct(self.state.clone(), req, endpoint)
        }))
    }
}

/// Whether a request is refused while the gateway drains: new model calls and async submissions
/// (everything else, such as `/ready`, job look-ups and the admin API, is served).
fn refused_while_draining(req: &Request) -> bool {
    req.method() == axum::http::Method::POST
        && (direct_endpoint(req).is_some()
            || req.uri().path().starts_with("/v1/async/")
            || api::passthrough::PATHS.contains(&req.uri().path()))
}

/// The answer to a refused request while draining: 503 with `retry-after`, in the API's shape.
async fn draining(req: Request) -> Result<Response, std::convert::Infallible> {
    Ok(in_context(req, |req, _, _, _| async move {
        let e = Error::Unavailable {
            message: "the gateway is shutting down; retry the request (on another instance)"
                .to_owned(),
            retry_after: Duration::from_secs(1),
        };
        (e.into_response_for(error_format_of(req.uri().path())), None)
    })
    .await)
}

/// A model call on the direct path: the router's layers, in the same order, as plain calls.
async fn direct(
    state: SharedState,
    req: Request,
    endpoint: crate::wire::Endpoint,
) -> Result<Response, std::convert::Infallible> {
    use futures_util::FutureExt;
    let served = std::panic::AssertUnwindSafe(in_context(req, move |req, id, usage, started| {
        // Boxed apart: the handler's future is large, and the context's own stays small (moved
        // whole, it was copied several times per request). Made in its box (`boxed::in_place`).
        crate::boxed::in_place(move || async move {
            match caller_of(&state, req.headers()).await {
                Ok(caller) => {
                    let resp = api::serve_request(
                        state,
                        caller.clone(),
                        id,
                        Some(usage),
                        req,
                        endpoint,
                        started,
                    )
                    .await;
                    (resp, Some(caller))
                }
                Err(e) => (e.into_response_for(endpoint.error_format()), None),
            }
        })
    }))
    .catch_unwind()
    .await;
    Ok(served.unwrap_or_else(panic_response))
}

/// The HTTP stack of `ai-gateway worker`: only `/health`, `/ready` and `/metrics`.
pub fn worker_router(state: SharedState) -> Router {
    Router::new()
        .route("/health", get(api::ops::health))
        .route("/ready", get(api::ops::ready))
        .route("/metrics", get(api::ops::metrics))
        .fallback(fallback)
        .with_state(state)
        .layer(middleware::from_fn(request_context))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
}
