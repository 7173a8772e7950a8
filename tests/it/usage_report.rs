//! The usage report (`GET /admin/usage`) and the overview numbers (`GET /admin/stats`): exact
//! totals over two replicas sharing a real Redis, grouping, bad ranges; the embedded store.

use std::time::Duration;

use serde_json::{Value, json};

use crate::request_log::{admin, log_config, wait_entries};
use crate::support::redis::RedisServer;
use crate::support::*;

fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Days to civil date (Howard Hinnant), as the gateway does.
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Poll `/admin/usage?{query}` until the rows' `requests` add up to `n`; the rows.
async fn wait_usage(gw: &Gateway, query: &str, n: u64) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (s, v) = admin(gw, &format!("/admin/usage?{query}")).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["object"], "list");
        let rows = v["data"].as_array().unwrap().clone();
        let total: u64 = rows.iter().map(|r| r["requests"].as_u64().unwrap()).sum();
        if total >= n {
            assert_eq!(total, n, "more requests than were made: {v}");
            return rows;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "usage did not reach {n} requests: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn two_replicas_sharing_redis_report_exact_totals() {
    let redis = RedisServer::start().await;
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let mut c = log_config(&up);
    c["state"] = json!({"redis_url": redis.url()});
    let a = Gateway::start(c.clone()).await;
    let b = Gateway::start(c).await;

    // 40 calls on gpt-test by `all` (3 prompt words, 3 answer words each), half on each replica,
    // concurrently; 10 on mock; 6 refused (gpt-only on mock: 403).
    let mut tasks = Vec::new();
    for i in 0..56 {
        let gw_url = if i % 2 == 0 { a.url("") } else { b.url("") };
        let (key, model) = match i {
            0..40 => (GW_KEY, "gpt-test"),
            40..50 => (GW_KEY, "mock"),
            _ => (GPT_KEY, "mock"),
        };
        tasks.push(tokio::spawn(async move {
            let r = client()
                .post(format!("{gw_url}/v1/chat/completions"))
                .bearer_auth(key)
                .json(&chat_body(model, "alpha beta gamma"))
                .send()
                .await
                .unwrap();
            let s = r.status().as_u16();
            let _ = r.bytes().await;
            s
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        50,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 403).count(),
        6,
        "{statuses:?}"
    );

    let day = today();
    // Each replica reports everything, exactly.
    for gw in [&a, &b] {
        let rows = wait_usage(gw, &format!("from={day}&to={day}&group_by=key,model"), 56).await;
        let row = |key: &str, model: &str| {
            rows.iter()
                .find(|r| r["key"] == key && r["model"] == model)
                .unwrap_or_else(|| panic!("no row {key}/{model}: {rows:?}"))
                .clone()
        };
        let g = row("all", "gpt-test");
        assert_eq!(g["requests"], 40, "{g}");
        assert_eq!(g["errors"], 0);
        assert_eq!(g["cache_hits"], 0);
        assert_eq!(g["input_tokens"], 120, "{g}");
        assert_eq!(g["output_tokens"], 120, "{g}");
        // 40 × (3 × $1/M + 3 × $2/M).
        let cost = g["cost_usd"].as_f64().unwrap();
        assert!((cost - 40.0 * 9e-6).abs() < 1e-9, "{g}");
        assert!(g.get("day").is_none() && g.get("provider").is_none(), "{g}");
        assert_eq!(row("all", "mock")["requests"], 10);
        let refused = row("gpt-only", "mock");
        assert_eq!(
            (refused["requests"].as_u64(), refused["errors"].as_u64()),
            (Some(6), Some(6))
        );
    }
    // Grouped by day and provider.
    let rows = wait_usage(
        &a,
        &format!("from={day}&to={day}&group_by=provider,day"),
        56,
    )
    .await;
    let fake = rows.iter().find(|r| r["provider"] == "fake").unwrap();
    assert_eq!(fake["day"], day);
    assert_eq!(fake["requests"], 40);
    assert!(fake.get("key").is_none());
    // No group: one row of totals.
    let rows = wait_usage(&b, "group_by=", 56).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["errors"], 6);

    // The shared log: both replicas list all 56 calls.
    for gw in [&a, &b] {
        let page = wait_entries(gw, "", 56).await;
        assert_eq!(page["data"].as_array().unwrap().len(), 56);
        let (_, p) = admin(gw, "/admin/requests?limit=5&status=403").await;
        assert_eq!(p["data"].as_array().unwrap().len(), 5);
        assert_eq!(p["has_more"], true);
        let last = p["data"][4]["id"].as_str().unwrap().to_owned();
        let (_, rest) = admin(gw, &format!("/admin/requests?status=403&after={last}")).await;
        assert_eq!(rest["data"].as_array().unwrap().len(), 1, "{rest}");
        let (s, one) = admin(gw, &format!("/admin/requests/{last}")).await;
        assert_eq!((s, one["status"].as_u64()), (200, Some(403)));
    }

    // The overview: the last hour's minutes hold the 56 calls.
    let (s, st) = admin(&a, "/admin/stats?window=hour").await;
    assert_eq!(s, 200, "{st}");
    assert_eq!(st["window"], "hour");
    assert_eq!(st["bucket_seconds"], 60);
    let buckets = st["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 60);
    assert!(
        buckets
            .windows(2)
            .all(|w| w[0]["start"].as_u64() < w[1]["start"].as_u64())
    );
    assert_eq!(st["totals"]["requests"], 56, "{st}");
    assert_eq!(st["totals"]["errors"], 6);
    assert_eq!(st["totals"]["input_tokens"], 150);
    assert!(st["totals"]["p95_ms"].as_u64().unwrap() >= st["totals"]["p50_ms"].as_u64().unwrap());
    let (_, day_stats) = admin(&b, "/admin/stats?window=day").await;
    assert_eq!(day_stats["buckets"].as_array().unwrap().len(), 24);
    assert_eq!(day_stats["bucket_seconds"], 3600);
    assert_eq!(day_stats["totals"]["requests"], 56);
}

#[tokio::test]
async fn embedded_report_and_bad_ranges() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let gw = Gateway::start(log_config(&up)).await;
    for _ in 0..3 {
        let r = gw.chat("gpt-test", "one two").await;
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await;
    }
    let day = today();
    let rows = wait_usage(&gw, "", 3).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["day"], day);
    assert_eq!(rows[0]["key"], "all");
    assert_eq!(rows[0]["model"], "gpt-test");
    assert_eq!(rows[0]["input_tokens"], 6);

    for (query, says) in [
        ("from=2026-12-10&to=2026-12-01", "reversed"),
        ("from=2020-01-01&to=2026-12-01", "too long"),
        ("from=2026-02-30", "YYYY-MM-DD"),
        ("to=yesterday", "YYYY-MM-DD"),
        ("group_by=day,color", "group_by"),
    ] {
        let r = gw
            .client()
            .get(gw.url(&format!("/admin/usage?{query}")))
            .bearer_auth(MASTER_KEY)
            .send()
            .await
            .unwrap();
        let e = assert_openai_error(r, 400, "invalid_request_error", None).await;
        assert!(
            e["message"].as_str().unwrap().contains(says),
            "{query}: {e}"
        );
    }
    let r = gw
        .client()
        .get(gw.url("/admin/stats?window=week"))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap();
    assert_openai_error(r, 400, "invalid_request_error", None).await;
}

/// `request_log.enabled: false`: nothing is recorded; the endpoints answer empty.
#[tokio::test]
async fn off_records_nothing() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let mut c = log_config(&up);
    c["request_log"] = json!({"enabled": false});
    let gw = Gateway::start(c).await;
    let r = gw.chat("gpt-test", "one two").await;
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, page) = admin(&gw, "/admin/requests").await;
    assert_eq!(page["data"], json!([]));
    let (_, usage) = admin(&gw, "/admin/usage").await;
    assert_eq!(usage["data"], json!([]));
    assert!(
        !gw.config_path()
            .parent()
            .unwrap()
            .join("data/requests.redb")
            .exists()
    );
}
