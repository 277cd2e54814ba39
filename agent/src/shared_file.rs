//! Merging credentials into an AWS shared-credentials file (INI) without disturbing
//! anything else in it.

use crate::credentials::Credentials;

const ACCESS_KEY: &str = "aws_access_key_id";
const SECRET_KEY: &str = "aws_secret_access_key";
const TOKEN_KEY: &str = "aws_session_token";
/// The token key of old SDKs; left in place it would shadow the fresh token.
const LEGACY_TOKEN_KEY: &str = "aws_security_token";

/// Returns `existing` with the profile `profile` holding `credentials`.
///
/// Only the three credential keys of that section change, and a stale
/// `aws_security_token` in it is removed. Every other byte (comments, other profiles, key
/// order, line endings) stays as it was. A missing section is appended. Keys are matched
/// by their exact name, not by prefix.
pub fn merge(existing: &str, profile: &str, credentials: &Credentials) -> String {
    let newline = if existing.contains("\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    let values = [
        (ACCESS_KEY, credentials.access_key_id.as_str()),
        (SECRET_KEY, credentials.secret_access_key.as_str()),
        (TOKEN_KEY, credentials.session_token.as_str()),
    ];
    let mut written = [false; 3];
    let mut out = String::with_capacity(existing.len() + 1024);
    let mut in_target = false;
    let mut found_section = false;
    // Where the keys still missing go: after the last non-blank line of the section.
    let mut insert_at: Option<usize> = None;

    for line in existing.split_inclusive('\n') {
        let content = line.trim_end_matches(['\r', '\n']);
        if let Some(name) = section_name(content) {
            if in_target {
                insert_missing(&mut out, insert_at, &values, &mut written, newline);
            }
            in_target = name == profile;
            found_section |= in_target;
            out.push_str(line);
            insert_at = in_target.then_some(out.len());
            continue;
        }
        if in_target {
            if let Some(key) = key_name(content) {
                if key == LEGACY_TOKEN_KEY {
                    continue;
                }
                if let Some(i) = values.iter().position(|(k, _)| *k == key) {
                    let ending = &line[content.len()..];
                    out.push_str(&format!("{} = {}", values[i].0, values[i].1));
                    out.push_str(if ending.is_empty() { newline } else { ending });
                    written[i] = true;
                    insert_at = Some(out.len());
                    continue;
                }
            }
            out.push_str(line);
            if !content.trim().is_empty() {
                insert_at = Some(out.len());
            }
            continue;
        }
        out.push_str(line);
    }

    if in_target {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push_str(newline);
            insert_at = Some(out.len());
        }
        insert_missing(&mut out, insert_at, &values, &mut written, newline);
    }
    if !found_section {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push_str(newline);
        }
        if !out.is_empty() {
            out.push_str(newline);
        }
        out.push_str(&format!("[{profile}]{newline}"));
        let end = out.len();
        insert_missing(&mut out, Some(end), &values, &mut written, newline);
    }
    out
}

fn insert_missing(
    out: &mut String,
    at: Option<usize>,
    values: &[(&str, &str); 3],
    written: &mut [bool; 3],
    newline: &str,
) {
    let Some(at) = at else { return };
    let mut block = String::new();
    for (i, (key, value)) in values.iter().enumerate() {
        if !written[i] {
            block.push_str(&format!("{key} = {value}{newline}"));
            written[i] = true;
        }
    }
    out.insert_str(at, &block);
}

/// Returns the name of a `[section]` line, trimmed.
fn section_name(line: &str) -> Option<&str> {
    let trimmed = line.trim();
    trimmed
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .map(str::trim)
}

/// Returns the key of a `key = value` line; comments and blank lines have none.
fn key_name(line: &str) -> Option<&str> {
    let trimmed = line.trim_start();
    if trimmed.is_empty() || trimmed.starts_with(['#', ';']) {
        return None;
    }
    trimmed.split_once('=').map(|(key, _)| key.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroize::Zeroizing;

    fn creds() -> Credentials {
        Credentials {
            access_key_id: "AKNEW".into(),
            secret_access_key: Zeroizing::new("SKNEW".into()),
            session_token: Zeroizing::new("TKNEW".into()),
            expiration: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn merge_into_empty_file_creates_section() {
        let out = merge("", "default", &creds());
        assert_eq!(
            out,
            "[default]\naws_access_key_id = AKNEW\naws_secret_access_key = SKNEW\naws_session_token = TKNEW\n"
        );
    }

    #[test]
    fn merge_replaces_only_target_keys() {
        let before = "# top comment\n[other]\naws_access_key_id = KEEP\n\n[default]\nregion = eu-west-1\naws_access_key_id=OLD\n; note\naws_secret_access_key = OLD\naws_security_token = STALE\naws_session_token_extra = keep\naws_session_token = OLD\n\n[last]\nx = 1\n";
        let out = merge(before, "default", &creds());
        let expected = "# top comment\n[other]\naws_access_key_id = KEEP\n\n[default]\nregion = eu-west-1\naws_access_key_id = AKNEW\n; note\naws_secret_access_key = SKNEW\naws_session_token_extra = keep\naws_session_token = TKNEW\n\n[last]\nx = 1\n";
        assert_eq!(out, expected);
    }

    #[test]
    fn merge_keeps_crlf_adds_missing_keys() {
        let before = "[default]\r\nregion = us-east-1\r\n\r\n[b]\r\nk = v\r\n";
        let out = merge(before, "default", &creds());
        assert_eq!(
            out,
            "[default]\r\nregion = us-east-1\r\naws_access_key_id = AKNEW\r\naws_secret_access_key = SKNEW\r\naws_session_token = TKNEW\r\n\r\n[b]\r\nk = v\r\n"
        );
    }

    #[test]
    fn merge_appends_new_profile_after_existing_text() {
        let out = merge("[a]\nk = v", "device", &creds());
        assert!(
            out.starts_with("[a]\nk = v\n\n[device]\naws_access_key_id = AKNEW\n"),
            "{out}"
        );
    }

    #[test]
    fn merge_is_idempotent() {
        let once = merge("[x]\ny = 1\n", "default", &creds());
        assert_eq!(merge(&once, "default", &creds()), once);
    }
}
