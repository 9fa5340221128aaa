//! A raw HTTP/1.1 client connection to the server under test, and the bytes of requests (plain
//! and chunked). It sends exactly the bytes a test gives it and reads responses back; it never
//! retries or reconnects on its own.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::IO_TIMEOUT;

pub use engine::test_support::http_response::Response;
use engine::test_support::http_response::{parse_response, Answering, Limits, StreamEnd};

pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
        })
    }

    pub fn set_read_timeout(&self, t: Duration) {
        self.stream
            .set_read_timeout(Some(t))
            .expect("set_read_timeout");
    }

    /// Writes raw bytes.
    #[track_caller]
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("sending to the server");
    }

    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads one response; `head_request` when it answers a HEAD (no body follows).
    #[track_caller]
    pub fn read_response(&mut self, head_request: bool) -> Response {
        match self.try_read_response(head_request) {
            Ok(r) => r,
            Err(e) => panic!(
                "reading a response: {e} (buffered: {:?})",
                self.buffered_text()
            ),
        }
    }

    fn buffered_text(&self) -> String {
        String::from_utf8_lossy(&self.buf[..self.buf.len().min(300)]).into_owned()
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 64 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    pub fn try_read_response(&mut self, head_request: bool) -> io::Result<Response> {
        loop {
            let response = self.read_one(head_request)?;
            if response.status != 100 {
                return Ok(response);
            }
        }
    }

    /// Reads until one whole response is buffered, then takes it out of the buffer.
    fn read_one(&mut self, head_request: bool) -> io::Result<Response> {
        let answering = Answering::head_if(head_request);
        let bad = |e: engine::test_support::http_response::ResponseError| {
            io::Error::new(io::ErrorKind::InvalidData, e.to_string())
        };
        // Each turn reads at least one byte or returns: bounded by what the server sends.
        loop {
            let parsed = parse_response(&self.buf, answering, &Limits::NONE, StreamEnd::Open);
            if let Some((response, used)) = parsed.map_err(bad)? {
                self.buf.drain(..used);
                return Ok(response);
            }
            if self.fill()? > 0 {
                continue;
            }
            let at_end = parse_response(&self.buf, answering, &Limits::NONE, StreamEnd::Closed);
            if let Some((response, used)) = at_end.map_err(bad)? {
                self.buf.drain(..used);
                return Ok(response);
            }
            let why = match find(&self.buf, b"\r\n\r\n") {
                _ if self.buf.is_empty() => "closed before a response",
                None => "closed mid-head",
                Some(_) => "closed mid-response",
            };
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, why));
        }
    }

    /// Sends one request and reads its response. `Content-Length` is added when a body is
    /// given and the headers do not frame it themselves.
    #[track_caller]
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Response {
        self.send(&request_bytes(method, path, headers, body));
        self.read_response(method == "HEAD")
    }

    /// Whether the server closes the connection (EOF or reset) within `within`, reading and
    /// discarding anything that still arrives.
    pub fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.stream
                .set_read_timeout(Some(left))
                .expect("set_read_timeout");
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return false
                }
                Err(_) => return true,
            }
        }
    }

    /// Nothing unread arrived and the connection is still open after `wait`.
    pub fn is_quiet_for(&mut self, wait: Duration) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        self.stream
            .set_read_timeout(Some(wait))
            .expect("set_read_timeout");
        let mut b = [0u8; 1];
        let quiet = match self.stream.read(&mut b) {
            Ok(_) => false,
            Err(e) => matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
        };
        self.stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("set_read_timeout");
        quiet
    }

    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The bytes of one request. Adds `Host`, and `Content-Length` for a body unless the headers
/// already carry `Content-Length` or `Transfer-Encoding`.
pub fn request_bytes(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n").into_bytes();
    for (k, v) in headers {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    let framed = headers.iter().any(|(k, _)| {
        k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding")
    });
    if let Some(b) = body {
        if !framed {
            out.extend_from_slice(format!("Content-Length: {}\r\n", b.len()).as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
    if let Some(b) = body {
        out.extend_from_slice(b);
    }
    out
}

/// `body` in chunked transfer coding, cut into chunks of the given sizes (cycled).
pub fn chunked(body: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
        i += 1;
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}
