use std::io::Write as _;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::*;

/// Sends `bytes` over a loopback connection, closes the sending side when `close` is set,
/// and reads the request on the accepting side with a deadline of `wait`.
fn read_sent(bytes: &[u8], close: bool, wait: Duration) -> Result<Request, ReadError> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    client.write_all(bytes).unwrap();
    if close {
        client.shutdown(Shutdown::Write).unwrap();
    }
    let (mut server, _) = listener.accept().unwrap();
    let result = read(&mut server, Instant::now() + wait);
    drop(client);
    result
}

fn read_complete(bytes: &[u8]) -> Result<Request, ReadError> {
    read_sent(bytes, true, Duration::from_secs(5))
}

fn status_of(result: Result<Request, ReadError>) -> u16 {
    match result {
        Err(ReadError::Invalid(status, _)) => status,
        Ok(request) => panic!("accepted: {} {}", request.method, request.path),
        Err(other) => panic!("unexpected error: {other:?}"),
    }
}

#[test]
fn read_parses_method_path_and_headers() {
    let request = read_complete(
        b"GET /latest/meta-data/?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\
          X-aws-ec2-metadata-token:  abc \r\n\r\n",
    )
    .unwrap();
    assert_eq!(request.method, "GET");
    assert_eq!(request.path, "/latest/meta-data/");
    assert_eq!(request.header("x-aws-ec2-metadata-token"), Some("abc"));
    assert_eq!(request.header("host"), Some("127.0.0.1"));
    assert_eq!(request.header("authorization"), None);
}

#[test]
fn read_accepts_bare_lf_and_leading_empty_line() {
    let request = read_complete(b"\r\nPUT /latest/api/token HTTP/1.0\nA: 1\n\n").unwrap();
    assert_eq!(request.method, "PUT");
    assert_eq!(request.path, "/latest/api/token");
    assert_eq!(request.header("a"), Some("1"));
}

#[test]
fn read_consumes_small_body() {
    let request =
        read_complete(b"PUT /latest/api/token HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello").unwrap();
    assert_eq!(request.path, "/latest/api/token");
}

#[test]
fn read_rejects_body_limits_and_encodings() {
    let too_large = format!("PUT / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", MAX_BODY + 1);
    assert_eq!(status_of(read_complete(too_large.as_bytes())), 413);
    assert_eq!(
        status_of(read_complete(
            b"PUT / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"
        )),
        400
    );
    assert_eq!(
        status_of(read_complete(
            b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        )),
        501
    );
    assert_eq!(
        status_of(read_complete(
            b"PUT / HTTP/1.1\r\nContent-Length: 10\r\n\r\nshort"
        )),
        400
    );
}

#[test]
fn read_rejects_oversized_heads() {
    let long_target = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_REQUEST_LINE));
    assert_eq!(status_of(read_complete(long_target.as_bytes())), 414);

    let mut big_head = String::from("GET / HTTP/1.1\r\n");
    for i in 0..20 {
        big_head.push_str(&format!("X-Filler-{i}: {}\r\n", "b".repeat(500)));
    }
    big_head.push_str("\r\n");
    assert_eq!(status_of(read_complete(big_head.as_bytes())), 431);

    let mut many = String::from("GET / HTTP/1.1\r\n");
    for i in 0..=MAX_HEADERS {
        many.push_str(&format!("X-{i}: 1\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(status_of(read_complete(many.as_bytes())), 431);
}

#[test]
fn read_rejects_malformed_request_lines() {
    let cases: &[(&[u8], u16)] = &[
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"GET / FOO\r\n\r\n", 400),
        (b"GET /\r\n\r\n", 400),
        (b"GET  / HTTP/1.1\r\n\r\n", 400),
        (b"GET http://example.invalid/ HTTP/1.1\r\n\r\n", 400),
        (b"G(T / HTTP/1.1\r\n\r\n", 400),
        (b"GET /\xff HTTP/1.1\r\n\r\n", 400),
    ];
    for (bytes, expected) in cases {
        let status = status_of(read_complete(bytes));
        assert_eq!(status, *expected, "{:?}", String::from_utf8_lossy(bytes));
    }
}

#[test]
fn read_rejects_malformed_headers() {
    let cases: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nNo-Colon\r\n\r\n",
        b"GET / HTTP/1.1\r\nSpace : before colon\r\n\r\n",
        b"GET / HTTP/1.1\r\nA: 1\r\n folded\r\n\r\n",
        b"GET / HTTP/1.1\r\nA: bare\rcarriage return\r\n\r\n",
        b"GET / HTTP/1.1\r\nAuthorization: one\r\nauthorization: two\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-aws-ec2-metadata-token: a\r\nX-aws-ec2-metadata-token: b\r\n\r\n",
    ];
    for bytes in cases {
        let status = status_of(read_complete(bytes));
        assert_eq!(status, 400, "{:?}", String::from_utf8_lossy(bytes));
    }
}

#[test]
fn read_reports_close_and_truncation() {
    assert!(matches!(read_complete(b""), Err(ReadError::Closed)));
    assert_eq!(status_of(read_complete(b"GET / HTTP/1.1\r\nHost")), 400);
}

#[test]
fn read_times_out_on_incomplete_request() {
    let started = Instant::now();
    let result = read_sent(b"GET / HTTP/1.1\r\n", false, Duration::from_millis(300));
    assert_eq!(status_of(result), 408);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
}

#[test]
fn response_has_length_and_close() {
    let mut out = Vec::new();
    Response::text(405, "method not allowed\n")
        .header("Allow", "PUT")
        .write_to(&mut out)
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\nContent-Length: 19\r\n"), "{text}");
    assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
    assert!(text.contains("\r\nCache-Control: no-store\r\n"), "{text}");
    assert!(text.contains("\r\nAllow: PUT\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nmethod not allowed\n"), "{text}");
}
