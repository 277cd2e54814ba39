//! A small HTTP/1.1 client over rustls and a request signer for the server tests.
//!
//! The signer uses the mock's own `canonical` module. That module is pinned to the
//! vectors of an independent client (see `tests/vectors.rs`), so a request it signs is a
//! request that client would send.
// Helpers run only inside tests, where a panic is the failure report.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use mock_rolesanywhere::canonical;
use mock_rolesanywhere::{PROFILE_ARN, ROLE_ARN, Server, pki_path};
use ra_signer::Signer as _;
use ra_signer::file::FileSigner;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// A response as the client read it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn message(&self) -> String {
        self.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Formats `unix` as `YYYYMMDDTHHMMSSZ`, converting days since the epoch to a
/// proleptic Gregorian date in 400-year eras. The server formats dates with the `time`
/// crate, so the two sides do not share code.
pub fn amz_date(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let seconds = unix.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// Returns seconds since the Unix epoch for a UTC civil date and time, the inverse of
/// [`amz_date`].
pub fn unix_from_civil(
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + hour * 3600 + minute * 60 + second
}

/// Parses an `expiration` value, `YYYY-MM-DDTHH:MM:SSZ`.
pub fn parse_expiration(text: &str) -> i64 {
    let number =
        |range: std::ops::Range<usize>| -> i64 { text.get(range).unwrap().parse().unwrap() };
    assert_eq!(text.len(), 20, "{text}");
    assert!(text.ends_with('Z'), "{text}");
    unix_from_civil(
        number(0..4),
        number(5..7),
        number(8..10),
        number(11..13),
        number(14..16),
        number(17..19),
    )
}

/// Parses an HTTP `Date` value, `Fri, 04 Dec 2026 12:00:00 GMT`.
pub fn parse_http_date(text: &str) -> i64 {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let parts: Vec<&str> = text.split([' ', ':']).collect();
    assert_eq!(parts.len(), 8, "{text}");
    assert_eq!(parts[7], "GMT", "{text}");
    let month = MONTHS.iter().position(|m| *m == parts[2]).unwrap() as i64 + 1;
    let number = |i: usize| -> i64 { parts[i].parse().unwrap() };
    unix_from_civil(number(3), month, number(1), number(4), number(5), number(6))
}

pub fn client_config(ca_pem: &Path) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in ra_signer::read_certificates(ca_pem).unwrap() {
        roots.add(CertificateDer::from(cert.into_der())).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// Sends raw request bytes to `server` over TLS and reads the response until the server
/// closes the connection.
pub fn exchange(server: &Server, request: &[u8]) -> std::io::Result<Reply> {
    exchange_at(server.address(), server.ca_pem_path().unwrap(), request)
}

/// Sends raw request bytes over TLS to `address`, trusting the CA in `ca_pem`.
pub fn exchange_at(address: SocketAddr, ca_pem: &Path, request: &[u8]) -> std::io::Result<Reply> {
    let config = client_config(ca_pem);
    let name = ServerName::from(address.ip());
    let connection = ClientConnection::new(config, name).unwrap();
    let socket = TcpStream::connect(address)?;
    socket.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut tls = StreamOwned::new(connection, socket);
    tls.write_all(request)?;
    tls.flush()?;
    let mut raw = Vec::new();
    tls.read_to_end(&mut raw)?;
    Ok(parse_reply(&raw))
}

fn parse_reply(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.to_owned(), value.trim().to_owned())
        })
        .collect();
    Reply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

/// Serialises `POST /sessions` with `headers` and `body`, adding Content-Length.
pub fn request_bytes(headers: &[(String, String)], body: &[u8]) -> Vec<u8> {
    let mut text = String::from("POST /sessions HTTP/1.1\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

pub fn body(anchor_arn: &str, duration_seconds: u64) -> Vec<u8> {
    serde_json::json!({
        "durationSeconds": duration_seconds,
        "profileArn": PROFILE_ARN,
        "roleArn": ROLE_ARN,
        "trustAnchorArn": anchor_arn,
    })
    .to_string()
    .into_bytes()
}

/// Opens a signer on test PKI files, such as `("rsa/leaf.pem", "rsa/leaf.key",
/// Some("rsa/chain.pem"))`.
pub fn signer(cert: &str, key: &str, chain: Option<&str>) -> FileSigner {
    let chain_path = chain.map(pki_path);
    FileSigner::open(&pki_path(cert), &pki_path(key), chain_path.as_deref()).unwrap()
}

/// Builds the headers of a signed request for `body` at time `date`, in sending order.
pub fn signed_headers(
    signer: &FileSigner,
    host: &str,
    date: &str,
    region: &str,
    body: &[u8],
) -> Vec<(String, String)> {
    let base64 = base64::engine::general_purpose::STANDARD;
    let mut headers = vec![
        ("Host".to_owned(), host.to_owned()),
        ("Content-Type".to_owned(), "application/json".to_owned()),
        ("X-Amz-Date".to_owned(), date.to_owned()),
        ("X-Amz-X509".to_owned(), base64.encode(signer.certificate())),
    ];
    let mut names = vec!["content-type", "host", "x-amz-date", "x-amz-x509"];
    if !signer.chain().is_empty() {
        let chain: Vec<String> = signer.chain().iter().map(|c| base64.encode(c)).collect();
        headers.push(("X-Amz-X509-Chain".to_owned(), chain.join(",")));
        names.push("x-amz-x509-chain");
    }
    let names: Vec<String> = names.into_iter().map(str::to_owned).collect();

    let canonical_request = canonical::canonical_request(&headers, &names, body).unwrap();
    let scope = format!("{}/{region}/rolesanywhere/aws4_request", &date[..8]);
    let algorithm = signer.algorithm().aws_name();
    let string_to_sign = canonical::string_to_sign(algorithm, date, &scope, &canonical_request);
    let signature = signer.sign(string_to_sign.as_bytes()).unwrap();
    let serial = signer.parsed_certificate().serial_decimal();
    headers.push((
        "Authorization".to_owned(),
        format!(
            "{algorithm} Credential={serial}/{scope}, SignedHeaders={}, Signature={}",
            names.join(";"),
            canonical::hex(&signature)
        ),
    ));
    headers
}

/// Signs `body` for `server` at the current time and sends it.
pub fn post_signed(server: &Server, signer: &FileSigner, body: &[u8]) -> Reply {
    let headers = signed_headers(
        signer,
        &server.address().to_string(),
        &amz_date(unix_now()),
        "us-east-1",
        body,
    );
    exchange(server, &request_bytes(&headers, body)).unwrap()
}

/// Replaces the value of header `name` in `headers`.
pub fn set_header(headers: &mut [(String, String)], name: &str, value: String) {
    let slot = headers
        .iter_mut()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .unwrap_or_else(|| panic!("no header {name}"));
    slot.1 = value;
}
