//! Webhooks: Standard Webhooks signing, one delivery attempt, and the SSRF guard.
//!
//! - Signing: `webhook-id` (the job id, the same on every attempt), `webhook-timestamp` (unix
//!   seconds of this attempt), `webhook-signature: v1,BASE64(HMAC-SHA256(key, "{id}.{ts}.{body}"))`
//!   where the key is the base64 after `whsec_` in `jobs.webhook.secret`.
//! - Delivery: a 2xx is delivered; anything else, a timeout or a refused address is a failed
//!   attempt; 410 Gone stops retrying; `retry-after` on 429/503 is honoured as the least delay.
//!   Redirects are never followed (a 3xx is a failure) and no proxy from the environment is used.
//! - SSRF guard (unless `jobs.webhook.allow_private_networks`): only `http`/`https`; literal
//!   addresses are checked before sending, and names are resolved by our own resolver, which
//!   drops every address that is loopback, private, link-local, CGNAT, metadata, multicast,
//!   unspecified or otherwise not globally routable (IPv4-mapped and NAT64 IPv6 checked as the
//!   IPv4 inside). The connection can only go to an address the resolver returned, so a name that
//!   re-binds to an internal address after submission is refused at connect time.
//!   Submission runs the same check (400 on refusal).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{KeyInit, Mac};
use reqwest::Url;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Marker in errors of refused addresses (to count them as `refused`).
const REFUSED: &str = "webhook address refused";

/// Decode `whsec_BASE64` into the HMAC key.
pub fn decode_secret(s: &str) -> Result<Vec<u8>, String> {
    let b64 = s
        .strip_prefix("whsec_")
        .ok_or_else(|| "jobs.webhook.secret must start with \"whsec_\"".to_owned())?;
    match B64.decode(b64.trim()) {
        Ok(k) if !k.is_empty() => Ok(k),
        _ => Err("jobs.webhook.secret: the part after \"whsec_\" is not valid base64".to_owned()),
    }
}

pub fn encode_secret(key: &[u8]) -> String {
    format!("whsec_{}", B64.encode(key))
}

/// A new random 32-byte key.
pub fn generate_secret() -> Vec<u8> {
    (0..32).map(|_| rand::random::<u8>()).collect()
}

/// `v1,BASE64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))`.
pub fn sign(key: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

/// Whether an address may receive webhooks when private networks are not allowed.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let s = v6.segments();
            // NAT64 (64:ff9b::/96) carries an IPv4 address in its last 32 bits.
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6].iter().all(|x| *x == 0) {
                let o = v6.octets();
                return is_public_v4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
            }
            // 6to4 (2002::/16) embeds an IPv4 address in bits 16..48.
            if s[0] == 0x2002 {
                let o = v6.octets();
                return is_public_v4(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
            }
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7 (AWS metadata fd00:ec2::254)
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x0100 && s[1..4].iter().all(|x| *x == 0)) // discard-only 100::/64
                || s[..6].iter().all(|x| *x == 0)) // IPv4-compatible ::a.b.c.d
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(o[0] == 0 // "this network"
        || o[0] == 10
        || o[0] == 127
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // CGNAT 100.64/10 (Alibaba metadata 100.100.100.200)
        || (o[0] == 169 && o[1] == 254) // link-local, cloud metadata 169.254.169.254
        || (o[0] == 172 && (o[1] & 0xf0) == 16)
        || (o[0] == 192 && o[1] == 168)
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 192 && o[1] == 0 && o[2] == 2) // documentation
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18/15
        || (o[0] == 198 && o[1] == 51 && o[2] == 100)
        || (o[0] == 203 && o[1] == 0 && o[2] == 113)
        || o[0] >= 224) // multicast, reserved, broadcast
}

/// Check a webhook URL at submission: scheme, host and (unless private networks are allowed)
/// every address it resolves to. The error is the client's 400 message.
pub async fn check_url(raw: &str, allow_private: bool) -> Result<Url, String> {
    if raw.len() > 2048 {
        return Err("x-webhook-url is longer than 2048 characters".to_owned());
    }
    let url = Url::parse(raw).map_err(|e| format!("x-webhook-url is not a valid URL: {e}"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err("x-webhook-url must be an http or https URL".to_owned());
    }
    let Some(host) = url.host() else {
        return Err("x-webhook-url has no host".to_owned());
    };
    if allow_private {
        return Ok(url);
    }
    let refused = || {
        "x-webhook-url points to a loopback, private, link-local or metadata address; such \
         webhooks are refused (jobs.webhook.allow_private_networks is false)"
            .to_owned()
    };
    match host {
        url::Host::Ipv4(ip) => {
            if !is_public(IpAddr::V4(ip)) {
                return Err(refused());
            }
        }
        url::Host::Ipv6(ip) => {
            if !is_public(IpAddr::V6(ip)) {
                return Err(refused());
            }
        }
        url::Host::Domain(name) => {
            let port = url.port_or_known_default().unwrap_or(80);
            let addrs: Vec<SocketAddr> = tokio::time::timeout(
                Duration::from_secs(5),
                tokio::net::lookup_host((name, port)),
            )
            .await
            .map_err(|_| format!("x-webhook-url: resolving {name} timed out"))?
            .map_err(|e| format!("x-webhook-url: cannot resolve {name}: {e}"))?
            .collect();
            if addrs.is_empty() || addrs.iter().any(|a| !is_public(a.ip())) {
                return Err(refused());
            }
        }
    }
    Ok(url)
}

/// A resolver that drops non-public addresses unless private networks are allowed.
struct GuardedResolver {
    allow_private: Arc<AtomicBool>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow_private.load(Ordering::Relaxed);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allow || is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!("{REFUSED}: {host} resolves to no public address").into());
            }
            let it: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(it)
        })
    }
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    /// Worth another attempt; the least delay the receiver asked for.
    Retry {
        reason: String,
        outcome: &'static str,
        retry_after: Option<Duration>,
    },
    /// Never retry (410 Gone, an invalid URL).
    Stop {
        reason: String,
        outcome: &'static str,
    },
}

impl Attempt {
    /// The `outcome` label of `ai_gateway_webhook_deliveries_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retry { outcome, .. } | Self::Stop { outcome, .. } => outcome,
        }
    }
}

/// The signer and the guarded client.
pub struct Webhooks {
    /// Set once the secret is known (with NATS, once JetStream answered).
    key: std::sync::OnceLock<Vec<u8>>,
    client: reqwest::Client,
    allow_private: Arc<AtomicBool>,
}

impl Webhooks {
    pub fn new(allow_private: bool) -> Result<Self, String> {
        let allow = Arc::new(AtomicBool::new(allow_private));
        crate::providers::install_crypto();
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(8)
            .dns_resolver(Arc::new(GuardedResolver {
                allow_private: allow.clone(),
            }))
            .user_agent(concat!(
                "ai-gateway/",
                env!("CARGO_PKG_VERSION"),
                " (webhooks)"
            ))
            .build()
            .map_err(|e| format!("cannot build the webhook HTTP client: {e}"))?;
        Ok(Self {
            key: std::sync::OnceLock::new(),
            client,
            allow_private: allow,
        })
    }

    /// The signing key (set once).
    pub fn set_key(&self, key: Vec<u8>) {
        let _ = self.key.set(key);
    }

    /// POST `body` to `url` once, signed, within `timeout`.
    pub async fn attempt(
        &self,
        url: &str,
        id: &str,
        body: &[u8],
        timeout: Duration,
        allow_private: bool,
    ) -> Attempt {
        self.allow_private.store(allow_private, Ordering::Relaxed);
        let parsed = match Url::parse(url) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => u,
            _ => {
                return Attempt::Stop {
                    reason: "invalid webhook URL".to_owned(),
                    outcome: "refused",
                };
            }
        };
        if !allow_private {
            let literal = match parsed.host() {
                Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
                Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
                _ => None,
            };
            if literal.is_some_and(|ip| !is_public(ip)) {
                return Attempt::Retry {
                    reason: format!("{REFUSED}: not a public address"),
                    outcome: "refused",
                    retry_after: None,
                };
            }
        }
        let Some(key) = self.key.get() else {
            return Attempt::Retry {
                reason: "the webhook secret is not loaded yet".to_owned(),
                outcome: "not_ready",
                retry_after: None,
            };
        };
        let ts = crate::clock::unix_secs();
        let signature = sign(key, id, ts, body);
        let req = self
            .client
            .post(parsed)
            .timeout(timeout)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature)
            .body(body.to_vec());
        match req.send().await {
            Ok(resp) => {
                let status = resp.status();
                if status.is_success() {
                    return Attempt::Delivered;
                }
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let reason = format!("the receiver answered {}", status.as_u16());
                if status.as_u16() == 410 {
                    Attempt::Stop {
                        reason,
                        outcome: "http_error",
                    }
                } else {
                    Attempt::Retry {
                        reason,
                        outcome: "http_error",
                        retry_after,
                    }
                }
            }
            Err(e) => {
                let text = crate::error::error_chain(&e);
                if text.contains(REFUSED) {
                    Attempt::Retry {
                        reason: format!("{REFUSED}: the host resolves to no public address"),
                        outcome: "refused",
                        retry_after: None,
                    }
                } else if e.is_timeout() {
                    Attempt::Retry {
                        reason: format!("no answer within {}ms", timeout.as_millis()),
                        outcome: "timeout",
                        retry_after: None,
                    }
                } else {
                    Attempt::Retry {
                        reason: format!("could not deliver: {}", crate::error::sanitize(&text)),
                        outcome: "connect_error",
                        retry_after: None,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // From the Standard Webhooks reference test vectors.
        let key = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn private_addresses_are_not_public() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.100.100.200",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
        ] {
            let ip: IpAddr = a.parse().unwrap();
            assert!(!is_public(ip), "{a} must be refused");
        }
        for a in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "2606:4700::1111",
            "100.128.0.1",
        ] {
            let ip: IpAddr = a.parse().unwrap();
            assert!(is_public(ip), "{a} is public");
        }
    }

    #[tokio::test]
    async fn odd_encodings_of_loopback_are_refused() {
        for u in [
            "http://127.0.0.1:9/x",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://localhost:9/",
            "http://169.254.169.254/latest/meta-data/",
        ] {
            assert!(check_url(u, false).await.is_err(), "{u} must be refused");
        }
        assert!(check_url("ftp://example.com/", true).await.is_err());
        assert!(check_url("http://127.0.0.1:9/x", true).await.is_ok());
    }

    #[tokio::test]
    async fn the_resolver_refuses_loopback_names() {
        use reqwest::dns::Resolve as _;
        let r = GuardedResolver {
            allow_private: Arc::new(AtomicBool::new(false)),
        };
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let err = r.resolve(name).await.err().unwrap();
        assert!(err.to_string().contains(REFUSED));
        r.allow_private.store(true, Ordering::Relaxed);
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        assert!(r.resolve(name).await.is_ok());
    }
}
