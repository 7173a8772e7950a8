//! The running configuration: providers with their HTTP clients, models with their deployments,
//! and the key table, built from a validated `Config`. The app holds it in an `ArcSwap`, so a reload
//! swaps it whole while in-flight requests finish on the one they started with.

pub mod breaker;
pub mod health;
pub mod policy;
pub mod sketch;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use self::health::DeploymentState;
use crate::auth::Auth;
use crate::config::{Config, RoutingStrategy};
use crate::providers::http::Http;
use crate::providers::{Op, Provider, http_client};

/// One way to serve a model: a provider and its upstream model name.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub provider: Arc<Provider>,
    pub model: String,
    pub input_cost_per_mtok: Option<f64>,
    pub output_cost_per_mtok: Option<f64>,
    /// Input tokens read from the prompt cache: the built-in list's price, for a deployment
    /// priced by the list (`None`: at the input price).
    pub cached_input_cost_per_mtok: Option<f64>,
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
    pub provider: Option<crate::record::Name>,
    pub model: Option<crate::record::Name>,
}

impl Deployment {
    /// The prices an answer's usage is costed at.
    pub fn prices(&self) -> crate::usage::Prices {
        crate::usage::Prices {
            input: self.input_cost_per_mtok,
            output: self.output_cost_per_mtok,
            cached_input: self.cached_input_cost_per_mtok,
        }
    }

    pub fn url(&self, op: Op) -> Option<&http::Uri> {
        match op {
            Op::Chat => self.urls[0].as_ref(),
            Op::Embeddings => self.urls[1].as_ref(),
            _ => None,
        }
    }
}

/// A model name clients can ask for.
#[derive(Debug)]
pub struct Model {
    /// Shared: it is the label of every request for the model.
    pub name: Arc<str>,
    pub routing: RoutingStrategy,
    /// In routing order for `priority` (lowest `priority` first, then file order).
    pub deployments: Vec<Arc<Deployment>>,
    pub fallbacks: Vec<String>,
    pub retries: u32,
    pub timeout: Option<Duration>,
    /// `cache:` of the model (overrides `cache.enabled`).
    pub cache: Option<bool>,
    /// `hedge:` of the model.
    pub hedge: Option<self::policy::Hedge>,
    /// `shadow:` of the model.
    pub shadow: Option<self::policy::Shadow>,
}

/// A wildcard model: names starting with `prefix` (`openai/`) are served by `template`, whose
/// deployments' `*` becomes the rest of the name.
struct Wildcard {
    prefix: String,
    template: Arc<Model>,
}

/// A deployment's prices: its own when it gives any (cached input tokens then cost its input
/// price), else the built-in list's (with the list's cached-input price where it has one).
fn priced(
    p: &Provider,
    model: &str,
    input: Option<f64>,
    output: Option<f64>,
) -> crate::usage::Prices {
    if input.is_some() || output.is_some() {
        return crate::usage::Prices {
            input,
            output,
            cached_input: None,
        };
    }
    crate::providers::prices::lookup(p.provider_type(), model).map_or_else(
        crate::usage::Prices::default,
        |pr| crate::usage::Prices {
            input: Some(pr.input),
            output: Some(pr.output),
            cached_input: pr.cached_input,
        },
    )
}

/// How many names made by wildcards are kept ready.
const WILD_MODELS: u64 = 4096;

/// Whether the part of a name after a wildcard's prefix may become an upstream model: it goes
/// into upstream URLs (Gemini, Bedrock, Azure), so only the characters model names use, and
/// no `..` segment.
fn upstream_name_ok(rest: &str) -> bool {
    !rest.is_empty()
        && rest.len() <= 256
        && !rest.starts_with('/')
        && rest.split('/').all(|seg| seg != ".." && seg != ".")
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:/@+".contains(&b))
}

/// What survives a reload: HTTP clients (one per provider name and connect timeout) and each
/// deployment's run-time state (per provider and upstream model).
#[derive(Default)]
pub struct ClientPool {
    /// By provider name, connect timeout, base URL and `http2`.
    clients: HashMap<(String, Duration, String, bool), Http>,
    states: HashMap<(String, String), Arc<DeploymentState>>,
    /// Hedging's latency sketches, by model and percentile.
    sketches: self::policy::Sketches,
}

pub struct Runtime {
    pub config: Config,
    pub providers: HashMap<String, Arc<Provider>>,
    /// By name. FxHash: the names come from the configuration and a request only looks up.
    /// Wildcard models (`NAME/*`) are not here: look names up with [`Runtime::model`].
    pub models: rustc_hash::FxHashMap<String, Arc<Model>>,
    /// Model names in file order, for `/v1/models` (wildcards as written, `openai/*`).
    pub model_names: Vec<String>,
    /// Wildcard models, longest prefix first.
    wildcards: Vec<Wildcard>,
    /// Models made for names a wildcard served, by name (bounded; made again after eviction).
    wild_models: moka::sync::Cache<String, Arc<Model>>,
    pub auth: Auth,
    /// Unix time the configuration was loaded (the `created` of `/v1/models`).
    pub loaded_at: u64,
    /// The compiled `guardrails:`; `None` when there are none (nothing is looked at).
    pub guardrails: Option<crate::guardrails::Guardrails>,
}

impl Runtime {
    /// The model serving `name`: a configured name, else the longest wildcard prefix of it
    /// (`openai/gpt-4.1` by `openai/*`, upstream model `gpt-4.1`). An exact name wins.
    pub fn model(&self, name: &str) -> Option<Arc<Model>> {
        if let Some(m) = self.models.get(name) {
            return Some(m.clone());
        }
        let w = self.wildcard_of(name)?;
        if let Some(m) = self.wild_models.get(name) {
            return Some(m);
        }
        let rest = &name[w.prefix.len()..];
        let t = &w.template;
        let deployments = t
            .deployments
            .iter()
            .map(|d| {
                let model = d.model.replace('*', rest);
                let prices = priced(
                    &d.provider,
                    &model,
                    d.input_cost_per_mtok,
                    d.output_cost_per_mtok,
                );
                Arc::new(Deployment {
                    input_cost_per_mtok: prices.input,
                    output_cost_per_mtok: prices.output,
                    cached_input_cost_per_mtok: prices.cached_input,
                    urls: [
                        d.provider.parsed_url(Op::Chat, &model),
                        d.provider.parsed_url(Op::Embeddings, &model),
                    ],
                    headers: DeploymentHeaders {
                        provider: d.headers.provider.clone(),
                        model: crate::record::Name::new(&model),
                    },
                    state: Arc::new(DeploymentState::new(
                        self.config.resilience.circuit_breaker.failure_threshold,
                        self.config.resilience.circuit_breaker.open_for.get(),
                    )),
                    model,
                    ..(**d).clone()
                })
            })
            .collect();
        let m = Arc::new(Model {
            // The wildcard's name (`openai/*`): the router's metrics and spans label with it, so
            // callers cannot make new label values.
            name: t.name.clone(),
            routing: t.routing,
            deployments,
            fallbacks: t.fallbacks.clone(),
            retries: t.retries,
            timeout: t.timeout,
            cache: t.cache,
            // Hedging and shadowing need a model's own latency sketch and sampling: configured
            // names only (docs/routing.md).
            hedge: None,
            shadow: None,
        });
        self.wild_models.insert(name.to_owned(), m.clone());
        Some(m)
    }

    /// Whether `name` is served (a configured name or one a wildcard takes).
    pub fn has_model(&self, name: &str) -> bool {
        self.models.contains_key(name) || self.wildcard_of(name).is_some()
    }

    /// The name metrics and logs label a request for `name` with: the name itself when it is
    /// configured, the wildcard's (`openai/*`) when a wildcard serves it, so clients cannot make
    /// new label values.
    pub fn model_label(&self, name: &str) -> Option<Arc<str>> {
        if let Some(m) = self.models.get(name) {
            return Some(m.name.clone());
        }
        self.wildcard_of(name).map(|w| w.template.name.clone())
    }

    fn wildcard_of(&self, name: &str) -> Option<&Wildcard> {
        self.wildcards.iter().find(|w| {
            name.len() > w.prefix.len()
                && name.starts_with(&w.prefix)
                && upstream_name_ok(&name[w.prefix.len()..])
        })
    }

    pub fn build(config: Config, clients: &mut ClientPool) -> Result<Self, String> {
        let mut providers = HashMap::new();
        for p in &config.providers {
            let ct = p.connect_timeout.get();
            let base = crate::providers::base_url_of(p);
            let key = (p.name.clone(), ct, base, p.http2);
            let client = match clients.clients.get(&key) {
                Some(c) => c.clone(),
                None => {
                    let c = http_client(ct, &key.2, p.http2)?;
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
        let mut wildcards = Vec::new();
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
                // A wildcard's deployment (`*` in its model) is a template: no URL of its own.
                let urls = if d.model.contains('*') {
                    [None, None]
                } else {
                    [
                        provider.parsed_url(Op::Chat, &d.model),
                        provider.parsed_url(Op::Embeddings, &d.model),
                    ]
                };
                let headers = DeploymentHeaders {
                    provider: crate::record::Name::new(&provider.name),
                    model: crate::record::Name::new(&d.model),
                };
                let prices = priced(
                    &provider,
                    &d.model,
                    d.input_cost_per_mtok,
                    d.output_cost_per_mtok,
                );
                deployments.push(Arc::new(Deployment {
                    urls,
                    headers,
                    provider,
                    rpm: d.rpm,
                    tpm: d.tpm,
                    state,
                    model: d.model.clone(),
                    input_cost_per_mtok: prices.input,
                    output_cost_per_mtok: prices.output,
                    cached_input_cost_per_mtok: prices.cached_input,
                    weight: d.weight,
                    priority: d.priority,
                }));
            }
            deployments.sort_by_key(|d| d.priority);
            model_names.push(m.name.clone());
            let model = Arc::new(Model {
                name: m.name.as_str().into(),
                routing: m.routing,
                deployments,
                fallbacks: m.fallbacks.clone(),
                retries: m.retries.unwrap_or(config.resilience.retries),
                timeout: m.timeout.map(|t| t.get()),
                cache: m.cache,
                hedge: m
                    .hedge
                    .as_ref()
                    .map(|h| self::policy::Hedge::new(h, &m.name, &mut clients.sketches)),
                shadow: m.shadow.as_ref().map(self::policy::Shadow::new),
            });
            match m.name.strip_suffix('*').filter(|p| p.ends_with('/')) {
                Some(prefix) => wildcards.push(Wildcard {
                    prefix: prefix.to_owned(),
                    template: model,
                }),
                None => {
                    models.insert(m.name.clone(), model);
                }
            }
        }
        wildcards.sort_by_key(|w| std::cmp::Reverse(w.prefix.len()));
        let auth = Auth::from_config(config.auth.as_ref())?;
        let guardrails = crate::guardrails::Guardrails::build(&config, |name| {
            auth.static_keys()
                .find(|k| &*k.name == name)
                .map(|k| k.id.clone())
        })?;
        Ok(Self {
            guardrails,
            config,
            providers,
            models,
            model_names,
            wildcards,
            wild_models: moka::sync::Cache::new(WILD_MODELS),
            auth,
            loaded_at: crate::clock::unix_secs(),
        })
    }

    /// Set the gauges read from the deployments at scrape time (circuit states), and make every
    /// configured model's token series exist from the first scrape.
    pub fn publish_gauges(&self) {
        let mut seen = std::collections::HashSet::new();
        for m in self.models.values() {
            for d in &m.deployments {
                if seen.insert((d.provider.name.as_str(), d.model.as_str())) {
                    let v = d.state.breaker.state() as u8;
                    metrics::gauge!(crate::metrics::CIRCUIT, "provider" => d.provider.name.clone(),
                        "deployment_model" => d.model.clone())
                    .set(f64::from(v));
                }
                // Token series of every configured model and provider exist from the first scrape.
                crate::metrics::tokens(&m.name, &d.provider.name, 0, 0);
            }
        }
    }
}
