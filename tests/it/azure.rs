//! Azure OpenAI: deployment URLs with `api-version`, and the `api-key` header.

use serde_json::json;

use crate::support::*;

fn azure_config(up: &FakeUpstream) -> serde_json::Value {
    config(
        vec![azure_provider("azure-east", up)],
        vec![
            model("gpt-azure", "azure-east", "my-gpt-deploy"),
            model("emb-azure", "azure-east", "my-emb-deploy"),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_chat_uses_deployment_url_and_api_key() {
    let up = FakeUpstream::start(Kind::Azure).await;
    let gw = Gateway::start(azure_config(&up)).await;
    let r = gw.chat("gpt-azure", "hello azure").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-gateway-provider"), Some("azure-east"));
    assert_eq!(
        header(&r, "x-gateway-deployment-model"),
        Some("my-gpt-deploy")
    );
    let v = json_of(r).await;
    assert_eq!(v["choices"][0]["message"]["content"], "hello azure");
    let got = up.only_request();
    assert_eq!(
        got.path,
        "/openai/deployments/my-gpt-deploy/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(got.header("api-key"), Some(PROVIDER_KEY));
    assert!(
        got.header("authorization").is_none(),
        "Azure takes api-key, not Authorization"
    );
    for (name, value) in &got.headers {
        assert!(
            !String::from_utf8_lossy(value.as_bytes()).contains(GW_KEY),
            "caller key in upstream header {name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_streaming_chat() {
    let up = FakeUpstream::start(Kind::Azure).await;
    let gw = Gateway::start(azure_config(&up)).await;
    let body = json!({"model": "gpt-azure", "stream": true,
        "messages": [{"role": "user", "content": "streamed from azure"}]});
    let r = gw.post("/v1/chat/completions", Some(GW_KEY), &body).await;
    assert_eq!(r.status(), 200);
    assert!(
        header(&r, "content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = r.text().await.unwrap();
    let datas = sse_data(&text);
    assert_eq!(datas.last().unwrap(), "[DONE]");
    assert_eq!(joined_content(&datas), "streamed from azure");
    assert!(
        up.only_request()
            .path
            .starts_with("/openai/deployments/my-gpt-deploy/chat/completions?api-version=")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_embeddings_use_deployment_url() {
    let up = FakeUpstream::start(Kind::Azure).await;
    let gw = Gateway::start(azure_config(&up)).await;
    let r = gw
        .post(
            "/v1/embeddings",
            Some(GW_KEY),
            &json!({"model": "emb-azure", "input": "hi"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v = json_of(r).await;
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["object"], "embedding");
    let got = up.only_request();
    assert_eq!(
        got.path,
        "/openai/deployments/my-emb-deploy/embeddings?api-version=2024-10-21"
    );
    assert_eq!(got.header("api-key"), Some(PROVIDER_KEY));
}
