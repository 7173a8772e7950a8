//! Calls the gateway makes for its own use through its own routing.

use bytes::Bytes;
use tokio::time::Instant;

use super::estimate_tokens;
use crate::error::Error;
use crate::providers::{CallCtx, Op, UpstreamBody};
use crate::router::{self, Call};
use crate::runtime::{Deployment, Runtime};
use crate::wire;

/// A call the gateway makes for its own use (a moderation guardrail's check, the semantic
/// cache's embedding) through its own routing: `{"model": <deployment model>, "input": INPUT}`
/// (`input` is JSON) to `model` for `op`; the complete answer, or why there is none (never
/// carrying the input).
pub(super) async fn side_call(
    rt: &Runtime,
    model: &str,
    op: Op,
    input: &str,
    deadline: Instant,
    ctx: &CallCtx,
) -> Result<Bytes, String> {
    let m = rt
        .model(model)
        .ok_or_else(|| format!("no model named \"{model}\""))?;
    let build = |d: &Deployment, _: &mut crate::translate::Dropped| -> Result<Bytes, Error> {
        let mut b = Vec::with_capacity(input.len() + d.model.len() + 24);
        b.extend_from_slice(b"{\"model\":");
        b.extend_from_slice(wire::json_string(&d.model).as_bytes());
        b.extend_from_slice(b",\"input\":");
        b.extend_from_slice(input.as_bytes());
        b.push(b'}');
        Ok(Bytes::from(b))
    };
    let call = Call {
        op,
        stream: false,
        deadline,
        ctx,
        input_tokens: estimate_tokens(input.as_bytes()),
        max_tokens: 0,
        started: Instant::now(),
        // The gateway's own call: no caller's limits to respect; deployments counted locally.
        may_hedge: true,
        limiter: None,
    };
    let served = router::send(rt, &m, &call, &build)
        .await
        .map_err(|e| e.to_string())?;
    match served.body {
        UpstreamBody::Full(body) => Ok(body),
        UpstreamBody::Stream(_) => Err("the answer was a stream".to_owned()),
    }
}
