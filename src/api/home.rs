//! `GET /`: what a person sees who opens the gateway in a browser. A small HTML page: what this
//! is, the models (only when the gateway serves without keys: then `/v1/models` shows them to
//! anyone too), a curl to copy, how to turn the admin API and console on. With a master key and
//! the console compiled in, a redirect to the console instead.
//!
//! Also the "ready" line's curl ([`first_curl`]), so the page and the log suggest the same call.

use std::fmt::Write as _;
use std::net::SocketAddr;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::api::context::SharedState;

/// Where the web console is served, when this build has it (the `console` feature).
pub const CONSOLE_PATH: Option<&str> = if cfg!(feature = "console") {
    Some("/ui/")
} else {
    None
};

/// The model a first call should name: the first configured one that is neither a wildcard nor
/// an embeddings model (the curl is a chat call), else the first.
pub fn first_chat_model<'a>(names: impl IntoIterator<Item = &'a str> + Clone) -> Option<&'a str> {
    names
        .clone()
        .into_iter()
        .find(|n| !n.contains('*') && !n.contains("embedding"))
        .or_else(|| names.into_iter().next())
}

/// A copy-paste curl of a chat call to `model` at `base` (`http://127.0.0.1:8080`); with
/// `needs_key` it sends `$AI_GATEWAY_KEY`.
pub fn first_curl(base: &str, model: &str, needs_key: bool) -> String {
    let key = if needs_key {
        " -H \"authorization: Bearer $AI_GATEWAY_KEY\""
    } else {
        ""
    };
    // A model name is a YAML string: keep the shell's single quotes and the JSON intact.
    let model = model.replace(['\'', '"', '\\'], "");
    format!(
        "curl -s {base}/v1/chat/completions -H 'content-type: application/json'{key} -d '{{\"model\":\"{model}\",\"messages\":[{{\"role\":\"user\",\"content\":\"hello\"}}]}}'"
    )
}

/// The base URL a local client reaches a gateway listening on `listen` at: an unspecified
/// address (`0.0.0.0`, `[::]`) through the loopback of its family.
pub fn local_base(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, listen.port()))
}

pub async fn page(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    let rt = state.runtime.load();
    if rt.auth.has_master_key()
        && let Some(console) = CONSOLE_PATH
    {
        return (StatusCode::FOUND, [(header::LOCATION, console)]).into_response();
    }
    // The address the browser used, when it is a plain host[:port].
    let base = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .map_or_else(
            || local_base(rt.config.server.listen),
            |h| format!("http://{h}"),
        );
    let open = !rt.auth.enabled();
    let names = rt.model_names.iter().map(String::as_str);
    let model = first_chat_model(names.clone()).unwrap_or("mock");
    let html = render(
        &base,
        open.then_some(names),
        model,
        rt.auth.has_master_key(),
    );
    drop(rt);
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

/// `models`: listed when the gateway serves without keys (`None`: it needs one, and the curl
/// sends it).
fn render<'a>(
    base: &str,
    models: Option<impl Iterator<Item = &'a str>>,
    model: &str,
    master_key: bool,
) -> String {
    let mut h = String::with_capacity(4096);
    h.push_str(concat!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        "<title>ai-gateway</title><style>",
        "body{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#222}",
        "pre{background:#f4f4f4;padding:.75rem;overflow-x:auto;white-space:pre-wrap;word-break:break-all}",
        "code{background:#f4f4f4;padding:0 .2rem}h2{margin-top:1.5rem;font-size:1.1rem}",
        "</style></head><body>\n<h1>ai-gateway</h1>\n",
    ));
    let _ = writeln!(
        h,
        "<p>An OpenAI- and Anthropic-compatible AI gateway (version {}). Point an OpenAI SDK at \
         <code>{}/v1</code> or an Anthropic SDK at <code>{}</code>; the gateway routes each \
         request to the providers of its configuration.</p>",
        env!("CARGO_PKG_VERSION"),
        esc(base),
        esc(base)
    );
    h.push_str("<h2>Models</h2>\n");
    let listed = models.is_some();
    match models {
        Some(models) => {
            h.push_str("<ul>\n");
            for m in models {
                let _ = writeln!(h, "<li><code>{}</code></li>", esc(m));
            }
            h.push_str("</ul>\n");
        }
        None => h.push_str(
            "<p>This gateway needs a key: <code>GET /v1/models</code> with yours lists the \
             models it may use.</p>\n",
        ),
    }
    h.push_str("<h2>Try it</h2>\n");
    let _ = writeln!(h, "<pre>{}</pre>", esc(&first_curl(base, model, !listed)));
    h.push_str("<h2>Admin API and console</h2>\n");
    if master_key {
        h.push_str(
            "<p>A master key is set: the admin API (<code>/admin/keys</code>, \
             <code>/admin/deployments</code>) answers to it; create keys with \
             <code>POST /admin/keys</code>.</p>\n",
        );
    } else {
        h.push_str(
            "<p>Off. Set a master key to turn on the admin API (keys, limits, budgets) and the \
             web console where this build has it: <code>GATEWAY_MASTER_KEY=…</code> in the \
             environment when running without a configuration file, or \
             <code>auth.master_key</code> in it.</p>\n",
        );
    }
    h.push_str(
        "<p><a href=\"/health\">/health</a> · <a href=\"/ready\">/ready</a> · \
         <a href=\"/metrics\">/metrics</a> · <a href=\"/v1/models\">/v1/models</a></p>\n\
         </body></html>\n",
    );
    h
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_model_skips_wildcards_and_embeddings() {
        let names = ["openai/*", "text-embedding-3-small", "gpt-4o-mini"];
        assert_eq!(first_chat_model(names), Some("gpt-4o-mini"));
        assert_eq!(first_chat_model(["openai/*"]), Some("openai/*"));
        assert_eq!(first_chat_model([] as [&str; 0]), None);
    }

    #[test]
    fn curl_is_shell_and_json_safe() {
        let c = first_curl("http://127.0.0.1:8080", "we'ird\"", true);
        assert!(c.contains("\"model\":\"weird\""), "{c}");
        assert!(c.contains("Bearer $AI_GATEWAY_KEY"), "{c}");
        assert!(!first_curl("http://h", "m", false).contains("authorization"));
    }

    #[test]
    fn local_base_uses_loopback_for_any_address() {
        assert_eq!(
            local_base("0.0.0.0:8080".parse().unwrap()),
            "http://127.0.0.1:8080"
        );
        assert_eq!(local_base("[::]:1".parse().unwrap()), "http://[::1]:1");
    }

    #[test]
    fn page_escapes_model_names() {
        let html = render(
            "http://h:1",
            Some(["<script>x</script>"].into_iter()),
            "m",
            false,
        );
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
    }
}
