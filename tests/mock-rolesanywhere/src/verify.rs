//! The checks the real service makes before it issues credentials, in this order: route,
//! headers, signing scope, clock skew, signature, body, trust chain, profile and role.

use base64::Engine as _;
use ra_signer::{Certificate, MAX_CHAIN_LEN, issued_by, verify_signature};
use x509_parser::prelude::{FromDer as _, X509Certificate};

use crate::body::{SessionRequest, parse_session_request};
use crate::canonical::{self, Authorization};
use crate::clock;
use crate::http::Request;
use crate::responses::{Rejection, Session};

/// How far `X-Amz-Date` may be from the server clock, in seconds: 5 minutes, the SigV4 limit.
pub const MAX_CLOCK_SKEW_SECONDS: i64 = 300;

/// Headers that every request must sign.
const REQUIRED_SIGNED_HEADERS: [&str; 4] = ["content-type", "host", "x-amz-date", "x-amz-x509"];

/// A configured trust anchor: its ARN and its root certificate.
#[derive(Debug, Clone)]
pub(crate) struct Anchor {
    pub arn: String,
    pub root: Certificate,
}

/// The verification rules of one server: region, trust anchors and optional profiles.
#[derive(Debug)]
pub(crate) struct Verifier {
    pub region: String,
    pub anchors: Vec<Anchor>,
    pub profiles: Option<Vec<(String, Vec<String>)>>,
}

/// An accepted request.
#[derive(Debug)]
pub(crate) struct Accepted {
    pub session: Session,
    pub duration_seconds: u64,
}

/// The certificates of a request whose signature verified.
struct Signed {
    leaf: Certificate,
    chain: Vec<Certificate>,
}

impl Verifier {
    /// Verifies `request` against the server clock `now` (seconds since the Unix epoch).
    pub fn verify(&self, request: &Request, now: i64) -> Result<Accepted, Rejection> {
        check_route(request)?;
        let signed = self.check_signature(request, now)?;
        let body = parse_session_request(&request.body)?;

        let anchor = self
            .anchors
            .iter()
            .find(|a| a.arn == body.trust_anchor_arn)
            .ok_or_else(|| {
                Rejection::untrusted(format!(
                    "trust anchor {} is not configured",
                    body.trust_anchor_arn
                ))
            })?;
        check_trust(&signed.leaf, &signed.chain, anchor, now)?;
        self.check_profile(&body)?;

        Ok(Accepted {
            session: self.session(&signed.leaf, &body, anchor),
            duration_seconds: body.duration_seconds,
        })
    }

    fn check_signature(&self, request: &Request, now: i64) -> Result<Signed, Rejection> {
        let amz_date = single_header(request, "X-Amz-Date")?;
        let leaf_base64 = single_header(request, "X-Amz-X509")?;
        let authorization = single_header(request, "Authorization")?;
        single_header(request, "Host")?;
        single_header(request, "Content-Type")?;

        let auth = Authorization::parse(authorization).map_err(|reason| {
            Rejection::validation(format!("invalid Authorization header: {reason}"))
        })?;
        let request_time = clock::parse_amz_date(amz_date).ok_or_else(|| {
            Rejection::validation(format!(
                "X-Amz-Date {amz_date:?} is not in the form YYYYMMDDTHHMMSSZ"
            ))
        })?;
        let leaf = decode_certificate(leaf_base64, "X-Amz-X509")?;
        let chain = decode_chain(request)?;

        let mut required: Vec<&str> = REQUIRED_SIGNED_HEADERS.to_vec();
        if !chain.is_empty() {
            required.push("x-amz-x509-chain");
        }
        for name in required {
            if !auth.signed_headers.iter().any(|h| h == name) {
                return Err(Rejection::invalid_signature(format!(
                    "SignedHeaders {} does not include {name}",
                    auth.signed_headers.join(";")
                )));
            }
        }

        self.check_scope(&auth, &leaf, amz_date)?;
        check_clock_skew(amz_date, request_time, now)?;

        let canonical_request =
            canonical::canonical_request(&request.headers, &auth.signed_headers, &request.body)
                .map_err(Rejection::invalid_signature)?;
        let string_to_sign =
            canonical::string_to_sign(&auth.algorithm, amz_date, &auth.scope(), &canonical_request);
        if !verify_signature(&leaf, string_to_sign.as_bytes(), &auth.signature) {
            return Err(Rejection::invalid_signature(format!(
                "signature does not verify with the public key of {}",
                leaf.subject()
            )));
        }
        Ok(Signed { leaf, chain })
    }

    fn check_scope(
        &self,
        auth: &Authorization,
        leaf: &Certificate,
        amz_date: &str,
    ) -> Result<(), Rejection> {
        let expected_algorithm = leaf.key_kind().algorithm().aws_name();
        if auth.algorithm != expected_algorithm {
            return Err(Rejection::invalid_signature(format!(
                "algorithm {} does not match the {:?} key of {}; expected {expected_algorithm}",
                auth.algorithm,
                leaf.key_kind(),
                leaf.subject()
            )));
        }
        let serial = leaf.serial_decimal();
        if auth.serial != serial {
            return Err(Rejection::invalid_signature(format!(
                "Credential serial {} is not the certificate serial {serial}",
                auth.serial
            )));
        }
        let date = amz_date.get(..8).unwrap_or_default();
        if auth.date != date {
            return Err(Rejection::invalid_signature(format!(
                "Credential date {} is not the X-Amz-Date date {date}",
                auth.date
            )));
        }
        if auth.region != self.region {
            return Err(Rejection::invalid_signature(format!(
                "Credential region {} is not the server region {}",
                auth.region, self.region
            )));
        }
        if auth.service != canonical::SERVICE || auth.terminator != canonical::TERMINATOR {
            return Err(Rejection::invalid_signature(format!(
                "Credential scope ends in {}/{}, expected {}/{}",
                auth.service,
                auth.terminator,
                canonical::SERVICE,
                canonical::TERMINATOR
            )));
        }
        Ok(())
    }

    fn check_profile(&self, body: &SessionRequest) -> Result<(), Rejection> {
        let Some(profiles) = &self.profiles else {
            return Ok(());
        };
        let (_, roles) = profiles
            .iter()
            .find(|(arn, _)| *arn == body.profile_arn)
            .ok_or_else(|| {
                Rejection::not_found(format!("profile {} not found", body.profile_arn))
            })?;
        if !roles.contains(&body.role_arn) {
            let message = format!(
                "role {} is not one of the roles of profile {}",
                body.role_arn, body.profile_arn
            );
            return Err(Rejection::access_denied(message.clone(), message));
        }
        Ok(())
    }

    fn session(&self, leaf: &Certificate, body: &SessionRequest, anchor: &Anchor) -> Session {
        let x509 = X509Certificate::from_der(leaf.der()).ok().map(|(_, c)| c);
        let common_name = x509.as_ref().and_then(|c| {
            c.subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_owned)
        });
        let serial_hex = x509
            .as_ref()
            .map(|c| {
                let raw = c.raw_serial();
                let first = raw.iter().position(|&b| b != 0).unwrap_or(raw.len());
                canonical::hex(&raw[first..])
            })
            .unwrap_or_default();

        // Roles Anywhere keeps one subject per certificate identity, so the id is derived
        // from the certificate and stays the same across sessions.
        let digest = ring::digest::digest(&ring::digest::SHA256, leaf.der());
        let mut subject_id = [0u8; 16];
        subject_id.copy_from_slice(&digest.as_ref()[..16]);
        let account = anchor.arn.split(':').nth(4).unwrap_or_default();

        Session {
            role_arn: body.role_arn.clone(),
            role_session_name: body.role_session_name.clone().unwrap_or(serial_hex),
            source_identity: match common_name {
                Some(cn) => format!("CN={cn}"),
                None => leaf.subject().to_owned(),
            },
            subject_arn: format!(
                "arn:aws:rolesanywhere:{}:{account}:subject/{}",
                self.region,
                crate::responses::uuid_from_bytes(&subject_id)
            ),
        }
    }
}

fn check_route(request: &Request) -> Result<(), Rejection> {
    if request.target != "/sessions" {
        return Err(Rejection::not_found(format!(
            "no operation at {}; CreateSession is POST /sessions",
            request.target
        )));
    }
    if request.method != "POST" {
        let mut rejection = Rejection::validation(format!(
            "method {} is not allowed; CreateSession is POST /sessions",
            request.method
        ));
        rejection.status = 405;
        return Err(rejection);
    }
    Ok(())
}

/// Returns the one value of header `name`. A missing or repeated header is a 400 that
/// names it.
fn single_header<'a>(request: &'a Request, name: &'a str) -> Result<&'a str, Rejection> {
    let mut values = request.header_values(name);
    let first = values
        .next()
        .ok_or_else(|| Rejection::validation(format!("missing header {name}")))?;
    if values.next().is_some() {
        return Err(Rejection::validation(format!(
            "header {name} appears more than once"
        )));
    }
    Ok(first)
}

fn decode_certificate(text: &str, header: &str) -> Result<Certificate, Rejection> {
    let der = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| Rejection::validation(format!("{header} is not valid base64: {e}")))?;
    Certificate::from_der(der, header)
        .map_err(|e| Rejection::validation(format!("{header} is not a usable certificate: {e}")))
}

fn decode_chain(request: &Request) -> Result<Vec<Certificate>, Rejection> {
    let header = "X-Amz-X509-Chain";
    if request.header_values(header).next().is_none() {
        return Ok(Vec::new());
    }
    let value = single_header(request, header)?;
    let parts: Vec<&str> = value.split(',').map(str::trim).collect();
    if parts.len() > MAX_CHAIN_LEN {
        return Err(Rejection::validation(format!(
            "{header} has {} certificates; at most {MAX_CHAIN_LEN} are allowed",
            parts.len()
        )));
    }
    parts
        .iter()
        .enumerate()
        .map(|(index, part)| decode_certificate(part, &format!("{header} entry {index}")))
        .collect()
}

fn check_clock_skew(amz_date: &str, request_time: i64, now: i64) -> Result<(), Rejection> {
    let server_time = clock::format_amz_date(now);
    let skew = request_time.saturating_sub(now);
    let message = if skew < -MAX_CLOCK_SKEW_SECONDS {
        format!(
            "Signature expired: X-Amz-Date {amz_date} is more than 5 minutes before the server time {server_time}"
        )
    } else if skew > MAX_CLOCK_SKEW_SECONDS {
        format!(
            "Signature not yet current: X-Amz-Date {amz_date} is more than 5 minutes after the server time {server_time}"
        )
    } else {
        return Ok(());
    };
    Err(Rejection::access_denied(message.clone(), message))
}

/// Checks that `leaf` chains through `chain` to the anchor's root, where the first chain
/// entry issued the leaf. Every certificate on that path, the root included, must be
/// valid at `now`. Intermediates must be CAs allowed to sign certificates, and the leaf
/// must be allowed to make signatures.
fn check_trust(
    leaf: &Certificate,
    chain: &[Certificate],
    anchor: &Anchor,
    now: i64,
) -> Result<(), Rejection> {
    let leaf_x509 = parse_x509(leaf)?;
    if let Ok(Some(usage)) = leaf_x509.key_usage()
        && !usage.value.digital_signature()
    {
        return Err(Rejection::untrusted(format!(
            "keyUsage of {} does not include digitalSignature",
            leaf.subject()
        )));
    }

    let mut path: Vec<&Certificate> = vec![leaf];
    let mut current = leaf;
    for link in chain {
        if issued_by(current, &anchor.root) {
            break;
        }
        if !issued_by(current, link) {
            return Err(Rejection::untrusted(format!(
                "{} in X-Amz-X509-Chain did not issue {}",
                link.subject(),
                current.subject()
            )));
        }
        check_ca(link)?;
        path.push(link);
        current = link;
    }
    if !issued_by(current, &anchor.root) {
        return Err(Rejection::untrusted(format!(
            "{}, issued by {}, does not chain to {}, the root of trust anchor {}",
            current.subject(),
            current.issuer(),
            anchor.root.subject(),
            anchor.arn
        )));
    }
    path.push(&anchor.root);

    for cert in path {
        if now < cert.not_before() || now > cert.not_after() {
            return Err(Rejection::untrusted(format!(
                "{} is valid from {} to {}, not at the server time {}",
                cert.subject(),
                clock::format_iso8601(cert.not_before()),
                clock::format_iso8601(cert.not_after()),
                clock::format_iso8601(now)
            )));
        }
    }
    Ok(())
}

fn check_ca(cert: &Certificate) -> Result<(), Rejection> {
    let x509 = parse_x509(cert)?;
    let is_ca = matches!(x509.basic_constraints(), Ok(Some(ext)) if ext.value.ca);
    if !is_ca {
        return Err(Rejection::untrusted(format!(
            "{} in X-Amz-X509-Chain is not a CA certificate",
            cert.subject()
        )));
    }
    if let Ok(Some(usage)) = x509.key_usage()
        && !usage.value.key_cert_sign()
    {
        return Err(Rejection::untrusted(format!(
            "keyUsage of {} does not include keyCertSign",
            cert.subject()
        )));
    }
    Ok(())
}

fn parse_x509(cert: &Certificate) -> Result<X509Certificate<'_>, Rejection> {
    X509Certificate::from_der(cert.der())
        .map(|(_, x509)| x509)
        .map_err(|e| Rejection::untrusted(format!("cannot parse {}: {e}", cert.subject())))
}

#[cfg(test)]
mod tests;
