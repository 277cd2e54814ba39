//! The CreateSession call: build the JSON body, sign the request with the certificate's
//! key, send it, and read the credentials or the service's error.

use base64::Engine as _;
use ra_signer::{Certificate, Signer};
use serde::Deserialize;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::arn::Identity;
use crate::credentials::{Credentials, parse_expiration};
use crate::error::Error;
use crate::sigv4;

/// Session lengths the service accepts, in seconds.
pub const DURATION_RANGE: std::ops::RangeInclusive<u32> = 900..=43200;
const CONTENT_TYPE: &str = "application/json";
const MAX_RESPONSE_BYTES: u64 = 64 * 1024;

/// A CreateSession request: the identity, the session length and an optional session name.
#[derive(Debug, Clone)]
pub struct SessionRequest {
    pub identity: Identity,
    pub duration_seconds: u32,
    pub role_session_name: Option<String>,
}

impl SessionRequest {
    /// Checks the duration and session name before anything is sent.
    pub fn new(
        identity: Identity,
        duration_seconds: u32,
        role_session_name: Option<String>,
    ) -> Result<Self, Error> {
        if !DURATION_RANGE.contains(&duration_seconds) {
            return Err(Error::Usage(format!(
                "invalid --session-duration {duration_seconds}: must be between 900 and 43200 \
                 seconds (15 minutes to 12 hours)"
            )));
        }
        if let Some(name) = &role_session_name {
            let valid_chars = name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b));
            if !(2..=64).contains(&name.len()) || !valid_chars {
                return Err(Error::Usage(format!(
                    "invalid --role-session-name {name:?}: use 2 to 64 characters from \
                     letters, digits and _+=,.@-"
                )));
            }
        }
        Ok(SessionRequest {
            identity,
            duration_seconds,
            role_session_name,
        })
    }

    /// Returns the JSON body, compact, keys in a fixed order.
    pub fn body(&self) -> String {
        let mut body = serde_json::Map::new();
        body.insert("durationSeconds".into(), self.duration_seconds.into());
        body.insert(
            "profileArn".into(),
            self.identity.profile_arn.clone().into(),
        );
        body.insert("roleArn".into(), self.identity.role_arn.clone().into());
        if let Some(name) = &self.role_session_name {
            body.insert("roleSessionName".into(), name.clone().into());
        }
        body.insert(
            "trustAnchorArn".into(),
            self.identity.trust_anchor_arn.clone().into(),
        );
        serde_json::Value::Object(body).to_string()
    }
}

/// The request target: the URL to connect to and the signed `Host` header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub url: String,
    pub host: String,
}

impl Endpoint {
    /// Parses `https://HOST[:PORT][/]`. The `Host` value keeps the port only when it is
    /// not the scheme's default, as HTTP clients send it.
    pub fn parse(url: &str) -> Result<Endpoint, Error> {
        let invalid = |why: &str| {
            Error::Usage(format!(
                "invalid --endpoint {url:?}: {why} (expected https://HOST[:PORT])"
            ))
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| invalid("no scheme"))?;
        let default_port = match scheme {
            "https" => "443",
            "http" => {
                log::warn!(
                    "--endpoint {url} is plain HTTP: the signed request and the credentials \
                     cross the network unencrypted"
                );
                "80"
            }
            _ => return Err(invalid("the scheme must be https")),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
            return Err(invalid("expected only a host and an optional port"));
        }
        let host = match authority.rsplit_once(':') {
            Some((name, port)) if !name.ends_with(']') && name.contains(':') => {
                return Err(invalid(&format!(
                    "bracket the IPv6 address: [{name}]:{port}"
                )));
            }
            Some((name, port)) => {
                if port.parse::<u16>().is_err() {
                    return Err(invalid("the port is not a number from 1 to 65535"));
                }
                if port == default_port {
                    name.to_owned()
                } else {
                    authority.to_owned()
                }
            }
            None => authority.to_owned(),
        };
        Ok(Endpoint {
            url: format!("{scheme}://{authority}/sessions"),
            host,
        })
    }
}

/// A signed request ready to send, with the intermediate products kept for tests and
/// `--debug`.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    pub canonical_request: String,
    pub string_to_sign: String,
}

/// Signs a CreateSession request at time `now` (one timestamp per attempt).
pub fn sign_request(
    signer: &dyn Signer,
    certificate: &Certificate,
    request: &SessionRequest,
    endpoint: &Endpoint,
    now: OffsetDateTime,
) -> Result<SignedRequest, Error> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let amz_date = amz_date(now);
    let body = request.body();
    let mut headers: Vec<(&'static str, String)> = vec![
        ("Content-Type", CONTENT_TYPE.to_owned()),
        ("Host", endpoint.host.clone()),
        ("X-Amz-Date", amz_date.clone()),
        ("X-Amz-X509", b64.encode(signer.certificate())),
    ];
    let chain = signer.chain();
    if !chain.is_empty() {
        let encoded: Vec<String> = chain.iter().map(|der| b64.encode(der)).collect();
        headers.push(("X-Amz-X509-Chain", encoded.join(",")));
    }

    let pairs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let canonical = sigv4::canonical_request("POST", "/sessions", "", &pairs, body.as_bytes());
    let scope = sigv4::credential_scope(&amz_date, &request.identity.region);
    let algorithm = signer.algorithm().aws_name();
    let string_to_sign = sigv4::string_to_sign(algorithm, &amz_date, &scope, &canonical.request);
    let signature = signer.sign(string_to_sign.as_bytes())?;
    let authorization = sigv4::authorization(
        algorithm,
        &certificate.serial_decimal(),
        &scope,
        &canonical.signed_headers,
        &signature,
    );
    headers.push(("Authorization", authorization));
    Ok(SignedRequest {
        headers,
        body,
        canonical_request: canonical.request,
        string_to_sign,
    })
}

/// Formats `X-Amz-Date`: `YYYYMMDDTHHMMSSZ` in UTC, the ISO 8601 basic form of the
/// expiration format.
pub fn amz_date(now: OffsetDateTime) -> String {
    crate::credentials::format_expiration(now).replace(['-', ':'], "")
}

/// The service's response to one attempt.
#[derive(Debug)]
pub struct SessionResponse {
    pub credentials: Credentials,
    /// The response `Date` header, as sent.
    pub date: Option<String>,
}

/// Sends one signed request and reads the response.
pub fn send(
    http: &ureq::Agent,
    endpoint: &Endpoint,
    request: &SignedRequest,
) -> Result<SessionResponse, Error> {
    let mut builder = http.post(&endpoint.url);
    for (name, value) in &request.headers {
        builder = builder.header(*name, value.as_str());
    }
    let mut response = builder.send(request.body.as_bytes()).map_err(|e| {
        let text = e.to_string();
        if text.contains("invalid peer certificate") || text.contains("UnknownIssuer") {
            return Error::Usage(format!(
                "the TLS certificate of {} is not trusted ({text}); add its CA with \
                 --ca-bundle or AWS_CA_BUNDLE",
                endpoint.url
            ));
        }
        let context = match &e {
            ureq::Error::Timeout(_) => format!("request to {} timed out", endpoint.url),
            _ => format!("cannot reach {}", endpoint.url),
        };
        Error::Transient {
            context,
            source: Some(Box::new(e)),
        }
    })?;
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let date = header("date");
    let error_type_header = header("x-amzn-errortype");
    let body = Zeroizing::new(
        response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_string()
            .map_err(|e| Error::Transient {
                context: format!("reading the response from {} failed", endpoint.url),
                source: Some(Box::new(e)),
            })?,
    );
    if status == 200 || status == 201 {
        let credentials = parse_success(&body)?;
        return Ok(SessionResponse { credentials, date });
    }
    Err(parse_failure(
        status,
        error_type_header.as_deref(),
        date,
        &body,
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SuccessBody {
    credential_set: Vec<CredentialSetEntry>,
}

#[derive(Deserialize)]
struct CredentialSetEntry {
    credentials: WireCredentials,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireCredentials {
    access_key_id: String,
    secret_access_key: Zeroizing<String>,
    session_token: Zeroizing<String>,
    expiration: String,
}

fn parse_success(body: &str) -> Result<Credentials, Error> {
    let parsed: SuccessBody = serde_json::from_str(body).map_err(|e| {
        Error::transient(format!(
            "the service's success response is not a CreateSession result ({e})"
        ))
    })?;
    let Some(entry) = parsed.credential_set.into_iter().next() else {
        return Err(Error::transient(
            "the service returned an empty credentialSet",
        ));
    };
    let wire = entry.credentials;
    if wire.access_key_id.is_empty()
        || wire.secret_access_key.is_empty()
        || wire.session_token.is_empty()
    {
        return Err(Error::transient("the service returned empty credentials"));
    }
    Ok(Credentials {
        access_key_id: wire.access_key_id,
        secret_access_key: wire.secret_access_key,
        session_token: wire.session_token,
        expiration: parse_expiration(&wire.expiration)?,
    })
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(alias = "Message")]
    message: Option<String>,
    #[serde(rename = "__type")]
    type_: Option<String>,
    code: Option<String>,
}

fn parse_failure(
    status: u16,
    error_type_header: Option<&str>,
    date: Option<String>,
    body: &str,
) -> Error {
    let parsed: ErrorBody = serde_json::from_str(body).unwrap_or_default();
    let raw_type = error_type_header
        .map(str::to_owned)
        .or(parsed.type_)
        .or(parsed.code)
        .unwrap_or_else(|| "UnknownError".to_owned());
    // "AccessDeniedException:http://..." and "com.amazon...#AccessDeniedException" both
    // occur; the short name is what users search for.
    let short = raw_type.split(':').next().unwrap_or(&raw_type);
    let error_type = short.rsplit('#').next().unwrap_or(short).to_owned();
    let message = parsed
        .message
        .unwrap_or_else(|| body.chars().take(200).collect());
    let message = if message.trim().is_empty() {
        "(no message)".to_owned()
    } else {
        message
    };
    if status == 429 || status >= 500 || error_type.contains("Throttling") {
        return Error::Transient {
            context: format!("the service is unavailable: HTTP {status} {error_type}: {message}"),
            source: None,
        };
    }
    Error::Rejected {
        status,
        error_type,
        message,
        date,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_host_keeps_non_default_port() {
        let e = Endpoint::parse("https://127.0.0.1:8443").unwrap();
        assert_eq!(e.host, "127.0.0.1:8443");
        assert_eq!(e.url, "https://127.0.0.1:8443/sessions");
        let e = Endpoint::parse("https://rolesanywhere.us-east-1.amazonaws.com:443/").unwrap();
        assert_eq!(e.host, "rolesanywhere.us-east-1.amazonaws.com");
        let e = Endpoint::parse("https://[::1]:9443").unwrap();
        assert_eq!(e.host, "[::1]:9443");
    }

    #[test]
    fn endpoint_rejects_bad_urls() {
        for bad in [
            "rolesanywhere.example",
            "ftp://h",
            "https://h:99999",
            "https://h/path",
            "https://",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parse_failure_reads_header_and_message() {
        let e = parse_failure(
            403,
            Some("AccessDeniedException:http://internal.amazon.com/coral/"),
            None,
            r#"{"message":"Untrusted signing certificate"}"#,
        );
        assert_eq!(
            e.to_string(),
            "the service rejected the request: HTTP 403 AccessDeniedException: Untrusted signing certificate"
        );
        let e = parse_failure(
            400,
            None,
            None,
            r#"{"__type":"x#ValidationException","Message":"bad"}"#,
        );
        assert!(
            e.to_string().contains("400 ValidationException: bad"),
            "{e}"
        );
        assert!(parse_failure(503, None, None, "").is_transient());
        assert!(parse_failure(429, None, None, "{}").is_transient());
    }

    #[test]
    fn parse_success_ignores_unknown_fields() {
        let body = r#"{"credentialSet":[{"assumedRoleUser":{"arn":"a"},"credentials":
            {"accessKeyId":"ASIA1","secretAccessKey":"s","sessionToken":"t",
             "expiration":"2026-12-04T13:00:00Z","extra":1}}],"subjectArn":"x"}"#;
        let creds = parse_success(body).unwrap();
        assert_eq!(creds.access_key_id, "ASIA1");
        assert!(parse_success(r#"{"credentialSet":[]}"#).is_err());
    }
}
