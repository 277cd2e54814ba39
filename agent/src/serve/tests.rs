use std::io::{Read as _, Write as _};

use super::*;

const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/path/Example";

fn settings(bind: &str, hop_limit: u8) -> Settings {
    Settings {
        bind: bind.parse().unwrap(),
        hop_limit,
        ..Settings::for_role(ROLE_ARN)
    }
}

/// Sends one token request and returns the status line.
fn request_token(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .write_all(
            b"PUT /latest/api/token HTTP/1.1\r\nHost: x\r\n\
              X-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\n",
        )
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.lines().next().unwrap_or_default().to_owned()
}

fn observed_hop_limit(handle: &Handle) -> Option<u32> {
    *lock(&handle.shared.observed_hop_limit)
}

#[test]
fn hop_limit_applied_to_ipv4_connections() {
    let handle = start(settings("127.0.0.1:0", 3), Arc::default()).unwrap();
    assert_eq!(request_token(handle.local_addr()), "HTTP/1.1 200 OK");
    assert_eq!(observed_hop_limit(&handle), Some(3));
}

#[test]
fn hop_limit_applied_to_ipv6_connections() {
    let handle = match start(settings("[::1]:0", 2), Arc::default()) {
        Ok(handle) => handle,
        Err(e) => {
            eprintln!("skipped: this machine cannot bind [::1]: {e}");
            return;
        }
    };
    assert_eq!(request_token(handle.local_addr()), "HTTP/1.1 200 OK");
    assert_eq!(observed_hop_limit(&handle), Some(2));
}

#[test]
fn hop_limit_applied_to_mapped_ipv4_peer() {
    // A dual-stack listener on [::] accepts IPv4 clients as ::ffff:a.b.c.d, and their
    // packets use the IPv4 TTL.
    let handle = match start(settings("[::]:0", 4), Arc::default()) {
        Ok(handle) => handle,
        Err(e) => {
            eprintln!("skipped: this machine cannot bind [::]: {e}");
            return;
        }
    };
    let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), handle.local_addr().port());
    match TcpStream::connect(v4) {
        Ok(_) => {}
        Err(e) => {
            eprintln!("skipped: [::] is not dual-stack here: {e}");
            return;
        }
    }
    assert_eq!(request_token(v4), "HTTP/1.1 200 OK");
    assert_eq!(observed_hop_limit(&handle), Some(4));
}

#[test]
fn start_rejects_invalid_settings() {
    let zero = start(settings("127.0.0.1:0", 0), Arc::default()).unwrap_err();
    assert_eq!(zero.kind(), io::ErrorKind::InvalidInput);
    assert!(zero.to_string().contains("hop limit 0"), "{zero}");

    let mut slash = settings("127.0.0.1:0", 1);
    slash.role_name = "path/Example".into();
    let error = start(slash, Arc::default()).unwrap_err();
    assert!(error.to_string().contains("\"path/Example\""), "{error}");

    let mut empty_token = settings("127.0.0.1:0", 1);
    empty_token.ecs_token = Some(Zeroizing::new(String::new()));
    assert!(start(empty_token, Arc::default()).is_err());
}

#[test]
fn start_reports_address_in_use() {
    let first = start(settings("127.0.0.1:0", 1), Arc::default()).unwrap();
    let mut second = settings("127.0.0.1:0", 1);
    second.bind = first.local_addr();
    let error = start(second, Arc::default()).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
    assert!(
        error.to_string().contains(&first.local_addr().to_string()),
        "{error}"
    );
}

#[test]
fn stop_closes_listener_promptly() {
    let handle = start(settings("127.0.0.1:0", 1), Arc::default()).unwrap();
    let addr = handle.local_addr();
    let started = Instant::now();
    handle.stop();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let error = TcpStream::connect(addr).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
}

#[test]
fn role_name_is_last_arn_part() {
    assert_eq!(role_name_from_arn(ROLE_ARN), "Example");
    assert_eq!(
        role_name_from_arn("arn:aws:iam::123456789012:role/Plain"),
        "Plain"
    );
    assert_eq!(role_name_from_arn("NoSlash"), "NoSlash");
    let defaults = Settings::for_role(ROLE_ARN);
    assert_eq!(defaults.bind, DEFAULT_BIND);
    assert_eq!(defaults.hop_limit, 1);
    assert_eq!(defaults.role_arn.as_deref(), Some(ROLE_ARN));
    assert!(defaults.ecs_token.is_none());
}

#[test]
fn settings_debug_redacts_ecs_token() {
    let mut with_token = Settings::for_role(ROLE_ARN);
    with_token.ecs_token = Some(Zeroizing::new("secret-token-value".into()));
    let text = format!("{with_token:?}");
    assert!(!text.contains("secret-token-value"), "{text}");
    assert!(text.contains("<redacted>"), "{text}");
}

#[test]
fn wake_address_maps_unspecified_to_loopback() {
    let v4: SocketAddr = "0.0.0.0:9911".parse().unwrap();
    let v6: SocketAddr = "[::]:9911".parse().unwrap();
    let fixed: SocketAddr = "127.0.0.2:9911".parse().unwrap();
    assert_eq!(wake_address(v4), "127.0.0.1:9911".parse().unwrap());
    assert_eq!(wake_address(v6), "[::1]:9911".parse().unwrap());
    assert_eq!(wake_address(fixed), fixed);
}
