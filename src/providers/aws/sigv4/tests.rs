use std::time::{Duration, UNIX_EPOCH};

use super::*;

fn header<'a>(signed: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
    signed
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// AWS's documented `get-vanilla` example from the Signature Version 4 test suite:
/// `GET /` to `example.amazonaws.com`, service `service`, region `us-east-1`, at
/// 2015-08-30T12:36:00Z, with the documentation's example key pair.
#[test]
fn aws_get_vanilla_test_vector() {
    let signer = SigV4::new(
        "service",
        "us-east-1",
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        None,
    );
    let time = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
    let signed = signer
        .sign("GET", "https://example.amazonaws.com/", &[], b"", time)
        .expect("signs");
    assert_eq!(header(&signed, "x-amz-date"), Some("20150830T123600Z"));
    assert_eq!(
        header(&signed, "authorization"),
        Some(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        )
    );
    assert_eq!(header(&signed, "x-amz-security-token"), None);
}

/// A Bedrock Converse request with temporary credentials, signed by Python's `botocore`
/// (`SigV4Auth`, service `bedrock`) with the clock fixed: `tests/sdk/sigv4_vector.py`
/// printed the expected `Authorization` header below. The model id's `:` is
/// percent-encoded in the URL and encoded again in the canonical request, as botocore does.
#[test]
fn botocore_bedrock_converse_vector() {
    let signer = SigV4::bedrock(
        "us-east-1",
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        Some("IQoJb3JpZ2luX2VjEXAMPLETOKEN//////////wEaCXVzLWVhc3QtMSJHMEUCIQ=="),
    );
    let time = UNIX_EPOCH + Duration::from_secs(1_767_225_600); // 2026-01-01T00:00:00Z
    let url = "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse";
    let body = br#"{"messages":[{"role":"user","content":[{"text":"Hello"}]}],"inferenceConfig":{"maxTokens":256}}"#;
    let signed = signer
        .sign(
            "POST",
            url,
            &[("content-type", "application/json")],
            body,
            time,
        )
        .expect("signs");
    assert_eq!(header(&signed, "x-amz-date"), Some("20260101T000000Z"));
    assert_eq!(
        header(&signed, "x-amz-security-token"),
        Some("IQoJb3JpZ2luX2VjEXAMPLETOKEN//////////wEaCXVzLWVhc3QtMSJHMEUCIQ==")
    );
    assert_eq!(
        header(&signed, "authorization"),
        Some(BOTOCORE_AUTHORIZATION)
    );
}

const BOTOCORE_AUTHORIZATION: &str = "AWS4-HMAC-SHA256 \
    Credential=AKIAIOSFODNN7EXAMPLE/20260101/us-east-1/bedrock/aws4_request, \
    SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, \
    Signature=9da4f1695673dc9b022fcf3eec1be1414161dae1a2eeef63dcf961afe5d14ed7";

#[test]
fn bad_urls_are_errors_not_panics() {
    let signer = SigV4::bedrock("us-east-1", "AKID", "secret", Some(""));
    for url in ["/model/x/converse", "not a url", "https:///x"] {
        assert!(
            signer.sign("POST", url, &[], b"", UNIX_EPOCH).is_err(),
            "{url}"
        );
    }
    assert!(
        signer
            .sign(
                "POST",
                "https://h.test/",
                &[("x-bad", "a\nb")],
                b"",
                UNIX_EPOCH
            )
            .is_err()
    );
    assert!(!format!("{signer:?}").contains("secret"));
}

const AKID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
/// 2015-08-30T12:36:00Z, the test suite's clock.
const SUITE_TIME: u64 = 1_440_938_160;

/// The `Signature=` of a request signed as AWS's test suite does (service `service`,
/// `us-east-1`, the example key pair).
fn suite_signature(
    token: Option<&str>,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> String {
    let signer = SigV4::new("service", "us-east-1", AKID, SECRET, token);
    let time = UNIX_EPOCH + Duration::from_secs(SUITE_TIME);
    let signed = signer
        .sign(method, url, headers, body, time)
        .expect("signs");
    let auth = header(&signed, "authorization").expect("authorization");
    auth.rsplit_once("Signature=")
        .expect("a signature")
        .1
        .to_owned()
}

/// Vectors from AWS's Signature Version 4 test suite (`aws-signing-test-suite/v4/*/
/// header-signature.txt`, as shipped with `aws-sigv4`).
#[test]
fn aws_test_suite_vectors() {
    let h = "https://example.amazonaws.com";
    type Case<'a> = (
        &'a str,
        Option<&'a str>,
        &'a str,
        String,
        Vec<(&'a str, &'a str)>,
        &'a str,
    );
    let cases: [Case<'_>; 6] = [
        (
            "post-vanilla",
            None,
            "POST",
            format!("{h}/"),
            vec![],
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
        ),
        (
            "get-vanilla-query-order-key-case",
            None,
            "GET",
            format!("{h}/?Param2=value2&Param1=value1"),
            vec![],
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        ),
        (
            "get-vanilla-with-session-token",
            Some("6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"),
            "GET",
            format!("{h}/"),
            vec![],
            "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8",
        ),
        (
            "get-header-value-trim",
            None,
            "GET",
            format!("{h}/"),
            vec![("My-Header1", " value1"), ("My-Header2", " \"a   b   c\"")],
            "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
        ),
        (
            "get-slash-dot-slash-normalized",
            None,
            "GET",
            format!("{h}/./"),
            vec![],
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        ),
        (
            "get-header-key-duplicate",
            None,
            "GET",
            format!("{h}/"),
            vec![
                ("My-Header1", "value2"),
                ("My-Header1", "value2"),
                ("My-Header1", "value1"),
            ],
            "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea",
        ),
    ];
    for (name, token, method, url, headers, expected) in cases {
        assert_eq!(
            suite_signature(token, method, &url, &headers, b""),
            expected,
            "{name}"
        );
    }
}

/// The day's signing key is derived once and reused until the date changes: signing across
/// midnight gives the same result as a fresh signer.
#[test]
fn the_cached_day_key_follows_the_date() {
    let signer = SigV4::new("service", "us-east-1", AKID, SECRET, None);
    let url = "https://example.amazonaws.com/";
    for secs in [
        SUITE_TIME,
        SUITE_TIME + 1,
        SUITE_TIME + 86_400,
        SUITE_TIME,
        0,
    ] {
        let time = UNIX_EPOCH + Duration::from_secs(secs);
        let fresh = SigV4::new("service", "us-east-1", AKID, SECRET, None);
        assert_eq!(
            signer.sign("POST", url, &[], b"x", time).expect("signs"),
            fresh.sign("POST", url, &[], b"x", time).expect("signs"),
            "{secs}"
        );
    }
}

/// The same headers as `aws-sigv4`'s own signer (default settings) gives, over many request
/// shapes: paths with dot segments, `//`, encoded and unencoded characters, queries to sort
/// and decode, repeated and mixed-case headers, spaces to trim, excluded headers, a `host`
/// header, ports, session tokens, dates across the years.
#[test]
fn agrees_with_aws_sigv4() {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;
    use aws_smithy_runtime_api::client::identity::Identity;

    let urls = [
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse",
        "https://bedrock-runtime.eu-west-1.amazonaws.com/model/arn%3Aaws%3Abedrock%3Aeu-west-1%3A123456789012%3Ainference-profile%2Feu.amazon.nova-pro-v1%3A0/converse-stream",
        "http://127.0.0.1:9/model/m/converse",
        "http://127.0.0.1:80/a/./b/../c//d/",
        "https://h.test:443/x/..",
        "https://h.test:8443/x/%20y/~z!$'()*,;=:@",
        "https://h.test",
        "https://h.test/p?b=2&a=1&a=0&c&=e&sp+ace=x%2By&utf=%E1%88%B4&&",
        "https://h.test/p?",
    ];
    let header_sets: [&[(&str, &str)]; 5] = [
        &[],
        &[("content-type", "application/json")],
        &[
            ("Content-Type", "application/json"),
            ("accept", "application/vnd.amazon.eventstream"),
        ],
        &[
            ("X-Many", "  a  b   "),
            ("x-many", "c"),
            ("User-Agent", "ua"),
            ("authorization", "old"),
            ("x-amzn-trace-id", "t"),
            ("transfer-encoding", "chunked"),
            ("x-tab", "a\tb"),
        ],
        &[
            ("host", "other.test"),
            ("x-amz-date", "stale"),
            ("x-amz-security-token", "stale"),
        ],
    ];
    let tokens = [None, Some("FwoGZXIvYXdzEXAMPLE//token+/=")];
    let times = [0, SUITE_TIME, 1_767_225_599, 4_102_444_800, 253_402_300_799];
    let mut n = 0;
    for token in tokens {
        let ours = SigV4::new("bedrock", "us-west-2", AKID, SECRET, token);
        let credentials = Credentials::new(AKID, SECRET, token.map(str::to_owned), None, "t");
        let identity: Identity = credentials.into();
        for url in urls {
            for headers in header_sets {
                for (i, secs) in times.iter().enumerate() {
                    let time = UNIX_EPOCH + Duration::from_secs(*secs);
                    let body: &[u8] = if i % 2 == 0 { b"" } else { b"{\"a\":1}" };
                    let params = v4::SigningParams::builder()
                        .identity(&identity)
                        .region("us-west-2")
                        .name("bedrock")
                        .time(time)
                        .settings(SigningSettings::default())
                        .build()
                        .expect("params")
                        .into();
                    let request = SignableRequest::new(
                        "POST",
                        url,
                        headers.iter().copied(),
                        SignableBody::Bytes(body),
                    )
                    .expect("request");
                    let (instructions, _) = sign(request, &params).expect("signs").into_parts();
                    let theirs: Vec<(&'static str, String)> = instructions
                        .into_parts()
                        .0
                        .into_iter()
                        .map(|h| (h.name(), h.value().to_owned()))
                        .collect();
                    let mine = ours.sign("POST", url, headers, body, time).expect("signs");
                    assert_eq!(mine, theirs, "{url} {headers:?} {token:?} {secs}");
                    n += 1;
                }
            }
        }
    }
    assert_eq!(n, 2 * 9 * 5 * 5);
}
