//! Setting up JetStream: the jobs and webhooks streams, the KV buckets and the object store,
//! each with `state.jetstream_replicas` replicas.

use super::*;

pub(super) async fn setup(client: &async_nats::Client, cfg: &Config) -> Result<Inner, String> {
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .backpressure_on_inflight(true)
        .build(client.clone());
    let replicas = crate::state::nats::replicas(&cfg.state);
    let work_queue = |name: &str, subject: &str| stream::Config {
        name: name.to_owned(),
        subjects: vec![subject.to_owned()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::New,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    };
    let ensure = |c| crate::state::nats::ensure_stream(&js, c, replicas, |_| false);
    let jobs_stream = ensure(work_queue(JOBS_STREAM, JOBS_SUBJECT)).await?;
    let hooks_stream = ensure(work_queue(HOOKS_STREAM, HOOKS_SUBJECT)).await?;
    let kv = ensure_bucket(&js, BUCKET, cfg.jobs.result_ttl.get(), replicas).await?;
    let meta = ensure_bucket(&js, META_BUCKET, Duration::ZERO, replicas).await?;
    let objects = crate::state::nats::ensure_object_store(
        &js,
        object_store::Config {
            bucket: OBJECTS_BUCKET.to_owned(),
            description: Some(
                "ai-gateway: job bodies and results too large for one message".to_owned(),
            ),
            max_age: cfg.jobs.result_ttl.get(),
            storage: stream::StorageType::File,
            ..Default::default()
        },
        replicas,
    )
    .await?;
    let jobs: consumer::PullConsumer = jobs_stream
        .get_or_create_consumer(
            "workers",
            consumer::pull::Config {
                durable_name: Some("workers".to_owned()),
                description: Some("ai-gateway job workers (all replicas)".to_owned()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                max_deliver: -1,
                max_ack_pending: 100_000,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("consumer workers: {e}"))?;
    let hook_wait = (cfg.jobs.webhook.timeout.get() * 2).max(Duration::from_secs(60));
    let hooks: consumer::PullConsumer = hooks_stream
        .get_or_create_consumer(
            "webhooks",
            consumer::pull::Config {
                durable_name: Some("webhooks".to_owned()),
                description: Some("ai-gateway webhook deliveries (all replicas)".to_owned()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: hook_wait,
                max_deliver: -1,
                max_ack_pending: 100_000,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("consumer webhooks: {e}"))?;
    Ok(Inner {
        client: client.clone(),
        js,
        kv,
        meta,
        objects,
        jobs,
        hooks,
    })
}

/// A KV bucket, made through its stream so it works with nats-server 2.9 too (the client's
/// `create_key_value` reads account fields that 2.9 does not send). `max_age` zero = forever;
/// a changed `jobs.result_ttl` updates the bucket. Its store reads with direct gets, which any
/// replica answers: what must see the latest write reads through
/// [`crate::state::nats::leader_entry`].
pub(crate) async fn ensure_bucket(
    js: &jetstream::Context,
    bucket: &str,
    max_age: Duration,
    replicas: usize,
) -> Result<kv::Store, String> {
    let config = stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_age,
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    };
    crate::state::nats::ensure_stream(js, config, replicas, |have| have.max_age != max_age)
        .await
        .map_err(|e| format!("key-value bucket {bucket}: {e}"))?;
    js.get_key_value(bucket)
        .await
        .map_err(|e| format!("key-value bucket {bucket}: {e}"))
}
