//! hyper and tokio alone, as the gateway uses them, with nothing of the gateway on top:
//!
//! - `hyper-floor PORT proxy UPSTREAM_PORT`: an HTTP/1.1 server that sends each request's body to
//!   `127.0.0.1:UPSTREAM_PORT` (same path, hyper-util's pooled client) and answers with the
//!   upstream's answer, read whole: the least CPU a proxied request can cost on this stack.
//! - `hyper-floor PORT auto|http1 sse`: answers every request with 21 SSE events 500 ms apart,
//!   then `data: [DONE]` (a slow stream without an upstream), served by hyper-util's auto builder
//!   (HTTP/1 and HTTP/2, as the gateway) or by hyper's HTTP/1 server: the least memory a held
//!   stream can cost on this stack.
//!
//! One thread (tokio's current-thread runtime), mimalloc, as the gateway pinned to one CPU.
use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

async fn proxy(
    client: Client,
    upstream: u16,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut up = Request::post(format!("http://127.0.0.1:{upstream}{}", parts.uri.path()));
    for name in ["content-type", "authorization"] {
        if let Some(v) = parts.headers.get(name) {
            up = up.header(name, v);
        }
    }
    let Ok(up) = up.body(Full::new(body)) else {
        return Ok(Response::builder()
            .status(400)
            .body(Full::default())
            .unwrap_or_default());
    };
    match client.request(up).await {
        Ok(resp) => {
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok(Response::from_parts(parts, Full::new(body)))
        }
        Err(_) => Ok(Response::builder()
            .status(502)
            .body(Full::default())
            .unwrap_or_default()),
    }
}

async fn sse(
    req: Request<Incoming>,
) -> Result<
    Response<StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>>>>,
    Infallible,
> {
    let _ = req.into_body().collect().await;
    let events = futures_util::stream::unfold(0u32, |i| async move {
        if i > 21 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let event = if i == 21 {
            Bytes::from_static(b"data: [DONE]\n\n")
        } else {
            Bytes::from(format!(
                "data: {{\"choices\":[{{\"delta\":{{\"content\":\"w{i} \"}}}}]}}\n\n"
            ))
        };
        Some((Ok(Frame::data(event)), i + 1))
    });
    let mut resp = Response::new(StreamBody::new(events));
    resp.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("text/event-stream"),
    );
    Ok(resp)
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = || {
        std::io::Error::other("usage: hyper-floor PORT proxy UPSTREAM_PORT | PORT auto|http1 sse")
    };
    let port: u16 = args.get(1).and_then(|p| p.parse().ok()).ok_or_else(usage)?;
    let mode = args.get(2).cloned().ok_or_else(usage)?;
    let upstream: Option<u16> = args.get(3).and_then(|p| p.parse().ok());
    if mode == "proxy" && upstream.is_none()
        || mode != "proxy" && args.get(3).map(String::as_str) != Some("sse")
    {
        return Err(usage());
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
            let client: Client =
                hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
            loop {
                let (tcp, _) = listener.accept().await?;
                let _ = tcp.set_nodelay(true);
                let io = TokioIo::new(tcp);
                let (mode, client) = (mode.clone(), client.clone());
                tokio::spawn(async move {
                    match (mode.as_str(), upstream) {
                        ("proxy", Some(up)) => {
                            let svc = hyper::service::service_fn(move |req| {
                                proxy(client.clone(), up, req)
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(io, svc)
                                .await;
                        }
                        ("auto", _) => {
                            let svc = hyper::service::service_fn(sse);
                            let _ =
                                hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                                    .serve_connection(io, svc)
                                    .await;
                        }
                        _ => {
                            let svc = hyper::service::service_fn(sse);
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(io, svc)
                                .await;
                        }
                    }
                });
            }
        })
}
