//! Configuration reload (SIGHUP and `POST /admin/reload`): what applies live, and what is told
//! to need a restart.
//!
//! The file is read and validated whole; an invalid one is refused and nothing changes. Most keys
//! are read from the running configuration on each use and apply as soon as it is swapped in
//! (models, providers, keys, cache policy, limits per key and model, timeouts…). These need an
//! action, taken here:
//! - `telemetry.log_level`: the log filter is swapped (unless `RUST_LOG` is set, which wins);
//! - `rate_limits.shared`, `rate_limits.on_redis_error`: the limiter's mode;
//! - `jobs.workers`: this process's job slots (fewer: as running jobs finish);
//! - `server.max_connections`: the accept loop's slots (fewer: as connections close);
//!   `server.header_read_timeout` / `idle_timeout` apply to connections accepted from then on,
//!   `server.shutdown_grace` to the next drain.
//!
//! The keys read only at start ([`pin_restart_only`]) keep their running values: those are put
//! back in the swapped-in configuration, so it always says what is in effect, and every such key
//! whose file value differs is reported (`restart_required` in the answer, one WARN line).

use std::sync::Arc;

use crate::api::context::AppState;
use crate::config::{self, Config};
use crate::runtime::Runtime;

/// Keys read only at start: compared between the file and what runs; a changed one is reported
/// and its running value kept.
macro_rules! restart_only {
    ($($key:literal => $($field:ident).+;)*) => {
        /// Put the running values of the restart-only keys into `new`; the keys that differed.
        pub fn pin_restart_only(new: &mut Config, running: &Config) -> Vec<&'static str> {
            let mut changed = Vec::new();
            $(
                if new.$($field).+ != running.$($field).+ {
                    new.$($field).+ = running.$($field).+.clone();
                    changed.push($key);
                }
            )*
            // The NATS bucket keeps results for the `result_ttl` it was made with.
            if running.state.nats_url.is_some() && new.jobs.result_ttl != running.jobs.result_ttl {
                new.jobs.result_ttl = running.jobs.result_ttl;
                changed.push("jobs.result_ttl");
            }
            changed
        }
    };
}

restart_only! {
    "server.listen" => server.listen;
    "state.redis_url" => state.redis_url;
    "state.redis_cluster_urls" => state.redis_cluster_urls;
    "state.redis_sentinel" => state.redis_sentinel;
    "state.redis_tls" => state.redis_tls;
    "state.nats_url" => state.nats_url;
    "state.nats_credentials_file" => state.nats_credentials_file;
    "state.nats_tls" => state.nats_tls;
    "state.jetstream_replicas" => state.jetstream_replicas;
    "state.data_dir" => state.data_dir;
    "cache.l1_max_entries" => cache.l1_max_entries;
    "cache.l1_max_bytes" => cache.l1_max_bytes;
    "cache.l2" => cache.l2;
    "cache.semantic.enabled" => cache.semantic.enabled;
    "cache.semantic.max_entries" => cache.semantic.max_entries;
    "jobs.webhook.secret" => jobs.webhook.secret;
    "telemetry.log_format" => telemetry.log_format;
    "telemetry.otlp_endpoint" => telemetry.otlp_endpoint;
    "telemetry.service_name" => telemetry.service_name;
    "request_log.enabled" => request_log.enabled;
    "request_log.max_entries" => request_log.max_entries;
    "request_log.usage_retention" => request_log.usage_retention;
}

/// Re-read the configuration file and swap it in (refused when a file key takes the name of a
/// live admin-made key in `admin_names`). On success, the keys that changed but need a restart
/// (empty when none); on error the running configuration stays and the errors are returned.
pub fn reload(
    state: &AppState,
    admin_names: &std::collections::HashMap<String, String>,
) -> Result<Vec<&'static str>, Vec<String>> {
    let Some(path) = &state.config_path else {
        return Err(vec![
            "the gateway runs on its built-in default configuration; there is no file to reload"
                .to_owned(),
        ]);
    };
    let env = |k: &str| std::env::var(k).ok();
    let mut cfg = config::load_file(path, &env)
        .map_err(|e| e.0.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    let clashes = crate::keys::file_clashes(cfg.auth.as_ref(), admin_names);
    if !clashes.is_empty() {
        return Err(clashes);
    }
    let old = state.runtime.load_full();
    let restart_required = pin_restart_only(&mut cfg, &old.config);
    let rt = {
        let mut clients = state
            .clients
            .lock()
            .map_err(|_| vec!["internal: client pool lock poisoned".to_owned()])?;
        Runtime::build(cfg, &mut clients).map_err(|e| vec![e])?
    };
    let rt = Arc::new(rt);
    state.runtime.store(rt.clone());
    apply_live(state, &old.config, &rt.config);
    if restart_required.is_empty() {
        tracing::info!(path = %path.display(), "configuration reloaded");
    } else {
        tracing::warn!(
            path = %path.display(),
            restart_required = %restart_required.join(", "),
            "configuration reloaded; these changed keys are read only at start and keep their running values until a restart"
        );
    }
    Ok(restart_required)
}

/// The actions some live keys need.
fn apply_live(state: &AppState, old: &Config, new: &Config) {
    if new.telemetry.log_level != old.telemetry.log_level {
        match crate::telemetry::set_log_level(&new.telemetry.log_level) {
            Ok(crate::telemetry::LogLevelChange::Applied) => {
                tracing::info!(level = %new.telemetry.log_level, "log level changed");
            }
            Ok(crate::telemetry::LogLevelChange::OverriddenByEnv) => tracing::info!(
                "telemetry.log_level changed, but RUST_LOG is set and sets the log level"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot change the log level"),
        }
    }
    let (o, n) = (&old.rate_limits, &new.rate_limits);
    if n.shared != o.shared || n.on_redis_error != o.on_redis_error {
        state.services.ledger.limiter.set_mode(n);
    }
    if new.jobs.workers != old.jobs.workers {
        state
            .job_slots
            .resize(usize::try_from(new.jobs.workers).unwrap_or(usize::MAX));
    }
    if new.server.max_connections != old.server.max_connections {
        state
            .connections
            .slots
            .resize(usize::try_from(new.server.max_connections).unwrap_or(usize::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Config {
        config::load_str(text, &|_| None).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn restart_only_keys_are_reported_and_keep_their_running_values() {
        let running = load("server:\n  listen: \"127.0.0.1:8080\"\ncache:\n  l1_max_entries: 10\n");
        let mut new = load(
            "server:\n  listen: \"127.0.0.1:9090\"\n  idle_timeout: 5s\nstate:\n  redis_url: \"redis://127.0.0.1:6390\"\ncache:\n  l1_max_entries: 20\n  ttl: 5m\ntelemetry:\n  log_level: debug\n",
        );
        let changed = pin_restart_only(&mut new, &running);
        assert_eq!(
            changed,
            ["server.listen", "state.redis_url", "cache.l1_max_entries"]
        );
        assert_eq!(new.server.listen, running.server.listen);
        assert_eq!(new.state.redis_url, None);
        assert_eq!(new.cache.l1_max_entries, 10);
        // Live keys keep the file's value.
        assert_eq!(new.server.idle_timeout, config::Dur::secs(5));
        assert_eq!(new.cache.ttl, config::Dur::secs(300));
        assert_eq!(new.telemetry.log_level, "debug");
        // Nothing changed: nothing reported.
        let mut same = running.clone();
        assert!(pin_restart_only(&mut same, &running).is_empty());
    }

    #[test]
    fn result_ttl_needs_a_restart_only_with_nats() {
        let running = load("jobs:\n  result_ttl: 1d\n");
        let mut new = load("jobs:\n  result_ttl: 2d\n");
        assert!(pin_restart_only(&mut new, &running).is_empty());
        let running =
            load("state:\n  nats_url: \"nats://127.0.0.1:4222\"\njobs:\n  result_ttl: 1d\n");
        let mut new =
            load("state:\n  nats_url: \"nats://127.0.0.1:4222\"\njobs:\n  result_ttl: 2d\n");
        assert_eq!(pin_restart_only(&mut new, &running), ["jobs.result_ttl"]);
        assert_eq!(new.jobs.result_ttl, config::Dur::secs(86_400));
    }
}
