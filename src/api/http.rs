//! A minimal HTTP/1.1 server side: read one request with hard limits
//! (head size, body size, a deadline for the whole request so a slow
//! client cannot hold a connection), write one response. The head is
//! parsed by `httparse`; everything else is here so it can be bounded and
//! fuzzed.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

/// Limits for one request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub head_bytes: usize,
    pub body_bytes: usize,
    /// The whole request (head and body) must arrive within this.
    pub deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            head_bytes: 16 * 1024,
            body_bytes: 64 * 1024,
            deadline: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path without the query, percent-decoded.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Why no request could be read; each maps to a status (or to closing
/// quietly when the client went away).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// The client closed before sending anything.
    Closed,
    /// 400, with what was wrong.
    Malformed(String),
    /// 431
    HeadTooLarge,
    /// 413
    BodyTooLarge {
        limit: usize,
    },
    /// 408
    Timeout,
    /// 501: chunked bodies are not accepted (clients send Content-Length).
    Unsupported(String),
    Io(String),
}

impl ReadError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ReadError::Closed | ReadError::Io(_) => None,
            ReadError::Malformed(_) => Some(400),
            ReadError::HeadTooLarge => Some(431),
            ReadError::BodyTooLarge { .. } => Some(413),
            ReadError::Timeout => Some(408),
            ReadError::Unsupported(_) => Some(501),
        }
    }

    pub fn message(&self) -> String {
        match self {
            ReadError::Closed => "the client closed the connection".into(),
            ReadError::Malformed(m) => format!("malformed request: {m}"),
            ReadError::HeadTooLarge => "the request head is too large".into(),
            ReadError::BodyTooLarge { limit } => {
                format!("the request body is larger than {limit} bytes")
            }
            ReadError::Timeout => "the request did not arrive in time".into(),
            ReadError::Unsupported(m) => m.clone(),
            ReadError::Io(m) => m.clone(),
        }
    }
}

const MAX_HEADERS: usize = 64;

/// Reads one request. The stream should have a short read timeout (the
/// deadline is checked between reads).
pub fn read_request<R: Read>(stream: &mut R, limits: &Limits) -> Result<Request, ReadError> {
    let started = Instant::now();
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    // The head.
    let (head_len, mut request) = loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(n)) => break (n, build(&parsed)?),
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => return Err(ReadError::HeadTooLarge),
            Err(e) => return Err(ReadError::Malformed(e.to_string())),
        }
        if buf.len() >= limits.head_bytes {
            return Err(ReadError::HeadTooLarge);
        }
        let n = read_some(stream, &mut chunk, started, limits.deadline)?;
        if n == 0 {
            return Err(if buf.is_empty() {
                ReadError::Closed
            } else {
                ReadError::Malformed("the connection closed mid-request".into())
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    if request
        .header("transfer-encoding")
        .is_some_and(|v| !v.eq_ignore_ascii_case("identity"))
    {
        return Err(ReadError::Unsupported(
            "chunked request bodies are not supported; send Content-Length".into(),
        ));
    }
    let length = match request.header("content-length") {
        None => 0,
        Some(v) => v
            .trim()
            .parse::<usize>()
            .map_err(|_| ReadError::Malformed(format!("Content-Length \"{v}\" is not a number")))?,
    };
    if length > limits.body_bytes {
        return Err(ReadError::BodyTooLarge {
            limit: limits.body_bytes,
        });
    }
    let mut body = buf.split_off(head_len);
    while body.len() < length {
        let n = read_some(stream, &mut chunk, started, limits.deadline)?;
        if n == 0 {
            return Err(ReadError::Malformed(format!(
                "the body ended after {} of {length} bytes",
                body.len()
            )));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    request.body = body;
    Ok(request)
}

fn read_some<R: Read>(
    stream: &mut R,
    chunk: &mut [u8],
    started: Instant,
    deadline: Duration,
) -> Result<usize, ReadError> {
    loop {
        if started.elapsed() > deadline {
            return Err(ReadError::Timeout);
        }
        match stream.read(chunk) {
            Ok(n) => return Ok(n),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(ReadError::Io(e.to_string())),
        }
    }
}

fn build(parsed: &httparse::Request<'_, '_>) -> Result<Request, ReadError> {
    let method = parsed.method.unwrap_or_default().to_string();
    let target = parsed.path.unwrap_or_default();
    let (raw_path, raw_query) = target.split_once('?').unwrap_or((target, ""));
    let path = percent_decode(raw_path).ok_or_else(|| {
        ReadError::Malformed("the path is not valid percent-encoded UTF-8".into())
    })?;
    let mut query = Vec::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_decode(&s.replace('+', " ")).ok_or_else(|| {
                ReadError::Malformed(format!(
                    "query parameter \"{pair}\" is not valid percent-encoded UTF-8"
                ))
            })
        };
        query.push((decode(k)?, decode(v)?));
    }
    let mut headers = Vec::with_capacity(parsed.headers.len());
    for h in parsed.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| ReadError::Malformed(format!("header {} is not UTF-8", h.name)))?;
        headers.push((h.name.to_string(), value.to_string()));
    }
    Ok(Request {
        method,
        path,
        query,
        headers,
        body: Vec::new(),
    })
}

/// Decodes `%XX` escapes; `None` for a bad escape or invalid UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A response to write.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
        body.push(b'\n');
        Response {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body,
        }
    }

    /// `{"error": {"code", "message"}}` with the status.
    pub fn error(status: u16, code: &str, message: impl Into<String>) -> Response {
        Response::json(
            status,
            &serde_json::json!({ "error": { "code": code, "message": message.into() } }),
        )
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Response {
        self.headers.push((name, value));
        self
    }

    pub fn write_to<W: Write>(&self, w: &mut W) -> io::Result<()> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        w.write_all(head.as_bytes())?;
        w.write_all(&self.body)?;
        w.flush()
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn parse(bytes: &[u8]) -> Result<Request, ReadError> {
        read_request(&mut Cursor::new(bytes.to_vec()), &Limits::default())
    }

    #[test]
    fn reads_a_request_with_query_and_body() {
        let r = parse(
            b"POST /v1/ask?camera=front%20door&x=a+b HTTP/1.1\r\nHost: v\r\nContent-Length: 4\r\n\r\n{}\r\nEXTRA",
        )
        .unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/v1/ask");
        assert_eq!(r.query("camera"), Some("front door"));
        assert_eq!(r.query("x"), Some("a b"));
        assert_eq!(r.body, b"{}\r\n");
        assert_eq!(r.header("content-length"), Some("4"));
    }

    #[test]
    fn limits_and_malformed_input() {
        assert_eq!(parse(b""), Err(ReadError::Closed));
        assert!(matches!(
            parse(b"GARBAGE\r\n\r\n"),
            Err(ReadError::Malformed(_))
        ));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Err(ReadError::Malformed(_))
        ));
        assert_eq!(
            parse(b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n").unwrap_err(),
            ReadError::BodyTooLarge { limit: 64 * 1024 }
        );
        let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', 20_000));
        assert_eq!(parse(&huge).unwrap_err(), ReadError::HeadTooLarge);
        assert!(matches!(
            parse(b"GET /%ff%fe HTTP/1.1\r\n\r\n"),
            Err(ReadError::Malformed(_))
        ));
        assert!(matches!(
            parse(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"),
            Err(ReadError::Malformed(_))
        ));
        assert!(matches!(
            parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(ReadError::Unsupported(_))
        ));
    }

    /// Random and mutated requests, for a bounded time: never a panic, and
    /// every failure maps to a 4xx/5xx status or a quiet close.
    #[test]
    fn fuzz_the_request_reader() {
        let seeds: [&[u8]; 4] = [
            b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n",
            b"POST /v1/ask HTTP/1.1\r\nContent-Length: 27\r\n\r\n{\"camera\":\"a\",\"question\":1}",
            b"GET /v1/events?camera=a&since=10&limit=5 HTTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/1.0\r\n\r\n",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let limits = Limits {
            head_bytes: 2048,
            body_bytes: 256,
            deadline: Duration::from_secs(1),
        };
        let started = Instant::now();
        let mut cases = 0u64;
        while started.elapsed() < Duration::from_secs(3) && cases < 200_000 {
            let mut input = seeds[(next() % seeds.len() as u64) as usize].to_vec();
            match next() % 4 {
                0 => {
                    // Pure noise.
                    let n = (next() % 300) as usize;
                    input = (0..n).map(|_| next() as u8).collect();
                }
                1 => {
                    // Flip bytes.
                    for _ in 0..1 + next() % 8 {
                        let i = (next() as usize) % input.len();
                        input[i] = next() as u8;
                    }
                }
                2 => {
                    // Truncate.
                    let keep = (next() as usize) % (input.len() + 1);
                    input.truncate(keep);
                }
                _ => {
                    // Insert runs of bytes.
                    let i = (next() as usize) % (input.len() + 1);
                    let run: Vec<u8> = (0..next() % 3000).map(|_| next() as u8).collect();
                    input.splice(i..i, run);
                }
            }
            match read_request(&mut Cursor::new(input), &limits) {
                Ok(r) => assert!(r.body.len() <= limits.body_bytes),
                Err(e) => {
                    if let Some(s) = e.status() {
                        assert!((400..600).contains(&s));
                    }
                }
            }
            cases += 1;
        }
        assert!(cases > 1000, "only {cases} cases ran");
    }
}
