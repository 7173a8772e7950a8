//! `ai-gateway healthcheck [--url URL]`: one plain HTTP/1.1 `GET` of the gateway's `/health`,
//! exit 0 on a 2xx answer and 1 otherwise. For container health checks in an image with no shell
//! and no curl (distroless); blocking std networking, no runtime, no TLS.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Connect, write and read each within this.
const TIMEOUT: Duration = Duration::from_secs(3);

/// The URL a gateway listening on `listen` answers its health on: an unspecified address
/// (`0.0.0.0`, `[::]`) is reached through the loopback of its family.
pub fn url_for(listen: SocketAddr) -> String {
    format!("{}/health", ai_gateway::api::home::local_base(listen))
}

/// GETs `url` (http:// only) and returns the status line's code, or why there is none.
pub fn check(url: &str) -> Result<u16, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
    if parsed.scheme() != "http" {
        return Err(format!(
            "{url}: only http:// URLs (the check runs beside the gateway)"
        ));
    }
    let host = parsed.host_str().ok_or_else(|| format!("{url}: no host"))?;
    let port = parsed.port_or_known_default().unwrap_or(80);
    let addrs: Vec<SocketAddr> = (host.trim_matches(['[', ']']), port)
        .to_socket_addrs()
        .map_err(|e| format!("{host}: {e}"))?
        .collect();
    let mut last = format!("{host}: no address");
    let mut stream = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("{a}: {e}"),
        }
    }
    let mut stream = stream.ok_or(last)?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let path = match parsed.query() {
        Some(q) => format!("{}?{q}", parsed.path()),
        None => parsed.path().to_owned(),
    };
    let authority = match parsed.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: {authority}\r\nuser-agent: ai-gateway-healthcheck\r\nconnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("{url}: {e}"))?;
    // The status line is all that is read: `HTTP/1.1 200 OK`.
    let mut head = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        match stream.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(format!("{url}: {e}")),
        }
    }
    status_of(&head[..got]).ok_or_else(|| format!("{url}: not an HTTP answer"))
}

fn status_of(head: &[u8]) -> Option<u16> {
    let rest = head.strip_prefix(b"HTTP/1.")?.get(2..5)?;
    std::str::from_utf8(rest).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_listen_is_checked_on_loopback() {
        assert_eq!(
            url_for("0.0.0.0:8080".parse().unwrap()),
            "http://127.0.0.1:8080/health"
        );
        assert_eq!(
            url_for("[::]:9000".parse().unwrap()),
            "http://[::1]:9000/health"
        );
        assert_eq!(
            url_for("10.1.2.3:80".parse().unwrap()),
            "http://10.1.2.3:80/health"
        );
    }

    #[test]
    fn status_line() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(status_of(b"HTTP/1.0 503 Service"), Some(503));
        assert_eq!(status_of(b"SSH-2.0-OpenSSH"), None);
        assert_eq!(status_of(b"HTTP/1.1 2"), None);
    }

    #[test]
    fn https_is_refused() {
        let e = check("https://127.0.0.1:1/health").unwrap_err();
        assert!(e.contains("only http://"), "{e}");
    }
}
