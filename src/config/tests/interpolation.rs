//! Interpolation through the loader.

use super::*;

#[test]
fn interpolation_set_default_empty_escape() {
    let env = env_of(&[("NAME", "svc"), ("EMPTY", "")]);
    let get = |v: &str| {
        load_str(&format!("telemetry:\n  service_name: {v}\n"), &env)
            .map(|c| c.telemetry.service_name)
    };
    assert_eq!(get("\"${NAME}\"").unwrap(), "svc");
    assert_eq!(get("${NAME}").unwrap(), "svc");
    assert_eq!(get("'pre-${NAME}-post'").unwrap(), "pre-svc-post");
    assert_eq!(get("${UNSET:-fallback}").unwrap(), "fallback");
    assert_eq!(get("\"${UNSET:-}\"").unwrap(), "");
    assert_eq!(get("\"${EMPTY}\"").unwrap(), "");
    assert_eq!(get("\"${EMPTY:-d}\"").unwrap(), "d");
    assert_eq!(get("\"$${NAME}\"").unwrap(), "${NAME}");
    assert_eq!(get("\"cost: $5\"").unwrap(), "cost: $5");
    let e = get("\"x${UNSET}\"").unwrap_err();
    assert_eq!(
        e.to_string(),
        "telemetry.service_name: environment variable \"UNSET\" is not set (line 2); set UNSET, or give a default: ${UNSET:-default}"
    );
}

#[test]
fn interpolated_values_never_become_structure() {
    let evil = "x\nserver:\n  listen: \"0.0.0.0:1\"\n- [a, {b: c}] # &anchor *alias";
    let env = env_of(&[("EVIL", evil), ("NUL", "null"), ("NUM", "12")]);
    let cfg = load_str(
        "telemetry:\n  service_name: ${EVIL}\nproviders:\n  - name: ${NUM}\n    type: mock\n    api_key: ${NUL}\n",
        &env,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.telemetry.service_name, evil);
    assert_eq!(cfg.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(cfg.providers[0].name, "12");
    assert_eq!(cfg.providers[0].api_key.as_deref(), Some("null"));
}

#[test]
fn interpolated_numbers_and_bools_parse() {
    let env = env_of(&[("W", "16"), ("B", "false"), ("T", "45s"), ("BAD", "lots")]);
    let cfg = load_str(
        "jobs:\n  workers: ${W}\n  max_attempts: ${MA:-4}\ncache:\n  enabled: ${B}\n  ttl: ${T}\n",
        &env,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((cfg.jobs.workers, cfg.jobs.max_attempts), (16, 4));
    assert!(!cfg.cache.enabled);
    assert_eq!(cfg.cache.ttl, Dur::secs(45));
    let cfg = load_str(
        "models:\n  - name: m\n    retries: ${R:-}\n    deployments: []\n",
        &env,
    );
    // an empty value for an optional number is absent (the model then fails validation only
    // for having no deployments)
    assert_eq!(cfg.unwrap_err().0[0].path, "models[0].deployments");
    let e = load_str("jobs:\n  workers: ${BAD}\n", &env).unwrap_err();
    assert_eq!(e.0[0].path, "jobs.workers");
    assert_eq!(e.0[0].line, Some(2));
}

#[test]
fn keys_are_not_interpolated() {
    let e = one_err("server:\n  ${X}: 1\n");
    assert_eq!(e.path, "server.${X}");
    assert_eq!(e.message, "unknown key \"${X}\"");
}

proptest! {
    #[test]
    fn env_strings_round_trip(value in any::<String>()) {
        let env = |k: &str| (k == "V").then(|| value.clone());
        let cfg = load_str("telemetry:\n  service_name: \"${V}\"\n", &env)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&cfg.telemetry.service_name, &value);
        let cfg = load_str("telemetry:\n  service_name: ${V}\n", &env)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&cfg.telemetry.service_name, &value);
        let cfg = load_str("providers:\n  - {name: p, type: openai, api_key: '${V}'}\n", &env)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let want = (!value.is_empty()).then(|| value.clone());
        prop_assert_eq!(&cfg.providers[0].api_key, &want);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "[a-z_:\\-\\[\\]{}&*!|>'\" \n0-9.$]{0,80}") {
        let _ = load(&text);
    }
}
