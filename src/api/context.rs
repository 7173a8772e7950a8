//! What every handler shares: the application's state ([`AppState`]), the request's id, the
//! error shape of a path and the whole-request deadline; and the start-up work on that state.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::time::Instant;

use crate::accounting::Ledger;
use crate::cache::Cache;
use crate::config::Config;
use crate::keys::KeyStore;
use crate::limits::Limiter;
use crate::limits::spend::Spend;
use crate::pipeline::Services;
use crate::runtime::{ClientPool, Runtime};
use crate::state::Redis;
use crate::store::Store;
use crate::wire::Format;

/// State shared by every request.
pub struct AppState {
    pub runtime: ArcSwap<Runtime>,
    /// Where the configuration came from (`None` = built-in default; reload re-reads nothing).
    pub config_path: Option<PathBuf>,
    /// The open client connections (`server.max_connections`); they know whether the gateway
    /// is draining (SIGTERM: `/ready` answers 503 while in-flight work finishes).
    pub connections: Arc<crate::server::Connections>,
    /// How many jobs this process runs at once (`jobs.workers`).
    pub job_slots: Arc<crate::slots::Slots>,
    pub(crate) clients: Mutex<ClientPool>,
    /// Redis of `state.redis_url` (read at start; a reload does not change it).
    pub redis: Option<Arc<Redis>>,
    /// Cache, limits and spend (created at start; a reload changes their policy, not them).
    pub services: Arc<Services>,
    /// Admin-created keys (Redis or the embedded store).
    pub keys: Arc<KeyStore>,
    /// The Prometheus recorder (`None` when another app in this process installed it first).
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// The async job system, set once at start (unset: async endpoints answer 503).
    pub jobs: std::sync::OnceLock<Arc<crate::jobs::Jobs>>,
    /// Stored Responses API objects (Redis, or the embedded store opened when first used).
    pub responses: Arc<crate::responses::ResponseStore>,
    /// The admin request log and usage report (`None` with `request_log.enabled: false`).
    pub request_log: Option<Arc<crate::request_log::RequestLog>>,
    /// The web console's sessions and sign-in throttle.
    #[cfg(feature = "console")]
    pub console: crate::api::console::Console,
}

pub type SharedState = Arc<AppState>;

impl AppState {
    pub fn new(config: Config, config_path: Option<PathBuf>) -> Result<SharedState, String> {
        let redis = Redis::from_config(&config.state)?;
        let cache = Cache::new(&config.cache, redis.clone());
        // The embedded store holds keys and spend when Redis does not.
        let store = if redis.is_none() && config.auth.is_some() {
            Some(Store::open(std::path::Path::new(&config.state.data_dir))?)
        } else {
            None
        };
        let ledger = Arc::new(Ledger {
            limiter: Limiter::new(&config.rate_limits, redis.clone()),
            spend: Spend::new(redis.clone(), store.clone()),
        });
        let keys = Arc::new(KeyStore::new(redis.clone(), store));
        let responses = Arc::new(crate::responses::ResponseStore::new(
            redis.clone(),
            &config.state.data_dir,
        ));
        let mut clients = ClientPool::default();
        let connections = Arc::new(crate::server::Connections::new(
            config.server.max_connections,
        ));
        let job_slots = Arc::new(crate::slots::Slots::new(
            usize::try_from(config.jobs.workers).unwrap_or(usize::MAX),
        ));
        let semantic = crate::pipeline::semantic::index(&config, redis.as_ref());
        let request_log = crate::request_log::RequestLog::start(
            &config.request_log,
            redis.clone(),
            std::path::Path::new(&config.state.data_dir),
        )?;
        #[cfg(feature = "console")]
        let redis_for_console = redis.clone();
        let rt = Runtime::build(config, &mut clients)?;
        Ok(Arc::new(Self {
            runtime: ArcSwap::from_pointee(rt),
            config_path,
            connections,
            job_slots,
            clients: Mutex::new(clients),
            redis,
            services: Arc::new(Services {
                semantic,
                cache,
                ledger,
            }),
            keys,
            metrics: crate::metrics::install(),
            jobs: std::sync::OnceLock::new(),
            responses,
            request_log,
            #[cfg(feature = "console")]
            console: crate::api::console::Console::new(redis_for_console),
        }))
    }

    /// Re-read the configuration file, validate it whole and swap it in; the changed keys that
    /// need a restart (see [`super::reload`]). On error the running configuration stays and the
    /// errors are returned. `admin_names` (the live admin-made keys' names, with their ids): a
    /// file whose key has one of them is refused, names being unique.
    pub fn reload(
        &self,
        admin_names: &std::collections::HashMap<String, String>,
    ) -> Result<Vec<&'static str>, Vec<String>> {
        super::reload::reload(self, admin_names)
    }
}

/// [`AppState::reload`] off the async runtime (it reads the file), with the names of the live
/// admin-made keys to check the file's against.
pub async fn reload(state: &SharedState) -> Result<Vec<&'static str>, Vec<String>> {
    let names = state.keys.live_names().await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "reload: the admin-made keys cannot be read; the file's key names are not checked against theirs");
        std::collections::HashMap::new()
    });
    let st = state.clone();
    tokio::task::spawn_blocking(move || st.reload(&names))
        .await
        .map_err(|_| vec!["internal: the reload task failed".to_owned()])?
}

/// The request id of the current request, put in extensions by `request_context`.
#[derive(Debug, Clone)]
pub struct RequestId(pub std::sync::Arc<str>);

/// Which error shape a path answers in.
pub fn error_format_of(path: &str) -> Format {
    if path.starts_with("/v1/messages") || path.starts_with("/v1/async/messages") {
        Format::Anthropic
    } else {
        Format::OpenAi
    }
}

/// The whole-request deadline of a request that started at `started`.
pub fn deadline_after(state: &AppState, started: Instant) -> Instant {
    let d: Duration = state.runtime.load().config.server.request_timeout.get();
    started + d
}

/// At start, before serving: the file's keys take over the current period's spend recorded
/// under the ids they had before ids followed their digest (`cfg_<name>`; rate-limit buckets
/// start afresh); then, in the background, the admin-made keys' names are indexed and names
/// shared by a file key and a live admin-made key are logged (both keep working; a reload is
/// refused until one is renamed).
pub async fn keys_at_start(state: &SharedState) {
    let rt = state.runtime.load_full();
    let moves: Vec<(String, String, Duration)> = rt
        .auth
        .static_keys()
        .filter_map(|k| {
            k.legacy_id()
                .map(|old| (old.to_owned(), k.id.clone(), k.period()))
        })
        .collect();
    let st = state.clone();
    let Some(redis) = st.redis.clone() else {
        // Embedded: before the spend is loaded from the store.
        st.services.ledger.spend.carry_over(&moves).await;
        crate::tasks::spawn(async move { settle_names(&st).await });
        return;
    };
    crate::tasks::spawn(async move {
        // Redis is connected in the background: wait for it (however long it is down).
        while !redis.is_healthy() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        st.services.ledger.spend.carry_over(&moves).await;
        settle_names(&st).await;
    });
}

/// Index the admin-made keys' names; log names shared by a file key and a live admin-made key.
async fn settle_names(st: &SharedState) {
    st.keys.index_names().await;
    if let Ok(admin) = st.keys.live_names().await {
        let cfg = &st.runtime.load().config;
        for clash in crate::keys::file_clashes(cfg.auth.as_ref(), &admin) {
            tracing::error!("{clash}");
        }
    }
}

impl crate::jobs::host::Host for AppState {
    fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    fn job_slots(&self) -> &Arc<crate::slots::Slots> {
        &self.job_slots
    }

    fn keys(&self) -> &KeyStore {
        &self.keys
    }

    fn run_call<'a>(
        self: Arc<Self>,
        caller: &'a crate::auth::Caller,
        request_id: &'a str,
        headers: &'a axum::http::HeaderMap,
        body: bytes::Bytes,
        endpoint: crate::wire::Endpoint,
    ) -> crate::jobs::host::CallFuture<'a> {
        Box::pin(super::run_call(
            self,
            caller,
            request_id,
            headers,
            body,
            endpoint,
            Instant::now(),
            None,
        ))
    }
}
