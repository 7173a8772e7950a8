//! The deploy files checked by `promtool` / `amtool`, and every metric they use present in
//! `/metrics`.

use super::*;

fn run_tool(tool: &Path, args: &[&str]) {
    let out = Command::new(tool).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{} {}:\n{}{}",
        tool.display(),
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_and_amtool_accept_the_deploy_files() {
    if let Some(promtool) = tool("promtool") {
        let cfg = deploy("prometheus/prometheus.yml");
        let rules = deploy("prometheus/alerts.yml");
        let tests = deploy("prometheus/alerts_test.yml");
        run_tool(&promtool, &["check", "config", cfg.to_str().unwrap()]);
        run_tool(&promtool, &["check", "rules", rules.to_str().unwrap()]);
        run_tool(&promtool, &["test", "rules", tests.to_str().unwrap()]);
    }
    if let Some(amtool) = tool("amtool") {
        let cfg = deploy("alertmanager/alertmanager.yml");
        run_tool(&amtool, &["check-config", cfg.to_str().unwrap()]);
    }
}

/// Every `ai_gateway_*` name in a text.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("ai_gateway_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

#[tokio::test]
async fn every_metric_in_the_alerts_and_dashboard_exists_in_metrics() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let mut config = traffic_config(&up);
    // A Redis nobody listens on: `ai_gateway_dependency_up{dependency="redis"}` is 0.
    config["state"] = json!({"redis_url": format!("redis://127.0.0.1:{}", free_port())});
    let gw = Gateway::start(config).await;
    let n = send_traffic(&gw, &up).await;
    let (text, _) = scrape_after(&gw, n).await;
    let mut exposed: BTreeSet<String> = families(&text).into_keys().collect();
    for (name, ty) in families(&text) {
        if ty == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                exposed.insert(format!("{name}{suffix}"));
            }
        }
    }
    let mut used = BTreeSet::new();
    for f in [
        "prometheus/alerts.yml",
        "grafana/dashboards/ai-gateway.json",
    ] {
        used.extend(metric_names(&std::fs::read_to_string(deploy(f)).unwrap()));
    }
    assert!(used.len() >= 12, "names used: {used:?}");
    let missing: Vec<&String> = used
        .iter()
        .filter(|n| !exposed.contains(*n) && !NOT_RECORDED_YET.contains(&n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "used in deploy/ but not in /metrics: {missing:?}\n{text}"
    );
}
