//! Response bodies in the shapes the real service sends: the 201 credential set, and
//! errors as an `x-amzn-ErrorType` header with a `{"message": ...}` body.

use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::json;

use crate::clock;
use crate::http::Response;

/// The `x-amzn-ErrorType` of a 403 response.
pub const ACCESS_DENIED: &str = "AccessDeniedException";
/// The `x-amzn-ErrorType` of a 400 response.
pub const VALIDATION: &str = "ValidationException";
/// The `x-amzn-ErrorType` of a 404 response.
pub const RESOURCE_NOT_FOUND: &str = "ResourceNotFoundException";

/// The 403 message for a signature that does not verify or a malformed signing scope.
pub const INVALID_SIGNATURE: &str = "Invalid signature";
/// The 403 message for a certificate that does not chain to the trust anchor or is not
/// valid at the server time.
pub const UNTRUSTED_CERTIFICATE: &str = "Untrusted signing certificate";

/// An error response the server sent, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The HTTP status code.
    pub status: u16,
    /// The `x-amzn-ErrorType` header value; empty when the header was not sent.
    pub error_type: String,
    /// The `message` of the JSON body, as the client sees it.
    pub message: String,
    /// The detailed cause, for logs and test assertions. The real service does not send
    /// this detail, so neither does the mock.
    pub reason: String,
}

impl Rejection {
    /// Creates a 400 `ValidationException` whose message is `message`.
    pub(crate) fn validation(message: impl Into<String>) -> Self {
        let message = message.into();
        Rejection {
            status: 400,
            error_type: VALIDATION.into(),
            reason: message.clone(),
            message,
        }
    }

    /// Creates a 403 `Invalid signature`.
    pub(crate) fn invalid_signature(reason: impl Into<String>) -> Self {
        Self::access_denied(INVALID_SIGNATURE, reason)
    }

    /// Creates a 403 `Untrusted signing certificate`.
    pub(crate) fn untrusted(reason: impl Into<String>) -> Self {
        Self::access_denied(UNTRUSTED_CERTIFICATE, reason)
    }

    /// Creates a 403 `AccessDeniedException` with its own message.
    pub(crate) fn access_denied(message: impl Into<String>, reason: impl Into<String>) -> Self {
        Rejection {
            status: 403,
            error_type: ACCESS_DENIED.into(),
            message: message.into(),
            reason: reason.into(),
        }
    }

    /// Creates a 404 `ResourceNotFoundException` whose message is `message`.
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        let message = message.into();
        Rejection {
            status: 404,
            error_type: RESOURCE_NOT_FOUND.into(),
            reason: message.clone(),
            message,
        }
    }

    /// Builds the HTTP response for this rejection.
    pub(crate) fn to_response(&self, now: i64) -> Response {
        let mut headers = common_headers(now);
        headers.push(("Content-Type".into(), "application/json".into()));
        if !self.error_type.is_empty() {
            headers.push(("x-amzn-ErrorType".into(), self.error_type.clone()));
        }
        Response {
            status: self.status,
            headers,
            body: json!({ "message": self.message }).to_string().into_bytes(),
        }
    }
}

/// One set of temporary credentials the server issued, as sent in the 201 body.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedCredentials {
    /// The access key id, `ASIA` and 16 base32 characters.
    pub access_key_id: String,
    /// The secret access key, 40 characters.
    pub secret_access_key: String,
    /// The session token.
    pub session_token: String,
    /// The `expiration` text exactly as sent, normally `YYYY-MM-DDTHH:MM:SSZ`.
    pub expiration: String,
}

impl std::fmt::Debug for IssuedCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("session_token", &"<redacted>")
            .field("expiration", &self.expiration)
            .finish()
    }
}

/// The facts about an accepted request that the 201 body reports.
#[derive(Debug)]
pub(crate) struct Session {
    pub role_arn: String,
    pub role_session_name: String,
    /// The leaf subject as `CN=...`, or the whole subject name when it has no CN.
    pub source_identity: String,
    pub subject_arn: String,
}

/// Creates fresh random credentials that expire at `expiration`.
pub(crate) fn generate_credentials(
    rng: &SystemRandom,
    expiration: String,
) -> Result<IssuedCredentials, ring::error::Unspecified> {
    const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    let mut key_bytes = [0u8; 16];
    let mut secret_bytes = [0u8; 40];
    let mut token_bytes = [0u8; 288];
    rng.fill(&mut key_bytes)?;
    rng.fill(&mut secret_bytes)?;
    rng.fill(&mut token_bytes)?;

    // 256 is a multiple of both alphabet sizes, so `byte % size` picks without bias.
    let key: String = key_bytes
        .iter()
        .map(|b| char::from(BASE32[usize::from(*b) % BASE32.len()]))
        .collect();
    let secret_access_key = secret_bytes
        .iter()
        .map(|b| char::from(BASE64[usize::from(*b) % BASE64.len()]))
        .collect();
    let session_token = base64::engine::general_purpose::STANDARD.encode(token_bytes);

    Ok(IssuedCredentials {
        access_key_id: format!("ASIA{key}"),
        secret_access_key,
        session_token,
        expiration,
    })
}

/// Builds the 201 response carrying `credentials` for `session`.
pub(crate) fn success_response(
    session: &Session,
    credentials: &IssuedCredentials,
    now: i64,
) -> Response {
    let (account, role_name) = split_role_arn(&session.role_arn);
    let role_id = role_id(&session.role_arn);
    let body = json!({
        "credentialSet": [{
            "assumedRoleUser": {
                "arn": format!(
                    "arn:aws:sts::{account}:assumed-role/{role_name}/{}",
                    session.role_session_name
                ),
                "assumedRoleId": format!("{role_id}:{}", session.role_session_name),
            },
            "credentials": {
                "accessKeyId": credentials.access_key_id,
                "secretAccessKey": credentials.secret_access_key,
                "sessionToken": credentials.session_token,
                "expiration": credentials.expiration,
            },
            "packedPolicySize": 0,
            "roleArn": session.role_arn,
            "sourceIdentity": session.source_identity,
        }],
        "subjectArn": session.subject_arn,
    });
    let mut headers = common_headers(now);
    headers.push(("Content-Type".into(), "application/json".into()));
    Response {
        status: 201,
        headers,
        body: body.to_string().into_bytes(),
    }
}

/// Returns the headers every response carries: `Date` and a request id.
fn common_headers(now: i64) -> Vec<(String, String)> {
    let mut id = [0u8; 16];
    // A request id is a label only, so a failed draw leaves it zero.
    let _ = SystemRandom::new().fill(&mut id);
    vec![
        ("Date".into(), clock::format_http_date(now)),
        ("x-amzn-RequestId".into(), uuid_from_bytes(&id)),
    ]
}

/// Formats 16 bytes as a UUID string, `8-4-4-4-12` lowercase hex digits.
pub(crate) fn uuid_from_bytes(bytes: &[u8; 16]) -> String {
    let hex = crate::canonical::hex(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Splits `arn:aws:iam::ACCOUNT:role/PATH/NAME` into the account and the role name.
fn split_role_arn(role_arn: &str) -> (&str, &str) {
    let account = role_arn.split(':').nth(4).unwrap_or_default();
    let name = role_arn.rsplit('/').next().unwrap_or_default();
    (account, name)
}

/// Derives a stable `AROA...` role id from the role ARN, as IAM keeps one id per role.
fn role_id(role_arn: &str) -> String {
    const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = ring::digest::digest(&ring::digest::SHA256, role_arn.as_bytes());
    let suffix: String = digest.as_ref()[..17]
        .iter()
        .map(|b| char::from(BASE32[usize::from(*b) % BASE32.len()]))
        .collect();
    format!("AROA{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_credentials_has_real_shape() {
        let rng = SystemRandom::new();
        let first = generate_credentials(&rng, "2026-12-04T13:00:00Z".into()).unwrap();
        let second = generate_credentials(&rng, "2026-12-04T13:00:00Z".into()).unwrap();
        assert!(first.access_key_id.starts_with("ASIA"));
        assert_eq!(first.access_key_id.len(), 20);
        assert_eq!(first.secret_access_key.len(), 40);
        assert!(first.session_token.len() > 300);
        assert_ne!(first.access_key_id, second.access_key_id);
        assert_ne!(first.secret_access_key, second.secret_access_key);
        assert_ne!(first.session_token, second.session_token);
    }

    #[test]
    fn debug_hides_secrets() {
        let credentials = generate_credentials(&SystemRandom::new(), "x".into()).unwrap();
        let text = format!("{credentials:?}");
        assert!(!text.contains(&credentials.secret_access_key));
        assert!(!text.contains(&credentials.session_token));
    }

    #[test]
    fn rejection_response_has_error_type_and_date() {
        let response = Rejection::invalid_signature("detail").to_response(1_796_385_600);
        assert_eq!(response.status, 403);
        let header = |name: &str| {
            response
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(header("x-amzn-ErrorType").as_deref(), Some(ACCESS_DENIED));
        assert_eq!(
            header("Date").as_deref(),
            Some("Fri, 04 Dec 2026 12:00:00 GMT")
        );
        assert_eq!(response.body, br#"{"message":"Invalid signature"}"#);
    }

    #[test]
    fn split_role_arn_handles_paths() {
        assert_eq!(
            split_role_arn("arn:aws:iam::123456789012:role/team/Example"),
            ("123456789012", "Example")
        );
    }
}
