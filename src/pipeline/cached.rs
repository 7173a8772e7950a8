//! The response cache on the request path: the plan for a request, the look-up (a hit, or the
//! claim of the leader that fetches), storing an answer, and the tap that keeps a streamed one.

use super::*;

/// The cache key and policy for a request, or `None` to bypass the cache.
pub(super) fn cache_plan(
    rt: &Runtime,
    model_cache: Option<bool>,
    headers: &HeaderMap,
    endpoint: crate::wire::Endpoint,
    caller: &Caller,
    body: &[u8],
) -> Option<(cache::Key, Policy)> {
    let cfg = &rt.config.cache;
    let policy = cache::policy(headers, cfg, model_cache, true)?;
    let (key, value) = cache::key::key(endpoint, cache::scope(cfg, caller.id()), body)?;
    if cfg.only_deterministic && !cache::key::is_deterministic(&value) {
        return None;
    }
    Some((key, policy))
}

/// Look the request up; `Ok(response)` on a hit, else the leader (if any) for storing later.
#[expect(
    clippy::too_many_arguments,
    reason = "the request's parts, each used once"
)]
pub(super) async fn cache_lookup(
    cache: &std::sync::Arc<Cache>,
    plan: Option<&(cache::Key, Policy)>,
    format: Format,
    stream: bool,
    include_usage: bool,
    deadline: Instant,
    ctx: &CallCtx,
    guard: Option<&mut guard::Guard>,
) -> Result<Response, Option<Leader>> {
    let Some((key, policy)) = plan else {
        return Err(None);
    };
    match cache
        .lookup(*key, policy, deadline)
        .instrument(crate::telemetry::cache_span())
        .await
    {
        Lookup::Hit(e, layer) => Ok(hit_response(
            &e,
            layer,
            format,
            stream,
            include_usage,
            ctx,
            guard,
        )),
        Lookup::Wait(rx) => match Cache::wait(rx, deadline).await {
            Some(e) => Ok(hit_response(
                &e,
                Layer::L1,
                format,
                stream,
                include_usage,
                ctx,
                guard,
            )),
            None => Err(None),
        },
        Lookup::Miss(leader) => Err(Some(leader)),
    }
}

/// The answer to a cache hit: the stored answer (checked by the output guardrails and with
/// this request's masked values restored, when it has guardrails), replayed as a stream when
/// one was asked for.
pub(super) fn hit_response(
    e: &Entry,
    layer: Layer,
    format: Format,
    stream: bool,
    include_usage: bool,
    ctx: &CallCtx,
    guard: Option<&mut guard::Guard>,
) -> Response {
    let body = match guard {
        Some(g) => g.answer(e.body.clone()),
        None => e.body.clone(),
    };
    let mut resp = if stream {
        let sse = cache::stream::replay(format, &body, include_usage).unwrap_or_default();
        sse_response(Body::from(sse))
    } else {
        json_response(body)
    };
    resp.headers_mut()
        .insert(hn::X_CACHE_LAYER, HeaderValue::from_static(layer.as_str()));
    served_headers(
        &mut resp,
        ctx,
        ServedBy {
            cache: "HIT",
            provider: crate::record::Name::new(&e.provider),
            deployment_model: crate::record::Name::new(&e.deployment_model),
            attempts: HeaderValue::from_static("0"),
        },
    );
    resp
}

/// Store a complete answer and hand it to the waiters. Called only with a plan (a request
/// without one has no leader either): the future is not made for a request the cache bypasses.
pub(super) async fn store(
    cache: &Cache,
    (key, policy): &(cache::Key, Policy),
    leader: Option<Leader>,
    body: &[u8],
    d: &Deployment,
) {
    // A tight copy: the answer's bytes may share a much larger read buffer, which the cache
    // would otherwise keep alive while counting only the answer's length.
    let body = Bytes::copy_from_slice(body);
    let entry = std::sync::Arc::new(Entry::new(body, policy.ttl, &d.provider.name, &d.model));
    cache.finish(*key, entry, policy.write, leader).await;
}

/// What a streamed answer needs to be stored once it ended well.
pub struct CacheTap {
    pub(super) assembler: cache::stream::Assembler,
    pub(super) cache: std::sync::Arc<Cache>,
    pub(super) plan: (cache::Key, Policy),
    pub(super) leader: Option<Leader>,
    pub(super) deployment: std::sync::Arc<Deployment>,
    /// The semantic index entry to add once the answer is stored.
    pub(super) semantic: Option<(
        std::sync::Arc<cache::semantic::Index>,
        cache::semantic::NewEntry,
    )>,
}
