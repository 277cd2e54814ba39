//! The CreateSession JSON body and its field checks.

use serde_json::{Map, Value};

use crate::responses::Rejection;

/// The minimum session duration the service issues, in seconds.
pub const MIN_DURATION_SECONDS: u64 = 900;
/// The maximum session duration the service issues, in seconds.
pub const MAX_DURATION_SECONDS: u64 = 43_200;
/// The duration used when the body has no `durationSeconds`, as the API reference states.
pub const DEFAULT_DURATION_SECONDS: u64 = 3600;

/// A checked CreateSession body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionRequest {
    pub profile_arn: String,
    pub role_arn: String,
    pub trust_anchor_arn: String,
    pub duration_seconds: u64,
    pub role_session_name: Option<String>,
}

/// Parses and checks a CreateSession body. Each rejection is a 400 `ValidationException`
/// whose message names the field.
pub(crate) fn parse_session_request(body: &[u8]) -> Result<SessionRequest, Rejection> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Rejection::validation(format!("request body is not valid JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(Rejection::validation("request body is not a JSON object"));
    };

    let profile_arn = required_string(&fields, "profileArn")?;
    check_rolesanywhere_arn(&profile_arn, "profileArn", "profile")?;
    let trust_anchor_arn = required_string(&fields, "trustAnchorArn")?;
    check_rolesanywhere_arn(&trust_anchor_arn, "trustAnchorArn", "trust-anchor")?;
    let role_arn = required_string(&fields, "roleArn")?;
    check_role_arn(&role_arn)?;

    let duration_seconds = match fields.get("durationSeconds") {
        None => DEFAULT_DURATION_SECONDS,
        Some(value) => value.as_u64().ok_or_else(|| {
            Rejection::validation(format!(
                "durationSeconds must be a whole number of seconds, got {value}"
            ))
        })?,
    };
    if !(MIN_DURATION_SECONDS..=MAX_DURATION_SECONDS).contains(&duration_seconds) {
        return Err(Rejection::validation(format!(
            "durationSeconds must be between {MIN_DURATION_SECONDS} and \
             {MAX_DURATION_SECONDS}, got {duration_seconds}"
        )));
    }

    let role_session_name = match fields.get("roleSessionName") {
        None => None,
        Some(Value::String(name)) => {
            check_role_session_name(name)?;
            Some(name.clone())
        }
        Some(other) => {
            return Err(Rejection::validation(format!(
                "roleSessionName must be a string, got {other}"
            )));
        }
    };

    Ok(SessionRequest {
        profile_arn,
        role_arn,
        trust_anchor_arn,
        duration_seconds,
        role_session_name,
    })
}

fn required_string(fields: &Map<String, Value>, name: &str) -> Result<String, Rejection> {
    match fields.get(name) {
        Some(Value::String(text)) if !text.is_empty() => Ok(text.clone()),
        Some(Value::String(_)) => Err(Rejection::validation(format!("{name} is empty"))),
        Some(other) => Err(Rejection::validation(format!(
            "{name} must be a string, got {other}"
        ))),
        None => Err(Rejection::validation(format!("{name} is required"))),
    }
}

/// Checks `arn:PARTITION:rolesanywhere:REGION:ACCOUNT:KIND/ID`.
fn check_rolesanywhere_arn(arn: &str, field: &str, kind: &str) -> Result<(), Rejection> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let well_formed = match parts[..] {
        ["arn", partition, "rolesanywhere", region, account, resource] => {
            !partition.is_empty()
                && !region.is_empty()
                && is_account_id(account)
                && resource
                    .strip_prefix(kind)
                    .and_then(|rest| rest.strip_prefix('/'))
                    .is_some_and(|id| !id.is_empty())
        }
        _ => false,
    };
    if well_formed {
        Ok(())
    } else {
        Err(Rejection::validation(format!(
            "{field} {arn:?} is not a Roles Anywhere {kind} ARN \
             (arn:aws:rolesanywhere:REGION:ACCOUNT:{kind}/ID)"
        )))
    }
}

/// Checks `arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME`.
fn check_role_arn(arn: &str) -> Result<(), Rejection> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let well_formed = match parts[..] {
        ["arn", partition, "iam", "", account, resource] => {
            !partition.is_empty()
                && is_account_id(account)
                && resource
                    .strip_prefix("role/")
                    .is_some_and(|name| !name.is_empty() && !name.ends_with('/'))
        }
        _ => false,
    };
    if well_formed {
        Ok(())
    } else {
        Err(Rejection::validation(format!(
            "roleArn {arn:?} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)"
        )))
    }
}

fn is_account_id(text: &str) -> bool {
    text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit())
}

/// Checks the STS role session name rule: 2 to 64 characters from letters, digits and
/// `+=,.@_-`.
fn check_role_session_name(name: &str) -> Result<(), Rejection> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c);
    if (2..=64).contains(&name.len()) && name.chars().all(allowed) {
        Ok(())
    } else {
        Err(Rejection::validation(format!(
            "roleSessionName {name:?} must be 2 to 64 characters from letters, digits and +=,.@_-"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROFILE: &str =
        "arn:aws:rolesanywhere:us-east-1:123456789012:profile/66666666-7777-8888-9999-000000000000";
    const ANCHOR: &str = "arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/11111111-2222-3333-4444-555555555555";
    const ROLE: &str = "arn:aws:iam::123456789012:role/ExampleRole";

    fn body(extra: &str) -> Vec<u8> {
        format!(
            r#"{{"profileArn": "{PROFILE}", "roleArn": "{ROLE}", "trustAnchorArn": "{ANCHOR}"{extra}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn parse_accepts_vector_body() {
        let text = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../vectors/rsa_direct_rsn/body.json"
        ))
        .unwrap();
        let request = parse_session_request(&text).unwrap();
        assert_eq!(request.duration_seconds, 43_200);
        assert_eq!(request.role_session_name.as_deref(), Some("ci-session-01"));
        assert_eq!(request.profile_arn, PROFILE);
        assert_eq!(request.trust_anchor_arn, ANCHOR);
        assert_eq!(request.role_arn, ROLE);
    }

    #[test]
    fn parse_defaults_duration() {
        let request = parse_session_request(&body("")).unwrap();
        assert_eq!(request.duration_seconds, DEFAULT_DURATION_SECONDS);
        assert_eq!(request.role_session_name, None);
    }

    #[test]
    fn parse_rejects_bad_fields() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"[]".to_vec(), "not a JSON object"),
            (b"{".to_vec(), "not valid JSON"),
            (body(r#", "durationSeconds": 899"#), "durationSeconds"),
            (body(r#", "durationSeconds": 43201"#), "durationSeconds"),
            (body(r#", "durationSeconds": 900.5"#), "whole number"),
            (body(r#", "durationSeconds": "3600""#), "durationSeconds"),
            (body(r#", "roleSessionName": "a""#), "roleSessionName"),
            (body(r#", "roleSessionName": "a b""#), "roleSessionName"),
            (
                format!(r#"{{"roleArn": "{ROLE}", "trustAnchorArn": "{ANCHOR}"}}"#).into_bytes(),
                "profileArn is required",
            ),
            (
                format!(r#"{{"profileArn": "{ANCHOR}", "roleArn": "{ROLE}", "trustAnchorArn": "{ANCHOR}"}}"#)
                    .into_bytes(),
                "profileArn",
            ),
            (
                format!(r#"{{"profileArn": "{PROFILE}", "roleArn": "arn:aws:iam::1:role/x", "trustAnchorArn": "{ANCHOR}"}}"#)
                    .into_bytes(),
                "roleArn",
            ),
        ];
        for (bytes, expected) in cases {
            let rejection = parse_session_request(&bytes).unwrap_err();
            assert_eq!(rejection.status, 400);
            assert!(
                rejection.message.contains(expected),
                "{} gave {:?}",
                String::from_utf8_lossy(&bytes),
                rejection.message
            );
        }
    }
}
