use super::*;

#[test]
fn urls() {
    for ok in [
        "https://api.openai.com/v1",
        "http://localhost:11434/v1",
        "HTTPS://Example.com",
        "http://user:pw@host:8080/x?y#z",
        "http://[::1]:8000/v1",
        "http://10.0.0.1",
        "http://my_host.internal:1/",
    ] {
        assert_eq!(check_http_url(ok), Ok(()), "{ok}");
    }
    for bad in [
        "",
        "api.openai.com",
        "ftp://x",
        "https://",
        "https:///path",
        "http://host:0",
        "http://host:99999",
        "http://host:x",
        "http://host:",
        "http://ho st",
        "http://[::1",
        "http://exa$mple.com",
        "http://a:b:80",
    ] {
        assert!(check_http_url(bad).is_err(), "{bad}");
    }
}

#[test]
fn header_tokens() {
    assert!(is_header_token("X-Api-Key"));
    assert!(!is_header_token("X Api"));
    assert!(!is_header_token(""));
    assert!(!is_header_token("a:b"));
}
