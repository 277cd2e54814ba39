//! The local credential endpoints over real TCP on loopback, driven the way the AWS SDKs'
//! IMDS and ECS credential providers drive them.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ra_agent::credentials::{Credentials, format_expiration};
use ra_agent::serve::{self, Handle, Settings};
use ra_agent::store::CredentialStore;
use time::OffsetDateTime;
use zeroize::Zeroizing;

const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/edge/DeviceRole";
const ROLE: &str = "DeviceRole";
const ECS_TOKEN: &str = "ecs-test-token-0123456789";
const TTL_HEADER: &str = "X-aws-ec2-metadata-token-ttl-seconds";

/// A parsed HTTP response.
struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

/// Sends one request with `headers` and reads the response until the server closes.
fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    send_raw(addr, request.as_bytes())
}

fn send_raw(addr: SocketAddr, bytes: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(bytes).unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    parse_reply(&raw)
}

fn parse_reply(raw: &str) -> Reply {
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {raw:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect::<HashMap<_, _>>();
    let length: usize = headers["content-length"].parse().unwrap();
    assert_eq!(body.len(), length, "Content-Length does not match the body");
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

fn credentials(expiration: OffsetDateTime) -> Credentials {
    Credentials {
        access_key_id: "ASIAEXAMPLEKEYID".into(),
        secret_access_key: Zeroizing::new("secret/key+value".into()),
        session_token: Zeroizing::new("session-token-value".into()),
        expiration,
    }
}

/// Whole seconds, as the endpoints format times.
fn now_seconds() -> OffsetDateTime {
    OffsetDateTime::now_utc().replace_nanosecond(0).unwrap()
}

fn start(bind: &str, ecs_token: Option<&str>) -> (Handle, Arc<CredentialStore>) {
    let store = Arc::new(CredentialStore::default());
    let settings = Settings {
        bind: bind.parse().unwrap(),
        ecs_token: ecs_token.map(|t| Zeroizing::new(t.to_owned())),
        ..Settings::for_role(ROLE_ARN)
    };
    let handle = serve::start(settings, Arc::clone(&store)).unwrap();
    (handle, store)
}

fn start_with_credentials(ecs_token: Option<&str>) -> (Handle, Arc<CredentialStore>) {
    let (handle, store) = start("127.0.0.1:0", ecs_token);
    let now = now_seconds();
    store.set(credentials(now + time::Duration::hours(1)), now);
    (handle, store)
}

fn imds_token(addr: SocketAddr, ttl: &str) -> String {
    let reply = send(addr, "PUT", "/latest/api/token", &[(TTL_HEADER, ttl)]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

fn imds_get(addr: SocketAddr, path: &str, token: &str) -> Reply {
    send(addr, "GET", path, &[("X-aws-ec2-metadata-token", token)])
}

/// Runs the IMDS flow of the AWS SDKs: token, role name, then the role's credentials.
fn check_imds_flow(addr: SocketAddr, obtained: OffsetDateTime) {
    let reply = send(addr, "PUT", "/latest/api/token", &[(TTL_HEADER, "21600")]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.headers[&TTL_HEADER.to_ascii_lowercase()], "21600");
    let token = reply.body;
    assert_eq!(token.len(), 43, "{token}");

    let list = imds_get(addr, "/latest/meta-data/iam/security-credentials/", &token);
    assert_eq!(list.status, 200);
    assert_eq!(list.body, ROLE);

    let path = format!("/latest/meta-data/iam/security-credentials/{}", list.body);
    let reply = imds_get(addr, &path, &token);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.headers["content-type"], "application/json");
    assert_eq!(reply.headers["cache-control"], "no-store");
    let json = reply.json();
    assert_eq!(json["Code"], "Success");
    assert_eq!(json["Type"], "AWS-HMAC");
    assert_eq!(json["AccessKeyId"], "ASIAEXAMPLEKEYID");
    assert_eq!(json["SecretAccessKey"], "secret/key+value");
    assert_eq!(json["Token"], "session-token-value");
    assert_eq!(json["LastUpdated"], format_expiration(obtained));
    assert_eq!(
        json["Expiration"],
        format_expiration(obtained + time::Duration::hours(1))
    );
}

#[test]
fn imds_sdk_flow_returns_credentials() {
    let (handle, store) = start("127.0.0.1:0", None);
    let obtained = now_seconds();
    store.set(credentials(obtained + time::Duration::hours(1)), obtained);
    check_imds_flow(handle.local_addr(), obtained);
}

#[test]
fn imds_sdk_flow_over_ipv6() {
    let store = Arc::new(CredentialStore::default());
    let settings = Settings {
        bind: "[::1]:0".parse().unwrap(),
        ..Settings::for_role(ROLE_ARN)
    };
    let handle = match serve::start(settings, Arc::clone(&store)) {
        Ok(handle) => handle,
        Err(e) => {
            eprintln!("skipped: this machine cannot bind [::1]: {e}");
            return;
        }
    };
    assert!(handle.local_addr().is_ipv6());
    let obtained = now_seconds();
    store.set(credentials(obtained + time::Duration::hours(1)), obtained);
    check_imds_flow(handle.local_addr(), obtained);
}

#[test]
fn ecs_sdk_flow_returns_credentials() {
    let (handle, store) = start_with_credentials(Some(ECS_TOKEN));
    let reply = send(
        handle.local_addr(),
        "GET",
        "/credentials",
        &[("Authorization", ECS_TOKEN)],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.headers["content-type"], "application/json");
    let json = reply.json();
    let expected = store.valid_at(OffsetDateTime::now_utc()).unwrap();
    assert_eq!(json["AccessKeyId"], "ASIAEXAMPLEKEYID");
    assert_eq!(json["SecretAccessKey"], "secret/key+value");
    assert_eq!(json["Token"], "session-token-value");
    assert_eq!(
        json["Expiration"],
        format_expiration(expected.credentials.expiration)
    );
    assert_eq!(json["RoleArn"], ROLE_ARN);
}

#[test]
fn ecs_token_file_drives_the_endpoint() {
    let dir = std::env::temp_dir().join(format!("ra-serve-token-{}", std::process::id()));
    let path = dir.join("ecs-token");
    let token = serve::write_ecs_token_file(&path).unwrap();
    let metadata = std::fs::metadata(&path).unwrap();
    assert_eq!(metadata.mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), token.as_str());
    assert_eq!(token.len(), 43);
    let second = serve::write_ecs_token_file(&path).unwrap();
    assert_ne!(token, second, "two tokens were equal");

    let (handle, _store) = start_with_credentials(Some(&second));
    let file_token = std::fs::read_to_string(&path).unwrap();
    let reply = send(
        handle.local_addr(),
        "GET",
        "/credentials",
        &[("Authorization", &file_token)],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ecs_rejects_missing_or_wrong_token() {
    let (handle, _store) = start_with_credentials(Some(ECS_TOKEN));
    let addr = handle.local_addr();
    let missing = send(addr, "GET", "/credentials", &[]);
    assert_eq!(missing.status, 401);
    let wrong = send(addr, "GET", "/credentials", &[("Authorization", "guess")]);
    assert_eq!(wrong.status, 403);
    let prefix = send(
        addr,
        "GET",
        "/credentials",
        &[("Authorization", &ECS_TOKEN[..10])],
    );
    assert_eq!(prefix.status, 403);
    for reply in [missing, wrong, prefix] {
        assert!(!reply.body.contains("ASIA"), "{}", reply.body);
    }
}

#[test]
fn ecs_disabled_without_token() {
    let (handle, _store) = start_with_credentials(None);
    let reply = send(
        handle.local_addr(),
        "GET",
        "/credentials",
        &[("Authorization", "anything")],
    );
    assert_eq!(reply.status, 404);
}

#[test]
fn token_ttl_must_be_in_range() {
    let (handle, _store) = start_with_credentials(None);
    let addr = handle.local_addr();
    let missing = send(addr, "PUT", "/latest/api/token", &[]);
    assert_eq!(missing.status, 400);
    assert!(missing.body.contains(TTL_HEADER), "{}", missing.body);
    for bad in ["0", "21601", "-1", "abc", ""] {
        let reply = send(addr, "PUT", "/latest/api/token", &[(TTL_HEADER, bad)]);
        assert_eq!(reply.status, 400, "TTL {bad:?}");
    }
    for good in ["1", "21600"] {
        let reply = send(addr, "PUT", "/latest/api/token", &[(TTL_HEADER, good)]);
        assert_eq!(reply.status, 200, "TTL {good:?}");
    }
    let get = send(addr, "GET", "/latest/api/token", &[(TTL_HEADER, "60")]);
    assert_eq!(get.status, 405);
    assert_eq!(get.headers["allow"], "PUT");
}

#[test]
fn imds_requires_valid_token() {
    let (handle, _store) = start_with_credentials(None);
    let addr = handle.local_addr();
    let path = format!("/latest/meta-data/iam/security-credentials/{ROLE}");
    assert_eq!(send(addr, "GET", &path, &[]).status, 401);
    assert_eq!(imds_get(addr, &path, "not-issued").status, 401);
    let listing = "/latest/meta-data/iam/security-credentials/";
    assert_eq!(send(addr, "GET", listing, &[]).status, 401);
    let token = imds_token(addr, "60");
    assert_eq!(imds_get(addr, &path, &token).status, 200);
    let put = send(addr, "PUT", &path, &[("X-aws-ec2-metadata-token", &token)]);
    assert_eq!(put.status, 405);
}

#[test]
fn imds_token_expires_after_ttl() {
    let (handle, _store) = start_with_credentials(None);
    let addr = handle.local_addr();
    let token = imds_token(addr, "1");
    let path = format!("/latest/meta-data/iam/security-credentials/{ROLE}");
    assert_eq!(imds_get(addr, &path, &token).status, 200);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(imds_get(addr, &path, &token).status, 401);
}

#[test]
fn imds_unknown_role_or_path_not_found() {
    let (handle, _store) = start_with_credentials(None);
    let addr = handle.local_addr();
    let token = imds_token(addr, "60");
    for path in [
        "/latest/meta-data/iam/security-credentials/OtherRole",
        "/latest/meta-data/iam/security-credentials/DeviceRole/",
        "/latest/meta-data/iam/security-credentials/DeviceRoleX",
        "/latest/meta-data/instance-id",
    ] {
        assert_eq!(imds_get(addr, path, &token).status, 404, "{path}");
    }
    assert_eq!(send(addr, "GET", "/", &[]).status, 404);
}

#[test]
fn forwarded_requests_rejected() {
    let (handle, _store) = start_with_credentials(Some(ECS_TOKEN));
    let addr = handle.local_addr();
    let forwarded = ("X-Forwarded-For", "192.0.2.10");
    let put = send(
        addr,
        "PUT",
        "/latest/api/token",
        &[(TTL_HEADER, "60"), forwarded],
    );
    assert_eq!(put.status, 403);

    let token = imds_token(addr, "60");
    let path = format!("/latest/meta-data/iam/security-credentials/{ROLE}");
    let get = send(
        addr,
        "GET",
        &path,
        &[("X-aws-ec2-metadata-token", &token), forwarded],
    );
    assert_eq!(get.status, 403);

    let ecs = send(
        addr,
        "GET",
        "/credentials",
        &[("Authorization", ECS_TOKEN), forwarded],
    );
    assert_eq!(ecs.status, 403);
    for reply in [put, get, ecs] {
        assert!(!reply.body.contains("ASIA"), "{}", reply.body);
    }
}

/// Checks that both endpoints return 503 with the JSON error and no credentials.
fn check_unavailable(addr: SocketAddr) {
    let token = imds_token(addr, "60");
    let path = format!("/latest/meta-data/iam/security-credentials/{ROLE}");
    let imds = imds_get(addr, &path, &token);
    let ecs = send(addr, "GET", "/credentials", &[("Authorization", ECS_TOKEN)]);
    for reply in [imds, ecs] {
        assert_eq!(reply.status, 503, "{}", reply.body);
        let json = reply.json();
        assert_eq!(json["Code"], "CredentialsUnavailable");
        assert!(json["Message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(json.get("AccessKeyId").is_none(), "{}", reply.body);
    }
}

#[test]
fn unavailable_before_credentials_and_after_expiry() {
    let (handle, store) = start("127.0.0.1:0", Some(ECS_TOKEN));
    let addr = handle.local_addr();
    check_unavailable(addr);

    let now = now_seconds();
    store.set(credentials(now + time::Duration::seconds(1)), now);
    let path = format!("/latest/meta-data/iam/security-credentials/{ROLE}");
    let token = imds_token(addr, "60");
    assert_eq!(imds_get(addr, &path, &token).status, 200);

    let wait = (now + time::Duration::seconds(1) - OffsetDateTime::now_utc())
        .try_into()
        .unwrap_or(Duration::ZERO);
    std::thread::sleep(wait + Duration::from_millis(50));
    check_unavailable(addr);
}

#[test]
fn malformed_requests_rejected() {
    let (handle, _store) = start_with_credentials(None);
    let addr = handle.local_addr();
    assert_eq!(send_raw(addr, b"hello\r\n\r\n").status, 400);
    let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(4096));
    assert_eq!(send_raw(addr, long.as_bytes()).status, 414);
    let mut big = String::from("PUT /latest/api/token HTTP/1.1\r\n");
    for i in 0..16 {
        big.push_str(&format!("X-Filler-{i}: {}\r\n", "z".repeat(1000)));
    }
    big.push_str("\r\n");
    assert_eq!(send_raw(addr, big.as_bytes()).status, 431);
    // The server still works after rejecting those.
    imds_token(addr, "60");
}

#[test]
fn busy_server_queues_connections() {
    let (handle, _store) = start_with_credentials(None);
    let addr = handle.local_addr();
    // Idle connections occupy every connection thread until their read timeout.
    let idle: Vec<TcpStream> = (0..serve::MAX_CONNECTIONS)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));

    let mut waiting = TcpStream::connect(addr).unwrap();
    waiting
        .write_all(
            b"PUT /latest/api/token HTTP/1.1\r\n\
              X-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\n",
        )
        .unwrap();
    waiting
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    let early = waiting.read(&mut byte);
    assert!(
        early.is_err(),
        "answered while every slot was busy: {early:?}"
    );

    drop(idle);
    waiting
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = Instant::now();
    let mut raw = String::new();
    waiting.read_to_string(&mut raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn stop_refuses_new_connections() {
    let (handle, _store) = start_with_credentials(None);
    let addr = handle.local_addr();
    imds_token(addr, "60");
    drop(handle);
    assert!(TcpStream::connect(addr).is_err());
}
