//! AWS Signature Version 4 for Bedrock requests, with the `aws-sigv4` crate.
//!
//! [`SigV4::sign`] signs the method, the URL (path and query), the headers given (plus `host`,
//! which the signature always covers) and the SHA-256 of the body, at a time the caller passes
//! (the current time in production, a fixed one in tests), and returns the headers to add:
//! `authorization`, `x-amz-date` and, with temporary credentials, `x-amz-security-token`.
//! The secret key never leaves this type: `Debug` shows the region and service only, and no
//! error message holds a credential.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

/// A request could not be signed (a URL without a host, a header value AWS cannot sign, …).
#[derive(Debug, thiserror::Error)]
#[error("cannot sign the request for AWS: {0}")]
pub struct SignError(String);

/// Signs requests to one AWS service in one region with one set of credentials (built once
/// per provider, used by every request).
pub struct SigV4 {
    identity: Identity,
    region: String,
    service: &'static str,
}

impl std::fmt::Debug for SigV4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigV4")
            .field("region", &self.region)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl SigV4 {
    /// A signer for the Bedrock runtime (service name `bedrock`). An empty session token (an
    /// unset `${AWS_SESSION_TOKEN:-}`) means long-term credentials.
    pub fn bedrock(
        region: &str,
        access_key_id: &str,
        secret_access_key: &str,
        session_token: Option<&str>,
    ) -> Self {
        Self::new(
            "bedrock",
            region,
            access_key_id,
            secret_access_key,
            session_token,
        )
    }

    pub fn new(
        service: &'static str,
        region: &str,
        access_key_id: &str,
        secret_access_key: &str,
        session_token: Option<&str>,
    ) -> Self {
        let token = session_token.filter(|t| !t.is_empty()).map(str::to_owned);
        let credentials = Credentials::new(
            access_key_id,
            secret_access_key,
            token,
            None,
            "ai-gateway-config",
        );
        SigV4 {
            identity: credentials.into(),
            region: region.to_owned(),
            service,
        }
    }

    /// The headers that sign this request at `time`. `url` is the full URL as sent, already
    /// percent-encoded (see [`super::bedrock_url`]); `headers` are the other headers sent that
    /// the signature should cover (e.g. `content-type`, `accept`); `body` the exact bytes sent.
    pub fn sign(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        time: SystemTime,
    ) -> Result<Vec<(&'static str, String)>, SignError> {
        // The crate expects a host (it would panic without one).
        let uri: http::Uri = url
            .parse()
            .map_err(|e| SignError(format!("invalid URL: {e}")))?;
        if uri.host().is_none_or(str::is_empty) {
            return Err(SignError("the URL has no host".into()));
        }
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name(self.service)
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| SignError(e.to_string()))?
            .into();
        let request = SignableRequest::new(
            method,
            url,
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| SignError(e.to_string()))?;
        let (instructions, _signature) = sign(request, &params)
            .map_err(|e| SignError(e.to_string()))?
            .into_parts();
        let (signed, _params) = instructions.into_parts();
        Ok(signed
            .into_iter()
            .map(|h| (h.name(), h.value().to_owned()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
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
}
