//! The Batch API on NATS: `kill -9` of the gateway mid-batch, a NATS restart mid-batch, and
//! another replica taking over a batch whose runner died (its lease expired).

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::json;

use crate::batches::*;
use crate::support::*;

#[tokio::test]
async fn nats_kill_9_mid_batch_loses_no_line() {
    let nats = NatsServer::start().await;
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let mut cfg = one_config(&up);
    cfg["state"] = json!({"nats_url": nats.url()});
    kill_9_mid_batch(cfg, &up).await;
}

#[tokio::test]
async fn nats_restart_mid_batch_loses_no_line() {
    let mut nats = NatsServer::start().await;
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.set_default(Fault::Delay(Duration::from_millis(40)));
    let mut cfg = one_config(&up);
    cfg["state"] = json!({"nats_url": nats.url()});
    let gw = Gateway::start(cfg).await;
    let file = upload(&gw, GW_KEY, &input(300, &["gpt-test"])).await;
    let id = create_id(&gw, GW_KEY, &file).await;
    assert!(wait_until(Duration::from_secs(30), || up.request_count() >= 50).await);
    nats.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (s, _) = get_batch(&gw, GW_KEY, &id).await;
    assert_eq!(s, 503, "the batch store is down");
    nats.restart().await;
    every_line_once(&gw, &id, &up).await;
}

#[tokio::test]
async fn nats_another_replica_takes_over_a_batch_whose_runner_died() {
    let nats = NatsServer::start().await;
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.set_default(Fault::Delay(Duration::from_millis(60)));
    let mut cfg = one_config(&up);
    cfg["state"] = json!({"nats_url": nats.url()});
    let mut a = Gateway::start(cfg.clone()).await;
    let file = upload(&a, GW_KEY, &input(300, &["gpt-test"])).await;
    let id = create_id(&a, GW_KEY, &file).await;
    assert!(wait_until(Duration::from_secs(30), || up.request_count() >= 40).await);
    // The second replica starts while the first one holds the batch's lease.
    let b = Gateway::start(cfg).await;
    a.send_signal(Signal::SIGKILL);
    a.wait_exit(Duration::from_secs(5)).await;
    assert!(
        up.request_count() < 300,
        "the kill came too late to test anything"
    );
    up.set_default(Fault::Normal);
    // The lease (15 s) and the jobs' AckWait (10 s) pass; the other replica finishes it.
    every_line_once(&b, &id, &up).await;
}
