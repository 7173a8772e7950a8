//! The running configuration: providers with their HTTP clients, models with their deployments,
//! and the key table, built from a validated `Config`. The app holds it in an `ArcSwap`, so a reload
//! swaps it whole while in-flight requests finish on the one they started with.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::Auth;
use crate::config::{Config, RoutingStrategy};
use crate::providers::http::Http;
use crate::providers::{Op, Provider, http_client};
use crate::router::state::DeploymentState;

/// One way to serve a model: a provider and its upstream model name.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub provider: Arc<Provider>,
    pub model: String,
    pub input_cost_per_mtok: Option<f64>,
    pub output_cost_per_mtok: Option<f64>,
    pub weight: u32,
    pub priority: i32,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    /// Breaker, latency, in-flight and capacity counters (kept across reloads).
    pub state: Arc<DeploymentState>,
    /// Upstream URLs parsed once: chat, embeddings (`None` for the mock, or where the provider
    /// has no such API).
    pub urls: [Option<http::Uri>; 2],
    /// `x-gateway-provider` and `x-gateway-deployment-model`, made once.
    pub headers: DeploymentHeaders,
}

/// The response headers naming a deployment (`None` where a name cannot be a header value).
#[derive(Debug, Clone)]
pub struct DeploymentHeaders {
    pub provider: Option<http::HeaderValue>,
    pub model: Option<http::HeaderValue>,
}

impl Deployment {
    pub fn url(&self, op: Op) -> Option<&http::Uri> {
        match op {
            Op::Chat => self.urls[0].as_ref(),
            Op::Embeddings => self.urls[1].as_ref(),
            Op::Moderations => None,
        }
    }
}

/// A model name clients can ask for.
#[derive(Debug)]
pub struct Model {
    pub name: String,
    pub routing: RoutingStrategy,
    /// In routing order for `priority` (lowest `priority` first, then file order).
    pub deployments: Vec<Arc<Deployment>>,
    pub fallbacks: Vec<String>,
    pub retries: u32,
    pub timeout: Option<Duration>,
    /// `cache:` of the model (overrides `cache.enabled`).
    pub cache: Option<bool>,
}

/// What survives a reload: HTTP clients (one per provider name and connect timeout) and each
/// deployment's run-time state (per provider and upstream model).
#[derive(Default)]
pub struct ClientPool {
    clients: HashMap<(String, Duration, String), Http>,
    states: HashMap<(String, String), Arc<DeploymentState>>,
}

pub struct Runtime {
    pub config: Config,
    pub providers: HashMap<String, Arc<Provider>>,
    /// By name. FxHash: the names come from the configuration and a request only looks up.
    pub models: rustc_hash::FxHashMap<String, Arc<Model>>,
    /// Model names in file order, for `/v1/models`.
    pub model_names: Vec<String>,
    pub auth: Auth,
    /// Unix time the configuration was loaded (the `created` of `/v1/models`).
    pub loaded_at: u64,
    /// The compiled `guardrails:`; `None` when there are none (nothing is looked at).
    pub guardrails: Option<crate::guardrails::Guardrails>,
}

impl Runtime {
    pub fn build(config: Config, clients: &mut ClientPool) -> Result<Self, String> {
        let mut providers = HashMap::new();
        for p in &config.providers {
            let ct = p.connect_timeout.get();
            let base = crate::providers::base_url_of(p);
            let key = (p.name.clone(), ct, base);
            let client = match clients.clients.get(&key) {
                Some(c) => c.clone(),
                None => {
                    let c = http_client(ct, &key.2)?;
                    if c.is_proxied() {
                        tracing::info!(provider = %p.name, "the environment's proxy settings route this provider through a proxy");
                    }
                    clients.clients.insert(key, c.clone());
                    c
                }
            };
            providers.insert(p.name.clone(), Arc::new(Provider::new(p, client)?));
        }
        let mut models = rustc_hash::FxHashMap::default();
        let mut model_names = Vec::new();
        for m in &config.models {
            let mut deployments = Vec::new();
            for d in &m.deployments {
                let provider = providers.get(&d.provider).cloned().ok_or_else(|| {
                    format!("models {}: no provider named \"{}\"", m.name, d.provider)
                })?;
                let cb = &config.resilience.circuit_breaker;
                let state = clients
                    .states
                    .entry((d.provider.clone(), d.model.clone()))
                    .or_insert_with(|| {
                        Arc::new(DeploymentState::new(
                            cb.failure_threshold,
                            cb.open_for.get(),
                        ))
                    })
                    .clone();
                let urls = [
                    provider.parsed_url(Op::Chat, &d.model),
                    provider.parsed_url(Op::Embeddings, &d.model),
                ];
                let headers = DeploymentHeaders {
                    provider: http::HeaderValue::from_str(&provider.name).ok(),
                    model: http::HeaderValue::from_str(&d.model).ok(),
                };
                deployments.push(Arc::new(Deployment {
                    urls,
                    headers,
                    provider,
                    rpm: d.rpm,
                    tpm: d.tpm,
                    state,
                    model: d.model.clone(),
                    input_cost_per_mtok: d.input_cost_per_mtok,
                    output_cost_per_mtok: d.output_cost_per_mtok,
                    weight: d.weight,
                    priority: d.priority,
                }));
            }
            deployments.sort_by_key(|d| d.priority);
            model_names.push(m.name.clone());
            models.insert(
                m.name.clone(),
                Arc::new(Model {
                    name: m.name.clone(),
                    routing: m.routing,
                    deployments,
                    fallbacks: m.fallbacks.clone(),
                    retries: m.retries.unwrap_or(config.resilience.retries),
                    timeout: m.timeout.map(|t| t.get()),
                    cache: m.cache,
                }),
            );
        }
        let auth = Auth::from_config(config.auth.as_ref())?;
        let guardrails = crate::guardrails::Guardrails::build(&config, |name| {
            auth.static_keys()
                .find(|k| k.name == name)
                .map(|k| k.id.clone())
        })?;
        Ok(Self {
            guardrails,
            config,
            providers,
            models,
            model_names,
            auth,
            loaded_at: crate::providers::now_unix(),
        })
    }
}
