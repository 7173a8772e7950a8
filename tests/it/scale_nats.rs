//! NATS as production runs it: a 3-node JetStream cluster with the gateway's streams, KV buckets
//! and object store replicated three ways (jobs all succeed after one node is killed mid-queue;
//! an earlier replica count is brought to the configured one), one server over TLS with a
//! user and password, and one in operator (JWT) mode authenticated by a `.creds` file.

use std::time::Duration;

use serde_json::{Value, json};

use crate::jobs::{jobs_config, submit_ok, wait_job};
use crate::support::cluster::{Certs, NatsCluster};
use crate::support::operator::Operator;
use crate::support::*;

async fn wait_nats_ok(gw: &Gateway) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let v = json_of(gw.get("/ready", None).await).await;
        if v["nats"] == "ok" {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nats never became ok: {v}\n{}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Each job `(i, id)` of `ids` succeeded (within `timeout`) with the answer `"{prefix} {i}"`;
/// then `/ready` says NATS is ok.
async fn assert_all_succeeded(
    gw: &Gateway,
    ids: &[(usize, String)],
    prefix: &str,
    timeout: Duration,
) {
    for (i, id) in ids {
        let v = wait_job(gw, id, timeout).await;
        assert_eq!(v["status"], "succeeded", "{v}");
        assert_eq!(
            v["result"]["choices"][0]["message"]["content"],
            format!("{prefix} {i}")
        );
    }
    let ready = json_of(gw.get("/ready", None).await).await;
    assert_eq!(ready["nats"], "ok", "{ready}");
}

/// `/ready` says NATS is down and an async submission is refused with 503.
async fn assert_nats_down(gw: &Gateway) {
    let ready = json_of(gw.get("/ready", None).await).await;
    assert_eq!(ready["nats"], "down", "{ready}");
    assert_eq!(ready["status"], "degraded", "{ready}");
    let r = crate::jobs::submit(
        gw,
        GW_KEY,
        "/v1/async/chat/completions",
        &chat_body("gpt-test", "x"),
        &[],
    )
    .await;
    assert_eq!(r.status(), 503);
}

/// The configuration of a stream, asked of JetStream directly.
async fn stream_config(url: &str, stream: &str) -> async_nats::jetstream::stream::Config {
    let mut st = jetstream(url).await.get_stream(stream).await.unwrap();
    st.info().await.unwrap().config.clone()
}

/// A JetStream context on the servers of `url` (comma-separated).
async fn jetstream(url: &str) -> async_nats::jetstream::Context {
    let servers: Vec<String> = url.split(',').map(str::to_owned).collect();
    async_nats::jetstream::new(async_nats::connect(servers).await.unwrap())
}

/// How many servers hold a consumer of `stream` (its leader and followers), asked of JetStream.
async fn consumer_peers(url: &str, stream: &str, name: &str) -> usize {
    let mut c: async_nats::jetstream::consumer::PullConsumer = jetstream(url)
        .await
        .get_stream(stream)
        .await
        .unwrap()
        .get_consumer(name)
        .await
        .unwrap();
    let info = c.info().await.unwrap();
    let cluster = info.cluster.as_ref().unwrap();
    usize::from(cluster.leader.is_some()) + cluster.replicas.len()
}

/// The replica count of a stream, asked of JetStream directly.
async fn stream_replicas(url: &str, stream: &str) -> usize {
    stream_config(url, stream).await.num_replicas
}

fn cluster_config(up: &FakeUpstream, nats: &NatsCluster, replicas: u32) -> Value {
    let mut c = jobs_config(up);
    c["state"] = json!({"nats_url": nats.url(), "jetstream_replicas": replicas});
    c
}

/// A 3-node cluster, an upstream, and a gateway on them with `replicas` replicas, NATS ready.
async fn on_a_cluster(replicas: u32) -> (NatsCluster, FakeUpstream, Gateway) {
    let nats = NatsCluster::start(3).await;
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let gw = Gateway::start(cluster_config(&up, &nats, replicas)).await;
    wait_nats_ok(&gw).await;
    (nats, up, gw)
}

#[tokio::test]
async fn jobs_all_succeed_after_one_node_of_three_is_killed_mid_queue() {
    let mut nats = NatsCluster::start(3).await;
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.set_default(Fault::Delay(Duration::from_millis(100)));
    let mut cfg = cluster_config(&up, &nats, 3);
    cfg["jobs"]["workers"] = json!(8);
    let gw = Gateway::start(cfg).await;
    wait_nats_ok(&gw).await;
    assert!(
        gw.logs().contains("nats 3 servers"),
        "the start-up summary names the topology:\n{}",
        gw.logs()
    );
    for s in [
        "AIGW_JOBS",
        "AIGW_WEBHOOKS",
        "KV_aigw_jobs",
        "KV_aigw_meta",
        "OBJ_aigw_objects",
    ] {
        let config = stream_config(&nats.url(), s).await;
        assert_eq!(config.num_replicas, 3, "{s}");
        if s.starts_with("OBJ_") {
            // Read through the leader: a follower's direct get may miss an object just stored.
            assert!(!config.allow_direct, "{s}");
        }
    }
    // The shared consumers live on all three servers too (a leader and two followers).
    for (s, name) in [("AIGW_JOBS", "workers"), ("AIGW_WEBHOOKS", "webhooks")] {
        assert_eq!(consumer_peers(&nats.url(), s, name).await, 3, "{name}");
    }
    let mut ids = Vec::new();
    for i in 0..60 {
        let job = submit_ok(&gw, &chat_body("gpt-test", &format!("clustered {i}")), &[]).await;
        ids.push((i, job["id"].as_str().unwrap().to_owned()));
    }
    assert!(wait_until(Duration::from_secs(20), || up.request_count() >= 10).await);
    // The first server in the list: the one the client most likely talks to.
    nats.kill(0);
    // Submissions keep being accepted on the two left.
    for i in 60..70 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        let id = loop {
            let r = crate::jobs::submit(
                &gw,
                GW_KEY,
                "/v1/async/chat/completions",
                &chat_body("gpt-test", &format!("clustered {i}")),
                &[],
            )
            .await;
            if r.status() == 202 {
                break json_of(r).await["id"].as_str().unwrap().to_owned();
            }
            assert!(tokio::time::Instant::now() < deadline, "{}", r.status());
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        ids.push((i, id));
    }
    up.set_default(Fault::Normal);
    assert_all_succeeded(&gw, &ids, "clustered", Duration::from_secs(90)).await;
}

/// On a 3-node cluster a record is read from its stream's leader, never from a follower that has
/// not applied the latest write yet: a job read right after its submission is found, and every
/// job, taken by an idle worker as soon as it is queued, finds its record and succeeds.
#[tokio::test]
async fn a_job_is_found_right_after_its_submission_on_a_cluster() {
    let (_nats, _up, gw) = on_a_cluster(3).await;
    let mut ids = Vec::new();
    for i in 0..100 {
        let job = submit_ok(&gw, &chat_body("gpt-test", &format!("fresh {i}")), &[]).await;
        let id = job["id"].as_str().unwrap().to_owned();
        let (status, v) = crate::jobs::get_job(&gw, GW_KEY, &id).await;
        assert_eq!(status, 200, "job {i} read right after its submission: {v}");
        ids.push((i, id));
    }
    assert_all_succeeded(&gw, &ids, "fresh", Duration::from_secs(60)).await;
}

#[tokio::test]
async fn streams_made_with_one_replica_are_brought_to_the_configured_count() {
    let (nats, up, first) = on_a_cluster(1).await;
    assert_eq!(stream_replicas(&nats.url(), "AIGW_JOBS").await, 1);
    drop(first);
    let gw = Gateway::start(cluster_config(&up, &nats, 3)).await;
    wait_nats_ok(&gw).await;
    gw.wait_log("brought to state.jetstream_replicas").await;
    for s in [
        "AIGW_JOBS",
        "AIGW_WEBHOOKS",
        "KV_aigw_jobs",
        "KV_aigw_meta",
        "OBJ_aigw_objects",
    ] {
        assert_eq!(stream_replicas(&nats.url(), s).await, 3, "{s}");
    }
    let job = submit_ok(&gw, &chat_body("gpt-test", "replicated"), &[]).await;
    let v = wait_job(&gw, job["id"].as_str().unwrap(), Duration::from_secs(20)).await;
    assert_eq!(v["status"], "succeeded", "{v}");
}

/// An object store made by an earlier version, with direct gets (what the client makes), is
/// updated to be read through its leader; the objects in it stay.
#[tokio::test]
async fn an_object_store_made_with_direct_gets_is_read_through_its_leader() {
    use async_nats::jetstream::object_store;
    let nats = NatsServer::start().await;
    let js = jetstream(&nats.url()).await;
    let store = js
        .create_object_store(object_store::Config {
            bucket: "aigw_objects".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap();
    store.put("kept", &mut &b"yes"[..]).await.unwrap();
    assert!(
        stream_config(&nats.url(), "OBJ_aigw_objects")
            .await
            .allow_direct
    );
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let mut cfg = jobs_config(&up);
    cfg["state"] = json!({"nats_url": nats.url()});
    let gw = Gateway::start(cfg).await;
    wait_nats_ok(&gw).await;
    assert!(
        !stream_config(&nats.url(), "OBJ_aigw_objects")
            .await
            .allow_direct
    );
    let mut kept = Vec::new();
    let mut obj = js
        .get_object_store("aigw_objects")
        .await
        .unwrap()
        .get("kept")
        .await
        .unwrap();
    tokio::io::AsyncReadExt::read_to_end(&mut obj, &mut kept)
        .await
        .unwrap();
    assert_eq!(kept, b"yes");
    let job = submit_ok(&gw, &chat_body("gpt-test", "leader reads"), &[]).await;
    let v = wait_job(&gw, job["id"].as_str().unwrap(), Duration::from_secs(20)).await;
    assert_eq!(v["status"], "succeeded", "{v}");
}

#[tokio::test]
async fn three_replicas_on_a_single_server_is_a_clear_error() {
    let nats = NatsServer::start().await;
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let mut cfg = jobs_config(&up);
    cfg["state"] = json!({"nats_url": nats.url(), "jetstream_replicas": 3});
    let gw = Gateway::start(cfg).await;
    gw.wait_log("NATS JetStream not ready").await;
    assert_nats_down(&gw).await;
}

#[tokio::test]
async fn nats_over_tls_with_a_user_and_password() {
    let certs = Certs::make();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("nats.conf");
    std::fs::write(
        &conf,
        format!(
            "listen: 127.0.0.1:{port}\njetstream {{ store_dir: \"{}\" }}\n\
             authorization {{ user: gw, password: \"nats-PASS-5\" }}\n\
             tls {{ cert_file: \"{}\", key_file: \"{}\" }}\n",
            dir.path().join("js").display(),
            certs.path("server.crt").display(),
            certs.path("server.key").display()
        ),
    )
    .unwrap();
    let mut server = std::process::Command::new("nats-server")
        .arg("-c")
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nats-server");
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let mut cfg = jobs_config(&up);
    cfg["state"] = json!({
        "nats_url": format!("tls://gw:nats-PASS-5@127.0.0.1:{port}"),
        "nats_tls": {"ca_file": certs.ca()},
    });
    let gw = Gateway::start(cfg.clone()).await;
    wait_nats_ok(&gw).await;
    let job = submit_ok(&gw, &chat_body("gpt-test", "over tls"), &[]).await;
    let v = wait_job(&gw, job["id"].as_str().unwrap(), Duration::from_secs(20)).await;
    assert_eq!(v["status"], "succeeded", "{v}");
    // A wrong password is refused; no password is in a log line.
    cfg["state"]["nats_url"] = json!(format!("tls://gw:bad-PASS-6@127.0.0.1:{port}"));
    let wrong = Gateway::start(cfg).await;
    wrong
        .wait_log("NATS refused the user and password of state.nats_url")
        .await;
    let ready = json_of(wrong.get("/ready", None).await).await;
    assert_eq!(ready["nats"], "down", "{ready}");
    for g in [&gw, &wrong] {
        let logs = g.logs();
        assert!(
            !logs.contains("nats-PASS-5") && !logs.contains("bad-PASS-6"),
            "{logs}"
        );
    }
    let _ = server.kill();
    let _ = server.wait();
}

/// `text` written as `name` in `dir`; its path.
fn write_file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn creds_config(up: &FakeUpstream, nats: &NatsServer, creds_file: &str) -> Value {
    let mut c = jobs_config(up);
    c["state"] = json!({"nats_url": nats.url(), "nats_credentials_file": creds_file});
    c
}

/// A server in operator mode, a directory for files, and the `.creds` text and seed of a user of
/// the server's account (with JetStream).
async fn operator_mode() -> (NatsServer, tempfile::TempDir, String, String) {
    let operator = Operator::generate();
    let nats = NatsServer::start_operator(&operator).await;
    let (creds, seed) = operator.user_creds();
    (nats, tempfile::tempdir().unwrap(), creds, seed)
}

#[tokio::test]
async fn nats_in_operator_mode_with_a_creds_file() {
    let (nats, dir, creds, seed) = operator_mode().await;
    let file = write_file(&dir, "gw.creds", &creds);
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let gw = Gateway::start(creds_config(&up, &nats, &file)).await;
    wait_nats_ok(&gw).await;
    assert!(gw.logs().contains(".creds file"), "{}", gw.logs());
    let mut ids = Vec::new();
    for i in 0..5 {
        let job = submit_ok(&gw, &chat_body("gpt-test", &format!("creds {i}")), &[]).await;
        ids.push((i, job["id"].as_str().unwrap().to_owned()));
    }
    assert_all_succeeded(&gw, &ids, "creds", Duration::from_secs(20)).await;
    // The server does require credentials: a client without them is refused.
    assert!(async_nats::connect(nats.url()).await.is_err());

    // A user signed by an account the server does not know: refused, said with the setting that
    // holds the credentials; NATS stays down and no job is accepted.
    let (stranger, stranger_seed) = Operator::stranger_creds();
    let stranger_file = write_file(&dir, "stranger.creds", &stranger);
    let refused = Gateway::start(creds_config(&up, &nats, &stranger_file)).await;
    refused
        .wait_log(&format!(
            "NATS refused the credentials of state.nats_credentials_file ({stranger_file})"
        ))
        .await;
    assert_nats_down(&refused).await;
    for (g, seed) in [(&gw, &seed), (&refused, &stranger_seed)] {
        let logs = g.logs();
        assert!(!logs.contains(seed.as_str()), "a seed was logged:\n{logs}");
    }
}

/// A `.creds` file whose seed is corrupted: an error naming the file at start (async jobs off,
/// the rest of the API serving), `/ready` says NATS is down, and no seed is in the output.
#[tokio::test]
async fn a_creds_file_with_a_corrupted_seed_is_an_error_naming_the_file() {
    let (nats, dir, creds, seed) = operator_mode().await;
    // One character of the seed changed: still base32, but its checksum fails.
    let mut bad = seed.clone().into_bytes();
    bad[20] = if bad[20] == b'A' { b'B' } else { b'A' };
    let bad = String::from_utf8(bad).unwrap();
    let file = write_file(&dir, "gw.creds", &creds.replace(&seed, &bad));
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let gw = Gateway::start(creds_config(&up, &nats, &file)).await;
    gw.wait_log(&format!("state.nats_credentials_file {file}: "))
        .await;
    assert_nats_down(&gw).await;
    // The rest of the API serves.
    assert_eq!(gw.chat("gpt-test", "still here").await.status(), 200);
    let logs = gw.logs();
    assert!(!logs.contains("panicked"), "{logs}");
    assert!(
        !logs.contains(&seed) && !logs.contains(&bad),
        "a seed was logged:\n{logs}"
    );
}
