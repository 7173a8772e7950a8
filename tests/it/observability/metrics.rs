//! `/metrics` after real traffic, parsed by a Prometheus text parser and scraped by a real
//! Prometheus; the Redis dependency gauge.

use super::*;

#[tokio::test]
async fn metrics_after_traffic_parse_with_names_types_labels_and_values() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let gw = Gateway::start(traffic_config(&up)).await;
    let n = send_traffic(&gw, &up).await;
    let (text, scrape) = scrape_after(&gw, n).await;

    // Names, types and label names of the contract's table.
    let fams = families(&text);
    for (name, ty, labels) in TABLE {
        if NOT_RECORDED_YET.contains(name) {
            let src = std::fs::read_to_string(repo().join("src/metrics.rs")).unwrap();
            assert!(src.contains(name), "{name} not declared in src/metrics.rs");
            continue;
        }
        if *name == "ai_gateway_dependency_up" {
            continue; // only with Redis/NATS configured (see the Redis test)
        }
        assert_eq!(
            fams.get(*name).map(String::as_str),
            Some(*ty),
            "# TYPE of {name}\n{text}"
        );
        let want: BTreeSet<String> = labels.iter().map(|l| (*l).to_owned()).collect();
        let series: Vec<&Sample> = scrape
            .samples
            .iter()
            .filter(|s| s.metric == *name)
            .collect();
        assert!(!series.is_empty(), "no series of {name}");
        for s in series {
            assert_eq!(labels_of(s), want, "labels of {name}: {s:?}");
        }
    }

    // Values.
    let chat = ("endpoint", "/v1/chat/completions");
    let req = "ai_gateway_requests_total";
    let v = |l: &[(&str, &str)]| scalar(&scrape, req, l);
    assert_eq!(
        v(&[
            chat,
            ("model", "gpt-test"),
            ("provider", "fake"),
            ("status", "200")
        ]),
        Some(6.0),
        "3 misses, 1 hit, 1 stream, 1 retried\n{text}"
    );
    assert_eq!(
        v(&[
            chat,
            ("model", "mock"),
            ("provider", "local"),
            ("status", "200")
        ]),
        Some(1.0)
    );
    assert_eq!(
        v(&[
            ("endpoint", "/v1/embeddings"),
            ("model", "gpt-test"),
            ("status", "200")
        ]),
        Some(1.0)
    );
    assert_eq!(v(&[chat, ("model", ""), ("status", "404")]), Some(1.0));
    assert_eq!(v(&[chat, ("model", ""), ("status", "401")]), Some(1.0));
    assert_eq!(v(&[("endpoint", "other"), ("status", "404")]), Some(1.0));
    assert_eq!(
        hist_count(
            &scrape,
            "ai_gateway_request_duration_seconds",
            &[chat, ("model", "gpt-test")]
        ),
        Some(6.0)
    );
    let fake = [("provider", "fake"), ("deployment_model", "upstream-model")];
    let att = |outcome: &str| {
        let mut l = fake.to_vec();
        l.push(("outcome", outcome));
        scalar(&scrape, "ai_gateway_upstream_attempts_total", &l)
    };
    assert_eq!(
        att("success"),
        Some(6.0),
        "3 + stream + retried + embeddings"
    );
    assert_eq!(att("error_status"), Some(1.0));
    assert_eq!(
        hist_count(
            &scrape,
            "ai_gateway_upstream_duration_seconds",
            &[fake[0], fake[1], ("outcome", "success")]
        ),
        Some(6.0)
    );
    assert_eq!(
        hist_count(
            &scrape,
            "ai_gateway_time_to_first_token_seconds",
            &[("model", "gpt-test"), ("provider", "fake")]
        ),
        Some(1.0)
    );
    assert!(
        scalar(
            &scrape,
            "ai_gateway_cache_requests_total",
            &[("layer", "l1"), ("result", "hit")]
        )
        .unwrap()
            >= 1.0
    );
    assert!(
        scalar(
            &scrape,
            "ai_gateway_cache_requests_total",
            &[("layer", "l1"), ("result", "miss")]
        )
        .unwrap()
            >= 5.0
    );
    assert_eq!(
        scalar(&scrape, "ai_gateway_circuit_state", &fake),
        Some(0.0)
    );
    let in_flight = scalar(&scrape, "ai_gateway_in_flight_requests", &[]).unwrap();
    assert!(
        (1.0..5.0).contains(&in_flight),
        "in flight {in_flight} (this scrape included)"
    );
    for reason in ["requests", "tokens", "budget"] {
        assert_eq!(
            scalar(
                &scrape,
                "ai_gateway_rate_limited_total",
                &[("reason", reason)]
            ),
            Some(0.0)
        );
    }
    for ty in ["input", "output"] {
        assert!(
            find(
                &scrape,
                "ai_gateway_tokens_total",
                &[("model", "gpt-test"), ("provider", "fake"), ("type", ty)]
            )
            .is_some(),
            "token series of every configured model exist"
        );
    }

    // Buckets that suit LLM traffic: milliseconds to minutes.
    let buckets = |name: &str| -> Vec<f64> {
        match &find(&scrape, name, &[]).unwrap().value {
            PValue::Histogram(b) => b.iter().map(|b| b.less_than).collect(),
            _ => unreachable!(),
        }
    };
    let b = buckets("ai_gateway_request_duration_seconds");
    assert!(b.contains(&0.005) && b.contains(&1.0) && b.contains(&80.0) && b.contains(&640.0));
    let b = buckets("ai_gateway_time_to_first_token_seconds");
    assert!(b.contains(&0.1) && b.contains(&10.0));

    // Bounded label values: nothing of what the caller made up reaches a label.
    for s in &scrape.samples {
        for v in s.labels.values() {
            assert!(
                !v.contains("no-such-model") && !v.contains("random-path"),
                "unbounded label value in {s:?}"
            );
        }
    }

    // The strict parser of Prometheus itself, when installed.
    if let Some(promtool) = tool("promtool") {
        let mut child = Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test]
async fn dependency_up_follows_redis() {
    let mut redis = crate::support::redis::RedisServer::start().await;
    let mut config = basic_config(None);
    config["state"] = json!({"redis_url": redis.url()});
    let gw = Gateway::start(config).await;
    let up = |want: f64| {
        let gw = &gw;
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
            loop {
                let s = parse(&metrics_text(gw).await);
                let v = scalar(&s, "ai_gateway_dependency_up", &[("dependency", "redis")]);
                if v == Some(want) {
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "ai_gateway_dependency_up{{dependency=\"redis\"}} = {v:?}, want {want}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    up(1.0).await;
    redis.stop();
    up(0.0).await;
}

#[tokio::test]
async fn real_prometheus_scrapes_the_gateway_and_answers_promql() {
    let Some(prometheus) = tool("prometheus") else {
        return;
    };
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let gw = Gateway::start(traffic_config(&up)).await;
    let n = send_traffic(&gw, &up).await;
    scrape_after(&gw, n).await;

    let dir = tempfile::tempdir().unwrap();
    let gw_addr = gw.url("").trim_start_matches("http://").to_owned();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: ai-gateway\n    static_configs:\n      - targets: [\"{gw_addr}\"]\n"
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let child = Command::new(prometheus)
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let _prom = Proc(child);
    let client = client();
    let query = |q: String| {
        let client = client.clone();
        async move {
            let r = client
                .get(format!(
                    "http://127.0.0.1:{port}/api/v1/query?query={}",
                    percent_encode(&q)
                ))
                .send()
                .await;
            match r {
                Ok(r) => r.json::<Value>().await.ok(),
                Err(_) => None,
            }
        }
    };
    let q = r#"sum(ai_gateway_requests_total{job="ai-gateway",endpoint="/v1/chat/completions",model="gpt-test",status="200"})"#;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let got = loop {
        if let Some(v) = query(q.to_owned()).await
            && let Some(val) = v.pointer("/data/result/0/value/1").and_then(Value::as_str)
        {
            break val.to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Prometheus never had the gateway's request count; its log:\n{}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(got, n.to_string(), "PromQL {q}");
    let v = query(r#"up{job="ai-gateway"}"#.to_owned()).await.unwrap();
    assert_eq!(v.pointer("/data/result/0/value/1"), Some(&json!("1")));

    // Every expression of the dashboard and the alert rules is valid PromQL and runs.
    for expr in deploy_exprs() {
        let q = expr
            .replace("$__rate_interval", "1m")
            .replace("$__range", "5m")
            .replace("$__interval", "15s")
            .replace("$job", ".*")
            .replace("$instance", ".*")
            .replace("$model", ".*");
        let v = query(q.clone()).await.expect("Prometheus answers");
        assert_eq!(v["status"], "success", "{q}: {v}");
    }
}
