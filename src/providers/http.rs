//! The HTTP client of one provider: hyper's HTTP/1.1 connections in our own pool for a plain
//! `http://` base URL (HTTP/2 without TLS, `h2c`, when the provider says `http2: true`),
//! hyper-util's pooled client for `https://`, or reqwest when the environment routes the
//! provider through a proxy.
//!
//! Every request of the gateway goes through here, so the clients have nothing on top: the
//! upstream URI is parsed once per deployment, the body is one `Bytes` (no copy), the headers
//! are the provider's map plus the request id. Plain HTTP skips even hyper-util's pool
//! (`pool`). hyper-util stays for `https://`: TLS, and HTTP/2 by ALPN, which multiplexes
//! streams on a few connections. (reqwest, measured on the bench, parsed the URL again on every
//! request for its redirect layer and went through its retry and redirect tower layers; see
//! docs/benchmarks.md, "What changed what".) A proxy (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, with
//! `NO_PROXY`; upper or lower case) needs CONNECT tunnels and proxy authentication, which
//! reqwest already does well, so a provider whose base URL the environment sends through a
//! proxy keeps reqwest.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName};
use http::{Request, Response, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::headers::OwnValue;

use super::h2c::H2c;
use super::pool::{Pool, PooledBody};
use crate::error::error_chain;

/// The body of an upstream answer, from any of the clients.
pub type UpstreamBody = Either<PooledBody, Either<Incoming, reqwest::Body>>;

type Direct = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// One provider's pooled client (cheap to clone: the pool is shared).
#[derive(Clone)]
pub enum Http {
    /// Plain `http://`: hyper's HTTP/1.1 connections in a pool of our own (`pool`).
    Plain(Arc<Pool>),
    /// Plain `http://` with `http2: true`: HTTP/2 with prior knowledge (`h2c`).
    H2c(Arc<H2c>),
    /// `https://`: hyper-util's pooled client (TLS, HTTP/2 when the server offers it).
    Direct(Box<Direct>),
    Proxied(reqwest::Client),
}

/// Why a request got no answer.
#[derive(Debug)]
pub struct SendError {
    /// The connection could not be made (nothing was sent).
    pub connect: bool,
    pub message: String,
}

/// The headers of one upstream request: the provider's, shared by all its requests, and the
/// request's own (its id, trace context, a signature), which take the place of a provider
/// header of the same name. Plain HTTP/1.1 writes both lists as they are; the other clients get
/// one map ([`Outgoing::into_map`]). Cloning the provider's map and inserting the request id into
/// it cost ~1,000 instructions of every request (docs/benchmarks.md, "What changed what").
pub struct Outgoing<'a> {
    provider: &'a HeaderMap,
    own: Vec<(HeaderName, OwnValue)>,
}

impl<'a> Outgoing<'a> {
    pub fn new(provider: &'a HeaderMap) -> Self {
        Self {
            provider,
            own: Vec::new(),
        }
    }

    /// Set `name` for this request (in place of the provider's, or of one set before).
    pub fn insert(&mut self, name: HeaderName, value: impl Into<OwnValue>) {
        let value = value.into();
        match self.own.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.own.push((name, value)),
        }
    }

    /// Every header sent, the request's own last.
    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &[u8])> {
        self.provider
            .iter()
            .filter(|(name, _)| !self.own.iter().any(|(n, _)| n == *name))
            .map(|(n, v)| (n, v.as_bytes()))
            .chain(self.own.iter().map(|(n, v)| (n, v.as_bytes())))
    }

    /// The headers as one map.
    pub fn into_map(self) -> HeaderMap {
        let mut map = self.provider.clone();
        for (name, value) in self.own {
            map.insert(name, value.into_header_value());
        }
        map
    }
}

const IDLE: Duration = Duration::from_secs(90);
const MAX_IDLE_PER_HOST: usize = 1024;

impl Http {
    /// The client for a provider at `base_url`: proxied when the environment says so for it.
    /// `http2`: a plain `http://` base URL is spoken to in HTTP/2 without TLS (`h2c`); an
    /// `https://` one uses HTTP/2 whenever the server offers it, either way.
    pub fn new(connect_timeout: Duration, base_url: &str, http2: bool) -> Result<Self, String> {
        if proxied(base_url) {
            return reqwest::Client::builder()
                .connect_timeout(connect_timeout)
                .tcp_nodelay(true)
                .pool_idle_timeout(IDLE)
                .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map(Http::Proxied)
                .map_err(|e| format!("cannot build an HTTP client: {e}"));
        }
        if let Ok(uri) = base_url.parse::<Uri>() {
            if http2 && let Some(h2) = H2c::for_url(&uri, connect_timeout) {
                return Ok(Http::H2c(h2));
            }
            if let Some(pool) = Pool::for_url(&uri, connect_timeout, IDLE, MAX_IDLE_PER_HOST) {
                return Ok(Http::Plain(pool));
            }
        }
        use rustls_platform_verifier::BuilderVerifierExt;
        let tls = rustls::ClientConfig::builder()
            .with_platform_verifier()
            .map_err(|e| format!("cannot load the system's TLS roots: {e}"))?
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE)
            .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
            .pool_timer(TokioTimer::new())
            .build(https);
        Ok(Http::Direct(Box::new(client)))
    }

    /// Whether requests go through a proxy (for the start-up log).
    pub fn is_proxied(&self) -> bool {
        matches!(self, Http::Proxied(_))
    }

    /// POST `body` to `uri` with `headers`; the answer's head, its body still to read.
    pub async fn post(
        &self,
        uri: &Uri,
        headers: Outgoing<'_>,
        body: Bytes,
    ) -> Result<Response<UpstreamBody>, SendError> {
        match self {
            Http::Plain(pool) => Ok(pool.post(uri, &headers, body).await?.map(Either::Left)),
            Http::H2c(h2) => Ok(h2
                .post(uri, headers.into_map(), body)
                .await?
                .map(Either::Left)),
            Http::Direct(client) => {
                let mut req = Request::new(Full::new(body));
                *req.method_mut() = http::Method::POST;
                *req.uri_mut() = uri.clone();
                *req.headers_mut() = headers.into_map();
                match client.request(req).await {
                    Ok(resp) => Ok(resp.map(|b| Either::Right(Either::Left(b)))),
                    Err(e) => Err(SendError {
                        connect: e.is_connect(),
                        message: error_chain(&e),
                    }),
                }
            }
            Http::Proxied(client) => {
                let sent = client
                    .post(uri.to_string())
                    .headers(headers.into_map())
                    .body(body)
                    .send()
                    .await;
                match sent {
                    Ok(resp) => Ok(Response::from(resp).map(|b| Either::Right(Either::Right(b)))),
                    Err(e) => Err(SendError {
                        connect: e.is_connect(),
                        message: error_chain(&e),
                    }),
                }
            }
        }
    }
}

/// Whether the environment's proxy settings send requests for `base_url` through a proxy.
fn proxied(base_url: &str) -> bool {
    let Ok(uri) = base_url.parse::<Uri>() else {
        return false;
    };
    hyper_util::client::proxy::matcher::Matcher::from_env()
        .intercept(&uri)
        .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn the_requests_own_headers_take_the_place_of_the_providers() {
        let mut provider = HeaderMap::new();
        provider.insert("authorization", HeaderValue::from_static("Bearer p"));
        provider.insert("x-request-id", HeaderValue::from_static("configured"));
        let mut out = Outgoing::new(&provider);
        out.insert(
            HeaderName::from_static("x-request-id"),
            HeaderValue::from_static("a"),
        );
        out.insert(
            HeaderName::from_static("x-request-id"),
            HeaderValue::from_static("req_1"),
        );
        out.insert(
            HeaderName::from_static("traceparent"),
            HeaderValue::from_static("00-t"),
        );
        let sent: Vec<(String, String)> = out
            .iter()
            .map(|(n, v)| (n.to_string(), String::from_utf8(v.to_vec()).unwrap()))
            .collect();
        let pair = |n: &str, v: &str| (n.to_owned(), v.to_owned());
        assert_eq!(
            sent,
            [
                pair("authorization", "Bearer p"),
                pair("x-request-id", "req_1"),
                pair("traceparent", "00-t"),
            ]
        );
        let map = out.into_map();
        assert_eq!(map.len(), 3);
        assert_eq!(map["x-request-id"], "req_1");
        assert_eq!(map["authorization"], "Bearer p");
    }
}
