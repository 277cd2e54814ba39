//! SigV4 canonicalisation as IAM Roles Anywhere uses it ("Signing process" in the IAM
//! Roles Anywhere user guide): the canonical request, the string to sign and the
//! `Authorization` header. The certificate key replaces the HMAC key derivation, so there
//! is no signing key chain; everything else follows SigV4.

use ring::digest::{SHA256, digest};

/// The service name in the credential scope.
pub const SERVICE: &str = "rolesanywhere";

/// A canonical request and the semicolon-separated list of the headers it signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canonical {
    pub request: String,
    pub signed_headers: String,
}

/// Builds the canonical request for `method` on `path` (already URI-encoded, no query
/// string is used by CreateSession) over every header in `headers`, in any order and case.
///
/// Header names are lowercased and sorted. Values are trimmed, and runs of spaces inside
/// them are collapsed to one. Repeated names are joined with commas in the order given.
pub fn canonical_request(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Canonical {
    let mut entries: Vec<(String, String)> = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        let value = collapse_spaces(value);
        match entries.iter_mut().find(|(n, _)| *n == name) {
            Some((_, existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            None => entries.push((name, value)),
        }
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));

    let signed_headers = entries
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let mut request = String::with_capacity(256 + body.len() / 8);
    for part in [method, "\n", path, "\n", query, "\n"] {
        request.push_str(part);
    }
    for (name, value) in &entries {
        request.push_str(name);
        request.push(':');
        request.push_str(value);
        request.push('\n');
    }
    request.push('\n');
    request.push_str(&signed_headers);
    request.push('\n');
    request.push_str(&hex(digest(&SHA256, body).as_ref()));
    Canonical {
        request,
        signed_headers,
    }
}

/// Returns the credential scope `YYYYMMDD/REGION/rolesanywhere/aws4_request`, where the
/// date is the first eight characters of the `X-Amz-Date` value.
pub fn credential_scope(amz_date: &str, region: &str) -> String {
    let day = amz_date.get(..8).unwrap_or(amz_date);
    format!("{day}/{region}/{SERVICE}/aws4_request")
}

/// Builds the string to sign from the algorithm name, the `X-Amz-Date` value, the scope
/// and the canonical request.
pub fn string_to_sign(algorithm: &str, amz_date: &str, scope: &str, canonical: &str) -> String {
    let hashed = hex(digest(&SHA256, canonical.as_bytes()).as_ref());
    format!("{algorithm}\n{amz_date}\n{scope}\n{hashed}")
}

/// Builds the `Authorization` header value. `serial` is the certificate serial number as
/// an unsigned decimal integer.
pub fn authorization(
    algorithm: &str,
    serial: &str,
    scope: &str,
    signed_headers: &str,
    signature: &[u8],
) -> String {
    format!(
        "{algorithm} Credential={serial}/{scope}, SignedHeaders={signed_headers}, Signature={}",
        hex(signature)
    )
}

/// Encodes bytes as lowercase hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

fn collapse_spaces(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut previous_space = false;
    for c in value.trim().chars() {
        if c == ' ' {
            if !previous_space {
                out.push(c);
            }
            previous_space = true;
        } else {
            out.push(c);
            previous_space = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_request_sorts_lowercases_and_trims() {
        let headers = [
            ("X-B", "  two  words "),
            ("Host", "h"),
            ("x-a", "1"),
            ("X-A", "2"),
        ];
        let canonical = canonical_request("POST", "/sessions", "", &headers, b"");
        assert_eq!(canonical.signed_headers, "host;x-a;x-b");
        assert!(
            canonical
                .request
                .contains("\nhost:h\nx-a:1,2\nx-b:two words\n\n")
        );
        assert!(
            canonical
                .request
                .ends_with("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
    }

    #[test]
    fn credential_scope_uses_date_part() {
        assert_eq!(
            credential_scope("20261204T120000Z", "us-east-1"),
            "20261204/us-east-1/rolesanywhere/aws4_request"
        );
    }
}
