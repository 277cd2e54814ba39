//! The two credential endpoints: an IMDSv2-compatible one under `/latest/` and an ECS
//! container-credentials one at `/credentials`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::request::{Request, Response};
use super::tokens::{TokenTable, tokens_equal};
use crate::credentials::format_expiration;
use crate::store::{CredentialStore, Entry};

/// Path of the IMDSv2 session token request.
pub const TOKEN_PATH: &str = "/latest/api/token";
/// Path of the IMDS role name listing. A role's credentials are at `CREDENTIALS_PATH/NAME`.
pub const CREDENTIALS_PATH: &str = "/latest/meta-data/iam/security-credentials";
/// The ECS container-credentials path.
pub const ECS_PATH: &str = "/credentials";

const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
/// Maximum IMDS token lifetime, in seconds: 6 hours, the limit EC2 sets.
pub const MAX_TOKEN_TTL: u32 = 21_600;

/// Configuration of the endpoints, the credential source and the IMDS tokens issued.
#[derive(Debug)]
pub struct Endpoints {
    pub role_name: String,
    pub role_arn: Option<String>,
    pub ecs_token: Option<Zeroizing<String>>,
    pub store: Arc<CredentialStore>,
    pub tokens: TokenTable,
}

impl Endpoints {
    /// Builds the response to `request`.
    pub fn respond(&self, request: &Request) -> Response {
        // EC2 rejects any request that carries X-Forwarded-For, so a proxy on the
        // device cannot relay the endpoint to other hosts.
        if request.header("x-forwarded-for").is_some() {
            return Response::text(403, "forwarded requests are rejected\n");
        }
        let path = request.path.as_str();
        if path == TOKEN_PATH {
            self.issue_token(request)
        } else if path == ECS_PATH {
            self.ecs_credentials(request)
        } else if path.starts_with("/latest/") {
            self.metadata(request)
        } else {
            not_found()
        }
    }

    fn issue_token(&self, request: &Request) -> Response {
        if request.method != "PUT" {
            return method_not_allowed("PUT");
        }
        let ttl = match request.header(TTL_HEADER).map(parse_ttl) {
            Some(Ok(ttl)) => ttl,
            Some(Err(())) => {
                return Response::text(
                    400,
                    "invalid X-aws-ec2-metadata-token-ttl-seconds: \
                     expected whole seconds from 1 to 21600\n",
                );
            }
            None => {
                return Response::text(
                    400,
                    "missing X-aws-ec2-metadata-token-ttl-seconds header \
                     (seconds from 1 to 21600)\n",
                );
            }
        };
        let token = match self
            .tokens
            .issue(Duration::from_secs(ttl.into()), Instant::now())
        {
            Ok(token) => token,
            Err(_) => {
                log::error!("serve: the system random number generator failed");
                return Response::text(500, "cannot generate a token\n");
            }
        };
        Response::with_body(200, "text/plain", Zeroizing::new(token.as_bytes().to_vec()))
            .header("X-aws-ec2-metadata-token-ttl-seconds", ttl.to_string())
    }

    fn metadata(&self, request: &Request) -> Response {
        if request.method != "GET" {
            return method_not_allowed("GET");
        }
        let authorized = request
            .header(TOKEN_HEADER)
            .is_some_and(|token| self.tokens.is_valid(token, Instant::now()));
        if !authorized {
            return Response::text(
                401,
                "missing or expired X-aws-ec2-metadata-token: \
                 request one with PUT /latest/api/token\n",
            );
        }
        let Some(rest) = request.path.strip_prefix(CREDENTIALS_PATH) else {
            return not_found();
        };
        match rest {
            "" | "/" => Response::text(200, &self.role_name),
            _ if rest.strip_prefix('/') == Some(self.role_name.as_str()) => {
                match self.store.valid_at(OffsetDateTime::now_utc()) {
                    Some(entry) => json_response(&imds_document(&entry), body_capacity(&entry)),
                    None => unavailable(),
                }
            }
            _ => not_found(),
        }
    }

    fn ecs_credentials(&self, request: &Request) -> Response {
        let Some(expected) = &self.ecs_token else {
            return not_found();
        };
        if request.method != "GET" {
            return method_not_allowed("GET");
        }
        match request.header("authorization") {
            None => Response::text(401, "missing Authorization header\n"),
            Some(token) if !tokens_equal(token, expected) => {
                Response::text(403, "invalid authorization token\n")
            }
            Some(_) => match self.store.valid_at(OffsetDateTime::now_utc()) {
                Some(entry) => {
                    let document = EcsDocument {
                        access_key_id: &entry.credentials.access_key_id,
                        secret_access_key: &entry.credentials.secret_access_key,
                        token: &entry.credentials.session_token,
                        expiration: format_expiration(entry.credentials.expiration),
                        role_arn: self.role_arn.as_deref(),
                    };
                    let capacity =
                        body_capacity(&entry) + self.role_arn.as_ref().map_or(0, String::len);
                    json_response(&document, capacity)
                }
                None => unavailable(),
            },
        }
    }
}

/// Parses a token lifetime: decimal digits only, 1 to 21600.
fn parse_ttl(value: &str) -> Result<u32, ()> {
    if value.is_empty() || value.len() > 5 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(());
    }
    match value.parse::<u32>() {
        Ok(ttl) if (1..=MAX_TOKEN_TTL).contains(&ttl) => Ok(ttl),
        _ => Err(()),
    }
}

/// The IMDS credentials document, as EC2 returns it.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ImdsDocument<'a> {
    code: &'static str,
    last_updated: String,
    #[serde(rename = "Type")]
    kind: &'static str,
    access_key_id: &'a str,
    secret_access_key: &'a str,
    token: &'a str,
    expiration: String,
}

fn imds_document(entry: &Entry) -> ImdsDocument<'_> {
    ImdsDocument {
        code: "Success",
        last_updated: format_expiration(entry.obtained),
        kind: "AWS-HMAC",
        access_key_id: &entry.credentials.access_key_id,
        secret_access_key: &entry.credentials.secret_access_key,
        token: &entry.credentials.session_token,
        expiration: format_expiration(entry.credentials.expiration),
    }
}

/// The ECS container-credentials document.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct EcsDocument<'a> {
    access_key_id: &'a str,
    secret_access_key: &'a str,
    token: &'a str,
    expiration: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    role_arn: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorDocument {
    code: &'static str,
    message: &'static str,
}

/// Returns a body size that fits any credentials document for `entry`: the three values
/// plus room for names, times and escapes.
fn body_capacity(entry: &Entry) -> usize {
    let credentials = &entry.credentials;
    2 * (credentials.access_key_id.len()
        + credentials.secret_access_key.len()
        + credentials.session_token.len())
        + 512
}

/// Renders `document` as JSON into a zeroized buffer of `capacity` bytes, sized up front
/// so that growing it leaves no unzeroized copy of a secret behind.
fn json_response(document: &impl Serialize, capacity: usize) -> Response {
    let mut body = Zeroizing::new(Vec::with_capacity(capacity));
    match serde_json::to_writer(&mut *body, document) {
        Ok(()) => Response::with_body(200, "application/json", body),
        Err(e) => {
            log::error!("serve: cannot render the credentials as JSON: {e}");
            Response::text(500, "cannot render the credentials\n")
        }
    }
}

fn unavailable() -> Response {
    let document = ErrorDocument {
        code: "CredentialsUnavailable",
        message: "The agent has no unexpired credentials. \
                  See its log for the reason and retry shortly.",
    };
    let body = serde_json::to_vec(&document).unwrap_or_default();
    Response::with_body(503, "application/json", Zeroizing::new(body)).header("Retry-After", "5")
}

fn not_found() -> Response {
    Response::text(404, "not found\n")
}

fn method_not_allowed(allowed: &'static str) -> Response {
    Response::text(405, "method not allowed\n").header("Allow", allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_ttl_accepts_range_only() {
        assert_eq!(parse_ttl("1"), Ok(1));
        assert_eq!(parse_ttl("21600"), Ok(21_600));
        assert_eq!(parse_ttl("00060"), Ok(60));
        for bad in [
            "",
            "0",
            "21601",
            "-1",
            "+5",
            " 5",
            "1.5",
            "abc",
            "99999999999",
        ] {
            assert_eq!(parse_ttl(bad), Err(()), "{bad:?}");
        }
    }
}
