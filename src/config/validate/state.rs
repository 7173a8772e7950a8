//! `state:`: one Redis topology at most, Redis and NATS URLs of the right schemes, readable TLS
//! and credentials files, a sane `jetstream_replicas`. Errors never repeat a URL (it may hold a
//! password); they say which entry is wrong.

use super::Ctx;
use crate::config::StateConfig;

/// Most replicas a JetStream stream may have (the server's own limit).
pub(crate) const MAX_JETSTREAM_REPLICAS: u32 = 5;

pub(super) fn normalize(s: &mut StateConfig) {
    super::none_if_empty(&mut s.nats_credentials_file);
    super::none_if_empty(&mut s.redis_tls.ca_file);
    super::none_if_empty(&mut s.nats_tls.ca_file);
    s.redis_cluster_urls.retain(|u| !u.trim().is_empty());
    s.redis_sentinel.urls.retain(|u| !u.trim().is_empty());
}

fn redis_scheme(u: &str) -> bool {
    let l = u.to_ascii_lowercase();
    l.starts_with("redis://") || l.starts_with("rediss://")
}

pub(super) fn check(s: &StateConfig, cx: &mut Ctx) {
    let topologies = [
        s.redis_url.is_some(),
        !s.redis_cluster_urls.is_empty(),
        !s.redis_sentinel.urls.is_empty(),
    ];
    if topologies.iter().filter(|x| **x).count() > 1 {
        cx.err(
            "state",
            "set one of redis_url, redis_cluster_urls and redis_sentinel, not several",
            Some("redis_cluster_urls and redis_sentinel are used instead of redis_url".to_owned()),
        );
    }
    if let Some(u) = &s.redis_url
        && !redis_scheme(u)
    {
        cx.err(
            "state.redis_url",
            "must start with redis:// or rediss://",
            Some("e.g. redis://127.0.0.1:6379, rediss://user:password@host:6380/0".to_owned()),
        );
    }
    for (i, u) in s.redis_cluster_urls.iter().enumerate() {
        if !redis_scheme(u) {
            cx.err(
                format!("state.redis_cluster_urls[{i}]"),
                "must start with redis:// or rediss://",
                None,
            );
        }
    }
    for (i, u) in s.redis_sentinel.urls.iter().enumerate() {
        if !redis_scheme(u) {
            cx.err(
                format!("state.redis_sentinel.urls[{i}]"),
                "must start with redis:// or rediss://",
                Some("e.g. redis://sentinel-0:26379".to_owned()),
            );
        }
    }
    if !s.redis_sentinel.urls.is_empty() && s.redis_sentinel.master_name.trim().is_empty() {
        cx.err(
            "state.redis_sentinel.master_name",
            "is required with redis_sentinel.urls",
            Some(
                "the name of `sentinel monitor <name> …` in sentinel.conf, e.g. mymaster"
                    .to_owned(),
            ),
        );
    }
    if let Some(u) = &s.nats_url {
        for (i, one) in u.split(',').enumerate() {
            let one = one.trim();
            let l = one.to_ascii_lowercase();
            let known = ["nats://", "tls://", "ws://", "wss://"]
                .iter()
                .any(|p| l.starts_with(p));
            if one.is_empty() || (one.contains("://") && !known) {
                cx.err(
                    "state.nats_url",
                    format!(
                        "server {} must be nats://host:port or tls://host:port",
                        i + 1
                    ),
                    Some(
                        "several servers are comma-separated: nats://a:4222,nats://b:4222"
                            .to_owned(),
                    ),
                );
            }
        }
    }
    for (key, file) in [
        ("state.redis_tls.ca_file", &s.redis_tls.ca_file),
        ("state.nats_tls.ca_file", &s.nats_tls.ca_file),
        ("state.nats_credentials_file", &s.nats_credentials_file),
    ] {
        if let Some(f) = file
            && let Err(e) = std::fs::metadata(f)
        {
            cx.err(key, format!("cannot read {f}: {e}"), None);
        }
    }
    if s.jetstream_replicas == 0 || s.jetstream_replicas > MAX_JETSTREAM_REPLICAS {
        cx.err(
            "state.jetstream_replicas",
            format!("must be 1 to {MAX_JETSTREAM_REPLICAS}"),
            Some("3 on a 3-node NATS cluster, 1 on a single server".to_owned()),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{describe, load_str};

    fn load(state: &str) -> Result<crate::config::Config, String> {
        let text = format!("state:\n{state}providers:\n  - name: local\n    type: mock\n");
        load_str(&text, &|_| None).map_err(|e| e.to_string())
    }

    #[test]
    fn the_contract_keys_load_and_the_summary_names_the_topology() {
        let cfg = load(
            "  redis_cluster_urls: [\"rediss://:pw-SECRET@a:6379\", \"rediss://:pw-SECRET@b:6379\"]\n  \
             redis_tls: {ca_file: \"\", insecure_skip_verify: false}\n  \
             nats_url: \"nats://u:pw-SECRET@n1:4222,nats://n2:4222,nats://n3:4222\"\n  \
             nats_tls: {ca_file: \"\"}\n  nats_credentials_file: \"\"\n  jetstream_replicas: 3\n",
        )
        .unwrap();
        assert_eq!(cfg.state.redis_tls.ca_file, None);
        assert_eq!(cfg.state.nats_credentials_file, None);
        assert!(cfg.state.redis_configured());
        let text = describe(&cfg).join("\n");
        assert!(!text.contains("SECRET"), "{text}");
        assert!(
            text.contains("redis cluster via 2 seed node(s) rediss://a:6379 rediss://b:6379 (TLS, system roots)"),
            "{text}"
        );
        assert!(
            text.contains(
                "nats 3 servers nats://n1:4222,nats://n2:4222,nats://n3:4222, JetStream replicas 3"
            ),
            "{text}"
        );
        let cfg = load("  redis_sentinel: {master_name: mymaster, urls: [\"redis://s1:26379\"]}\n")
            .unwrap();
        let text = describe(&cfg).join("\n");
        assert!(
            text.contains("redis primary mymaster via 1 sentinel(s) redis://s1:26379"),
            "{text}"
        );
    }

    #[test]
    fn mistakes_are_refused_without_repeating_passwords() {
        let e = load(
            "  redis_url: \"redis://:pw-SECRET@a:6379\"\n  redis_cluster_urls: [\"redis://b:6379\"]\n",
        )
        .unwrap_err();
        assert!(
            e.contains("set one of redis_url, redis_cluster_urls and redis_sentinel"),
            "{e}"
        );
        let e = load("  redis_url: \"http://:pw-SECRET@a:6379\"\n").unwrap_err();
        assert!(
            e.contains("must start with redis:// or rediss://") && !e.contains("SECRET"),
            "{e}"
        );
        let e = load("  redis_sentinel: {urls: [\"redis://s:26379\"]}\n").unwrap_err();
        assert!(e.contains("state.redis_sentinel.master_name"), "{e}");
        let e = load("  jetstream_replicas: 0\n").unwrap_err();
        assert!(
            e.contains("state.jetstream_replicas") && e.contains("1 to 5"),
            "{e}"
        );
        let e = load("  nats_url: \"nats://a:4222,http://b\"\n").unwrap_err();
        assert!(e.contains("server 2"), "{e}");
        let e = load("  nats_credentials_file: /nonexistent/gw.creds\n").unwrap_err();
        assert!(e.contains("state.nats_credentials_file"), "{e}");
    }
}
