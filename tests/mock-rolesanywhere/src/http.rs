//! A minimal HTTP/1.1 reader and writer: one request per connection, headers up to the
//! blank line, a body of exactly `Content-Length` bytes.

use std::io::{self, Read, Write};

/// The largest header block accepted. A request with a five-certificate chain header is
/// about 15 KiB.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// The largest body accepted. A CreateSession body is a few hundred bytes.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// A request as received.
#[derive(Debug)]
pub(crate) struct Request {
    pub method: String,
    pub target: String,
    /// Header names and values in the order received, values without surrounding spaces.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// Returns every value sent under `name`, compared case-insensitively.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The peer closed the connection before sending a byte.
    Closed,
    /// The connection failed, including a TLS error or a timeout.
    Io(io::Error),
    /// The bytes are not an HTTP/1.1 request this reader accepts, for the reason in the text.
    Malformed(String),
}

/// Reads one request: the request line, the headers and a `Content-Length` body.
pub(crate) fn read_request(stream: &mut impl Read) -> Result<Request, ReadError> {
    let mut buffer = Vec::with_capacity(8192);
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let searched_from = buffer.len().saturating_sub(3);
        let count = match stream.read(&mut chunk) {
            Ok(count) => count,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && buffer.is_empty() => {
                return Err(ReadError::Closed);
            }
            Err(e) => return Err(ReadError::Io(e)),
        };
        if count == 0 {
            return Err(if buffer.is_empty() {
                ReadError::Closed
            } else {
                ReadError::Malformed("connection closed inside the header block".into())
            });
        }
        buffer.extend_from_slice(&chunk[..count]);
        if let Some(at) = find(&buffer[searched_from..], b"\r\n\r\n") {
            break searched_from + at;
        }
        if buffer.len() > MAX_HEADER_BYTES {
            return Err(ReadError::Malformed(format!(
                "header block is larger than {MAX_HEADER_BYTES} bytes"
            )));
        }
    };

    let head = std::str::from_utf8(&buffer[..header_end])
        .map_err(|_| ReadError::Malformed("header block is not UTF-8".into()))?;
    let (method, target, headers) = parse_head(head).map_err(ReadError::Malformed)?;

    let length = content_length(&headers).map_err(ReadError::Malformed)?;
    let mut body = buffer.split_off(header_end + 4);
    if body.len() > length {
        return Err(ReadError::Malformed(format!(
            "received more bytes than Content-Length {length}"
        )));
    }
    let already = body.len();
    body.resize(length, 0);
    stream
        .read_exact(&mut body[already..])
        .map_err(ReadError::Io)?;

    Ok(Request {
        method,
        target,
        headers,
        body,
    })
}

type Head = (String, String, Vec<(String, String)>);

fn parse_head(head: &str) -> Result<Head, String> {
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let parts: Vec<&str> = request_line.split(' ').collect();
    let [method, target, version] = parts[..] else {
        return Err(format!(
            "request line {request_line:?} is not METHOD TARGET VERSION"
        ));
    };
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(format!("unsupported HTTP version {version:?}"));
    }

    let mut headers = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            return Err("folded header lines are not allowed (RFC 9112, section 5.2)".into());
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("header line {line:?} has no ':'"))?;
        if name.is_empty() || name.bytes().any(|b| !is_token_byte(b)) {
            return Err(format!("header name {name:?} is not a valid token"));
        }
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    Ok((method.to_owned(), target.to_owned(), headers))
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn content_length(headers: &[(String, String)]) -> Result<usize, String> {
    if headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
    {
        return Err("Transfer-Encoding is not supported; send Content-Length".into());
    }
    let mut values = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.as_str());
    let Some(value) = values.next() else {
        return Ok(0);
    };
    if values.next().is_some() {
        return Err("Content-Length appears more than once".into());
    }
    let length: usize = value
        .parse()
        .map_err(|_| format!("Content-Length {value:?} is not a number"))?;
    if length > MAX_BODY_BYTES {
        return Err(format!(
            "Content-Length {length} is larger than {MAX_BODY_BYTES}"
        ));
    }
    Ok(length)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A response to write: status, headers and body. `Content-Length` and
/// `Connection: close` are added when it is written.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Writes `response` as HTTP/1.1 and flushes it.
pub(crate) fn write_response(stream: &mut impl Write, response: &Response) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason_phrase(response.status)
    );
    for (name, value) in &response.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        response.body.len()
    ));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&response.body);
    stream.write_all(&bytes)?;
    stream.flush()
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Result<Request, ReadError> {
        read_request(&mut &bytes[..])
    }

    #[test]
    fn read_request_splits_head_and_body() {
        let request = read(
            b"POST /sessions HTTP/1.1\r\nHost: a\r\nX-Two:  b c \r\nContent-Length: 4\r\n\r\nbody",
        )
        .unwrap();
        assert_eq!(request.method, "POST");
        assert_eq!(request.target, "/sessions");
        assert_eq!(request.header_values("x-two").collect::<Vec<_>>(), ["b c"]);
        assert_eq!(request.body, b"body");
    }

    #[test]
    fn read_request_rejects_bad_input() {
        let cases: [(&[u8], &str); 6] = [
            (b"POST /sessions\r\n\r\n", "request line"),
            (b"POST / HTTP/2\r\n\r\n", "version"),
            (b"POST / HTTP/1.1\r\nHost a\r\n\r\n", "no ':'"),
            (b"POST / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", "folded"),
            (
                b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
                "not a number",
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                "Transfer-Encoding",
            ),
        ];
        for (bytes, expected) in cases {
            match read(bytes) {
                Err(ReadError::Malformed(reason)) => {
                    assert!(reason.contains(expected), "{reason}")
                }
                other => panic!("{:?} gave {other:?}", String::from_utf8_lossy(bytes)),
            }
        }
    }

    #[test]
    fn read_request_reports_short_body_and_close() {
        assert!(matches!(read(b""), Err(ReadError::Closed)));
        assert!(matches!(
            read(b"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nshort"),
            Err(ReadError::Io(_))
        ));
    }

    #[test]
    fn write_response_adds_length_and_close() {
        let mut out = Vec::new();
        let response = Response {
            status: 403,
            headers: vec![("X-A".into(), "b".into())],
            body: b"{}".to_vec(),
        };
        write_response(&mut out, &response).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 403 Forbidden\r\nX-A: b\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
        );
    }
}
