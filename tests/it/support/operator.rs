//! NATS operator (decentralised JWT) mode for a test `nats-server`: an operator, an account with
//! JetStream, the system account JetStream needs, and users with their `.creds` files, all
//! generated and signed here with `nkeys`. The server trusts the operator and has the accounts
//! preloaded (`resolver: MEMORY`); see [`super::NatsServer::start_operator`].
//!
//! A JWT is `base64url(header).base64url(claims).base64url(ed25519 signature of the first two by
//! the issuer's nkey)`; the claims' shape is nats-io/jwt v2's (JetStream limits flattened into
//! `nats.limits`), as nats-server 2.9 reads them.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nkeys::KeyPair;
use serde_json::{Value, json};

pub struct Operator {
    operator: KeyPair,
    account: KeyPair,
    system: KeyPair,
}

/// A signed JWT: `sub` and `name` with `nats` claims, issued by `issuer`.
fn jwt(issuer: &KeyPair, sub: &str, name: &str, nats: Value) -> String {
    let iat = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = URL_SAFE_NO_PAD.encode(json!({"typ": "JWT", "alg": "ed25519-nkey"}).to_string());
    let claims = json!({
        "jti": format!("{sub}{iat}"),
        "iat": iat,
        "iss": issuer.public_key(),
        "sub": sub,
        "name": name,
        "nats": nats,
    });
    let body = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
    let sig = issuer.sign(body.as_bytes()).unwrap();
    format!("{body}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// The account limits: no limit, and JetStream (memory and disk) on when `jetstream`.
fn account_nats(jetstream: bool) -> Value {
    let mut limits = json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
        "wildcards": true, "conn": -1, "leaf": -1,
    });
    if jetstream {
        for k in ["mem_storage", "disk_storage", "streams", "consumer"] {
            limits[k] = json!(-1);
        }
    }
    json!({"limits": limits, "type": "account", "version": 2})
}

/// A `.creds` file's text: a user's JWT and its nkey seed.
fn creds(user_jwt: &str, seed: &str) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
    )
}

/// A user of `account`: its `.creds` text and its seed.
fn user_of(account: &KeyPair) -> (String, String) {
    let user = KeyPair::new_user();
    let seed = user.seed().unwrap();
    let nats = json!({
        "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
        "type": "user", "version": 2,
    });
    let token = jwt(account, &user.public_key(), "gateway", nats);
    (creds(&token, &seed), seed)
}

impl Operator {
    pub fn generate() -> Self {
        Self {
            operator: KeyPair::new_operator(),
            account: KeyPair::new_account(),
            system: KeyPair::new_account(),
        }
    }

    /// The server configuration's trust section: the operator, the system account and both
    /// accounts preloaded.
    pub fn server_config(&self) -> String {
        let op = &self.operator;
        let operator = jwt(
            op,
            &op.public_key(),
            "test-operator",
            json!({"type": "operator", "version": 2, "system_account": self.system.public_key()}),
        );
        let account = jwt(op, &self.account.public_key(), "gw", account_nats(true));
        let system = jwt(op, &self.system.public_key(), "SYS", account_nats(false));
        format!(
            "operator: {operator}\nsystem_account: {sys}\nresolver: MEMORY\n\
             resolver_preload: {{\n  {acc}: {account}\n  {sys}: {system}\n}}\n",
            acc = self.account.public_key(),
            sys = self.system.public_key(),
        )
    }

    /// A new user of the account with JetStream: its `.creds` text and its seed.
    pub fn user_creds(&self) -> (String, String) {
        user_of(&self.account)
    }

    /// A user signed by an account this server does not know: its `.creds` text and its seed.
    pub fn stranger_creds() -> (String, String) {
        user_of(&KeyPair::new_account())
    }
}
