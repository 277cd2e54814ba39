//! The Roles Anywhere signing format, written independently of the agent so that the mock
//! is a second opinion: `Authorization` header parsing, the canonical request and the
//! string to sign.
//!
//! The format is SigV4 with an X.509 algorithm name and the certificate serial number in
//! place of an access key id:
//!
//! ```text
//! canonical request = "POST\n/sessions\n\n"
//!                     + for each signed header: lowercase name ":" trimmed value "\n"
//!                     + "\n" + signed header names joined by ";" + "\n"
//!                     + hex(sha256(body))
//! string to sign    = algorithm "\n" X-Amz-Date "\n" scope "\n" hex(sha256(canonical request))
//! scope             = yyyymmdd "/" region "/rolesanywhere/aws4_request"
//! ```

use ring::digest;

/// The service name in the credential scope.
pub const SERVICE: &str = "rolesanywhere";

/// The last element of the credential scope.
pub const TERMINATOR: &str = "aws4_request";

/// The algorithm name for RSA keys (PKCS#1 v1.5 over SHA-256).
pub const RSA_ALGORITHM: &str = "AWS4-X509-RSA-SHA256";

/// The algorithm name for EC keys (ECDSA over SHA-256, DER signature).
pub const ECDSA_ALGORITHM: &str = "AWS4-X509-ECDSA-SHA256";

/// The parts of an `Authorization` header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// The algorithm name, such as `AWS4-X509-RSA-SHA256`.
    pub algorithm: String,
    /// The certificate serial number in decimal, the first element of `Credential=`.
    pub serial: String,
    /// The scope date (`yyyymmdd`).
    pub date: String,
    /// The scope region.
    pub region: String,
    /// The scope service, `rolesanywhere` in a valid request.
    pub service: String,
    /// The scope terminator, `aws4_request` in a valid request.
    pub terminator: String,
    /// The `SignedHeaders=` names, in the order sent.
    pub signed_headers: Vec<String>,
    /// The decoded `Signature=` bytes.
    pub signature: Vec<u8>,
}

impl Authorization {
    /// Parses `ALG Credential=SERIAL/DATE/REGION/SERVICE/TERMINATOR, SignedHeaders=a;b,
    /// Signature=HEX`. The three fields may come in any order, each exactly once.
    ///
    /// Returns an error naming the part that is missing or malformed. Signed header names
    /// must be lowercase, sorted and unique, and the signature lowercase hex, as the
    /// signing process requires.
    pub fn parse(value: &str) -> Result<Self, String> {
        let (algorithm, fields) = value
            .trim()
            .split_once(' ')
            .ok_or("expected an algorithm name, a space and the fields")?;

        let mut credential = None;
        let mut signed_headers = None;
        let mut signature = None;
        for field in fields.split(',') {
            let (key, field_value) = field
                .trim()
                .split_once('=')
                .ok_or_else(|| format!("field {:?} has no '='", field.trim()))?;
            let slot = match key {
                "Credential" => &mut credential,
                "SignedHeaders" => &mut signed_headers,
                "Signature" => &mut signature,
                other => return Err(format!("unknown field {other:?}")),
            };
            if slot.replace(field_value).is_some() {
                return Err(format!("field {key} appears twice"));
            }
        }
        let credential = credential.ok_or("Credential is missing")?;
        let signed_headers = signed_headers.ok_or("SignedHeaders is missing")?;
        let signature = signature.ok_or("Signature is missing")?;

        let scope: Vec<&str> = credential.split('/').collect();
        let [serial, date, region, service, terminator] = scope[..] else {
            return Err(format!(
                "Credential {credential:?} does not have the form SERIAL/DATE/REGION/SERVICE/aws4_request"
            ));
        };
        if serial.is_empty() || !serial.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "Credential serial {serial:?} is not a decimal number"
            ));
        }

        let signed_headers = parse_signed_headers(signed_headers)?;
        let signature = decode_lower_hex(signature)
            .ok_or_else(|| format!("Signature {signature:?} is not lowercase hex"))?;

        Ok(Authorization {
            algorithm: algorithm.to_owned(),
            serial: serial.to_owned(),
            date: date.to_owned(),
            region: region.to_owned(),
            service: service.to_owned(),
            terminator: terminator.to_owned(),
            signed_headers,
            signature,
        })
    }

    /// Returns the credential scope without the serial: `DATE/REGION/SERVICE/TERMINATOR`.
    pub fn scope(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.date, self.region, self.service, self.terminator
        )
    }
}

fn parse_signed_headers(list: &str) -> Result<Vec<String>, String> {
    let names: Vec<String> = list.split(';').map(str::to_owned).collect();
    if names.iter().any(|n| n.is_empty()) {
        return Err(format!("SignedHeaders {list:?} contains an empty name"));
    }
    if names
        .iter()
        .any(|n| n.bytes().any(|b| b.is_ascii_uppercase()))
    {
        return Err(format!("SignedHeaders {list:?} is not lowercase"));
    }
    if names.windows(2).any(|pair| pair[0] >= pair[1]) {
        return Err(format!("SignedHeaders {list:?} is not sorted and unique"));
    }
    Ok(names)
}

fn decode_lower_hex(text: &str) -> Option<Vec<u8>> {
    if text.is_empty() || !text.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

/// Returns the lowercase hex encoding of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Returns the lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, data).as_ref())
}

/// Builds the canonical header value: every value sent under `name` (case-insensitive),
/// each trimmed with inner runs of spaces collapsed to one, joined by commas.
///
/// Returns `None` when no header of that name was sent.
pub fn canonical_header_value(headers: &[(String, String)], name: &str) -> Option<String> {
    let values: Vec<String> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    if values.is_empty() {
        None
    } else {
        Some(values.join(","))
    }
}

/// Builds the canonical request for `POST /sessions` from the headers as received, the
/// signed header names (lowercase, sorted) and the body.
///
/// Returns an error naming the first signed header that the request does not contain.
pub fn canonical_request(
    headers: &[(String, String)],
    signed_headers: &[String],
    body: &[u8],
) -> Result<String, String> {
    let mut out = String::from("POST\n/sessions\n\n");
    for name in signed_headers {
        let value = canonical_header_value(headers, name)
            .ok_or_else(|| format!("signed header {name} is not in the request"))?;
        out.push_str(name);
        out.push(':');
        out.push_str(&value);
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed_headers.join(";"));
    out.push('\n');
    out.push_str(&sha256_hex(body));
    Ok(out)
}

/// Builds the string to sign from the algorithm name, the `X-Amz-Date` value, the scope
/// (see [`Authorization::scope`]) and the canonical request.
pub fn string_to_sign(
    algorithm: &str,
    amz_date: &str,
    scope: &str,
    canonical_request: &str,
) -> String {
    format!(
        "{algorithm}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "AWS4-X509-ECDSA-SHA256 Credential=2119674654/20261204/us-east-1/rolesanywhere/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-x509, Signature=3045ab";

    #[test]
    fn authorization_parse_splits_fields() {
        let auth = Authorization::parse(SAMPLE).unwrap();
        assert_eq!(auth.algorithm, ECDSA_ALGORITHM);
        assert_eq!(auth.serial, "2119674654");
        assert_eq!(
            auth.scope(),
            "20261204/us-east-1/rolesanywhere/aws4_request"
        );
        assert_eq!(
            auth.signed_headers,
            ["content-type", "host", "x-amz-date", "x-amz-x509"]
        );
        assert_eq!(auth.signature, [0x30, 0x45, 0xab]);
    }

    #[test]
    fn authorization_parse_rejects_malformed() {
        let cases = [
            ("AWS4-X509-RSA-SHA256", "algorithm name"),
            (
                "A Credential=1/2/3/4/5, SignedHeaders=host, Signature=ab, Signature=ab",
                "twice",
            ),
            (
                "A Credential=1/2/3/4, SignedHeaders=host, Signature=ab",
                "form",
            ),
            (
                "A Credential=x/2/3/4/5, SignedHeaders=host, Signature=ab",
                "decimal",
            ),
            (
                "A Credential=1/2/3/4/5, SignedHeaders=b;a, Signature=ab",
                "sorted",
            ),
            (
                "A Credential=1/2/3/4/5, SignedHeaders=Host, Signature=ab",
                "lowercase",
            ),
            (
                "A Credential=1/2/3/4/5, SignedHeaders=host, Signature=AB",
                "hex",
            ),
            (
                "A Credential=1/2/3/4/5, SignedHeaders=host, Signature=abc",
                "hex",
            ),
            (
                "A Credential=1/2/3/4/5, SignedHeaders=host",
                "Signature is missing",
            ),
            (
                "A Credential=1/2/3/4/5, Other=1, Signature=ab",
                "unknown field",
            ),
        ];
        for (value, expected) in cases {
            let error = Authorization::parse(value).unwrap_err();
            assert!(error.contains(expected), "{value:?} gave {error:?}");
        }
    }

    #[test]
    fn canonical_header_value_trims_and_joins() {
        let headers = vec![
            ("X-Test".to_owned(), "  a   b  ".to_owned()),
            ("x-test".to_owned(), "c".to_owned()),
        ];
        assert_eq!(
            canonical_header_value(&headers, "x-test").as_deref(),
            Some("a b,c")
        );
        assert_eq!(canonical_header_value(&headers, "host"), None);
    }

    #[test]
    fn canonical_request_names_missing_header() {
        let error = canonical_request(&[], &["host".to_owned()], b"").unwrap_err();
        assert!(error.contains("host"), "{error}");
    }
}
