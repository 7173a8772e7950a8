//! A batch's completion window: when it passes, the batch ends `expired` with what finished
//! (`batches.expire_after` shortens the window for the test).

use std::time::Duration;

use serde_json::json;

use crate::batches::*;
use crate::support::*;

#[tokio::test]
async fn a_batch_past_its_window_ends_expired_with_what_finished() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.set_default(Fault::Delay(Duration::from_millis(150)));
    let data = tempfile::tempdir().unwrap();
    let mut cfg = one_config(&up);
    cfg["state"] = json!({"data_dir": data.path().to_str().unwrap()});
    cfg["batches"]["concurrency"] = json!(2);
    cfg["batches"]["expire_after"] = json!("2s");
    let gw = Gateway::start(cfg).await;
    // 200 lines, 2 at a time, 150 ms each: 15 s of work in a 2 s window.
    let file = upload(&gw, GW_KEY, &input(200, &["gpt-test"])).await;
    let id = create_id(&gw, GW_KEY, &file).await;
    let done = wait_batch(&gw, &id, Duration::from_secs(60), ended).await;
    assert_eq!(done["status"], "expired", "{done}");
    assert!(done["expired_at"].as_u64().is_some(), "{done}");
    let ran = up.request_count();
    assert!(ran < 200, "{ran} lines ran");
    let (out, err) = results(&gw, &done, 200).await;
    assert_eq!(out.len(), ran, "each line that ran is in the output");
    assert_eq!(done["request_counts"]["completed"], ran as u64, "{done}");
    assert!(
        err.iter()
            .all(|l| l["error"]["code"] == "batch_expired" && l["response"].is_null()),
        "the lines not run end batch_expired"
    );
}
