//! A minimal HTTP/1.1 server side: reads one request with size and time limits and writes
//! one response with `Connection: close`. Only what the IMDS and ECS clients of the AWS
//! SDKs send is supported: no chunked bodies, no keep-alive, no absolute-form targets.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use zeroize::Zeroizing;

/// Maximum size of the request line and headers together, in bytes.
pub const MAX_HEAD: usize = 8 * 1024;
/// Maximum size of the request line, in bytes.
pub const MAX_REQUEST_LINE: usize = 2 * 1024;
/// Maximum number of header fields.
pub const MAX_HEADERS: usize = 32;
/// Maximum request body, in bytes. The endpoints take no body, but a small one is read
/// and discarded so that closing the socket does not reset the connection.
pub const MAX_BODY: usize = 1024;

/// Header fields that must appear at most once: a second copy could make this server and
/// a proxy in front of it disagree about the request.
const SINGLE_HEADERS: &[&str] = &[
    "authorization",
    "content-length",
    "host",
    "x-aws-ec2-metadata-token",
    "x-aws-ec2-metadata-token-ttl-seconds",
];

/// A parsed request. Header names are lowercase. Values may contain tokens, so they are
/// zeroized on drop.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The request target without its query string.
    pub path: String,
    headers: Vec<(String, Zeroizing<String>)>,
}

impl Request {
    /// Returns the value of the first header field named `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Failure to read a request.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed the connection before sending anything.
    Closed,
    /// Reading from the socket failed.
    Io(io::Error),
    /// The request is invalid or exceeds a limit. The status and reason are sent to the
    /// client.
    Invalid(u16, &'static str),
}

/// Reads one request from `stream`, giving up at `deadline` (status 408). The whole
/// request must arrive by then, so a client sending one byte at a time cannot hold the
/// connection open.
pub fn read(stream: &mut TcpStream, deadline: Instant) -> Result<Request, ReadError> {
    let mut buffer = Zeroizing::new(Vec::with_capacity(1024));
    let head_end = loop {
        if let Some(end) = find_head_end(&buffer) {
            break end;
        }
        if !buffer.contains(&b'\n') && buffer.len() > MAX_REQUEST_LINE {
            return Err(ReadError::Invalid(414, "request line too long"));
        }
        if buffer.len() > MAX_HEAD {
            return Err(ReadError::Invalid(431, "request header fields too large"));
        }
        if read_some(stream, &mut buffer, deadline)? == 0 {
            return Err(if buffer.is_empty() {
                ReadError::Closed
            } else {
                ReadError::Invalid(400, "connection closed inside the request header")
            });
        }
    };
    if head_end > MAX_HEAD {
        return Err(ReadError::Invalid(431, "request header fields too large"));
    }

    let request = parse_head(&buffer[..head_end])?;
    if request.header("transfer-encoding").is_some() {
        return Err(ReadError::Invalid(
            501,
            "transfer-encoding is not supported",
        ));
    }
    let body_length = match request.header("content-length") {
        None => 0,
        Some(value) => parse_content_length(value)?,
    };
    let mut received = buffer.len() - head_end;
    while received < body_length {
        let before = buffer.len();
        if read_some(stream, &mut buffer, deadline)? == 0 {
            return Err(ReadError::Invalid(400, "connection closed inside the body"));
        }
        received += buffer.len() - before;
    }
    Ok(request)
}

/// Appends what one `read` returns to `buffer`, with the time left until `deadline` as
/// the socket's read timeout.
fn read_some(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    deadline: Instant,
) -> Result<usize, ReadError> {
    let timed_out = ReadError::Invalid(408, "request timed out");
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(timed_out);
    }
    stream.set_read_timeout(Some(left)).map_err(ReadError::Io)?;
    let mut chunk = Zeroizing::new([0u8; 1024]);
    loop {
        match stream.read(&mut chunk[..]) {
            Ok(n) => {
                buffer.extend_from_slice(&chunk[..n]);
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(timed_out);
            }
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
}

/// Returns the length of the head: up to and including the first empty line after the
/// request line. Lines end in CRLF or, leniently, a bare LF, and empty lines before the
/// request line are skipped (RFC 2616, section 4.1).
fn find_head_end(buffer: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    let mut seen_request_line = false;
    for (i, &byte) in buffer.iter().enumerate() {
        if byte != b'\n' {
            continue;
        }
        let line = &buffer[line_start..i];
        let empty = line.is_empty() || line == b"\r";
        if empty && seen_request_line {
            return Some(i + 1);
        }
        seen_request_line |= !empty;
        line_start = i + 1;
    }
    None
}

fn parse_head(head: &[u8]) -> Result<Request, ReadError> {
    let invalid = |reason| ReadError::Invalid(400, reason);
    let text = std::str::from_utf8(head).map_err(|_| invalid("the header is not UTF-8"))?;
    let mut lines = text
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .skip_while(|line| line.is_empty());

    let request_line = lines.next().ok_or(invalid("missing request line"))?;
    if request_line.len() > MAX_REQUEST_LINE {
        return Err(ReadError::Invalid(414, "request line too long"));
    }
    let (method, path) = parse_request_line(request_line)?;

    let mut headers: Vec<(String, Zeroizing<String>)> = Vec::new();
    for line in lines.take_while(|line| !line.is_empty()) {
        if headers.len() == MAX_HEADERS {
            return Err(ReadError::Invalid(431, "too many header fields"));
        }
        let (name, value) = parse_header_line(line)?;
        if SINGLE_HEADERS.contains(&name.as_str()) && headers.iter().any(|(n, _)| *n == name) {
            return Err(invalid("a header field that must be unique appears twice"));
        }
        headers.push((name, value));
    }
    Ok(Request {
        method,
        path,
        headers,
    })
}

/// Splits `METHOD SP TARGET SP HTTP/1.x` and returns the method and the path without its
/// query string.
fn parse_request_line(line: &str) -> Result<(String, String), ReadError> {
    let invalid = ReadError::Invalid(400, "invalid request line");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid);
    };
    if method.is_empty() || !method.bytes().all(is_token_byte) {
        return Err(invalid);
    }
    if !target.starts_with('/') || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid);
    }
    match version {
        "HTTP/1.1" | "HTTP/1.0" => {}
        v if v.starts_with("HTTP/") => {
            return Err(ReadError::Invalid(505, "HTTP version not supported"));
        }
        _ => return Err(invalid),
    }
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    Ok((method.to_owned(), path.to_owned()))
}

fn parse_header_line(line: &str) -> Result<(String, Zeroizing<String>), ReadError> {
    let invalid = |reason| ReadError::Invalid(400, reason);
    if line.starts_with([' ', '\t']) {
        return Err(invalid("folded header lines are not supported"));
    }
    let (name, value) = line
        .split_once(':')
        .ok_or(invalid("header line without a colon"))?;
    if name.is_empty() || !name.bytes().all(is_token_byte) {
        return Err(invalid("invalid header field name"));
    }
    let value = value.trim_matches([' ', '\t']);
    if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return Err(invalid("control character in a header value"));
    }
    Ok((name.to_ascii_lowercase(), Zeroizing::new(value.to_owned())))
}

fn parse_content_length(value: &str) -> Result<usize, ReadError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ReadError::Invalid(400, "invalid content-length"));
    }
    match value.parse::<usize>() {
        Ok(length) if length <= MAX_BODY => Ok(length),
        _ => Err(ReadError::Invalid(413, "request body too large")),
    }
}

/// The HTTP `tchar` set: the characters allowed in methods and header field names.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// A response with a complete body. The body may contain credentials and is zeroized on
/// drop.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Zeroizing<Vec<u8>>,
}

impl Response {
    /// Builds a `text/plain` response.
    pub fn text(status: u16, body: &str) -> Response {
        Response::with_body(
            status,
            "text/plain",
            Zeroizing::new(body.as_bytes().to_vec()),
        )
    }

    /// Builds a response whose body is already rendered.
    pub fn with_body(
        status: u16,
        content_type: &'static str,
        body: Zeroizing<Vec<u8>>,
    ) -> Response {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body,
        }
    }

    /// Adds a header field.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// Writes the status line, headers and body in one buffer, so the peer gets them in
    /// as few segments as possible.
    pub fn write_to(&self, stream: &mut impl Write) -> io::Result<()> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\nConnection: close\r\n",
            self.status,
            reason_phrase(self.status),
            self.content_type,
            self.body.len()
        );
        for (name, value) in &self.headers {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let mut message = Zeroizing::new(Vec::with_capacity(head.len() + self.body.len()));
        message.extend_from_slice(head.as_bytes());
        message.extend_from_slice(&self.body);
        stream.write_all(&message)?;
        stream.flush()
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
