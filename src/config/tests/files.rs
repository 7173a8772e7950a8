//! Files and paths (and the did-you-mean helper, CORS origins and the responses TTL).

use super::*;

#[test]
fn load_file_ok_and_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.yaml");
    std::fs::write(&path, "server:\n  listen: \"0.0.0.0:9000\"\n").unwrap();
    let cfg = load_file(&path, &no_env).unwrap();
    assert_eq!(cfg.server.listen.to_string(), "0.0.0.0:9000");

    let missing = dir.path().join("nope.yaml");
    let e = load_file(&missing, &no_env).unwrap_err();
    assert_eq!(e.0.len(), 1);
    assert_eq!(e.0[0].path, "");
    assert_eq!(e.0[0].line, None);
    assert!(e.0[0].message.starts_with("cannot read "), "{e}");
}

#[test]
fn resolve_path_order() {
    let env = env_of(&[("AI_GATEWAY_CONFIG", "/etc/gw.yaml")]);
    assert_eq!(
        resolve_path(Some(Path::new("cli.yaml")), &env),
        Some("cli.yaml".into())
    );
    assert_eq!(resolve_path(None, &env), Some("/etc/gw.yaml".into()));
    let local = Path::new("gateway.yaml");
    assert_eq!(
        resolve_path(None, &no_env),
        local.is_file().then(|| local.to_path_buf())
    );
    assert_eq!(
        resolve_path(None, &env_of(&[("AI_GATEWAY_CONFIG", "")])),
        local.is_file().then(|| local.to_path_buf())
    );
}

#[test]
fn did_you_mean_helper() {
    assert_eq!(
        suggest("opnai", ["openai", "anthropic", "local"]),
        Some("openai".into())
    );
    assert_eq!(suggest("OpenAI", ["openai"]), Some("openai".into()));
    assert_eq!(suggest("zzz", ["openai", "anthropic"]), None);
    assert_eq!(suggest("x", std::iter::empty()), None);
}

#[test]
fn cors_origins_and_responses_ttl() {
    let cfg = load(
        "server:\n  cors_allowed_origins: [\"https://app.example.com\", \"http://localhost:5173\"]\nresponses:\n  store_ttl: 1d\n",
    )
    .unwrap();
    assert_eq!(cfg.server.cors_allowed_origins.len(), 2);
    assert_eq!(cfg.responses.store_ttl, Dur::secs(86_400));
    assert_eq!(
        load("{}\n").unwrap().responses.store_ttl,
        Dur::secs(30 * 86_400)
    );
    let e = one_err("server:\n  cors_allowed_origins: [\"app.example.com/x\"]\n");
    assert_eq!(e.path, "server.cors_allowed_origins[0]");
    let e = one_err("responses:\n  store_ttl: 0s\n");
    assert_eq!(e.path, "responses.store_ttl");
}
