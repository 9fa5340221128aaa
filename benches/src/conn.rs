//! One blocking keep-alive HTTP/1.1 client connection: write a request (head and body slices in
//! one `writev` where the kernel takes them), read exactly one response into a reused buffer. The
//! head is parsed by the shared test-side parser (`engine::test_support::http_response`).

use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use engine::test_support::http_response::{parse_head, Answering, Framing, Limits};

/// Largest response head accepted.
const HEAD_MAX: usize = 64 * 1024;
/// Largest response body accepted (a block is at most 512 KiB; error pages are small).
const BODY_MAX: u64 = 16 * 1024 * 1024;

pub struct Conn {
    addr: SocketAddr,
    timeout: Duration,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    filled: usize,
    /// End of the last response in `buf`; bytes after it were not asked for.
    last_end: usize,
    close_after: bool,
    /// Connections opened so far (1 + reconnects).
    pub connects: u64,
}

/// Status and where the body lies in the connection's buffer (valid until the next exchange).
#[derive(Clone, Copy, Debug)]
pub struct Response {
    pub status: u16,
    pub content_length: Option<u64>,
    body_start: usize,
    body_end: usize,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl Conn {
    pub fn new(addr: SocketAddr, timeout: Duration) -> Conn {
        Conn {
            addr,
            timeout,
            stream: None,
            buf: vec![0; 64 * 1024],
            filled: 0,
            last_end: 0,
            close_after: false,
            connects: 0,
        }
    }

    pub fn drop_stream(&mut self) {
        self.stream = None;
        self.filled = 0;
        self.last_end = 0;
        self.close_after = false;
    }

    /// Opens the connection unless it is open.
    pub fn ensure_connected(&mut self) -> io::Result<()> {
        if self.stream.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, self.timeout)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(self.timeout))?;
            s.set_write_timeout(Some(self.timeout))?;
            self.stream = Some(s);
            self.connects += 1;
        }
        Ok(())
    }

    /// Sends `head` followed by `body` parts and reads one response. `head_only`: the request was
    /// HEAD, so the response has no body whatever its Content-Length says. On any error the
    /// connection is dropped (the next exchange reconnects).
    pub fn exchange(
        &mut self,
        head: &[u8],
        body: &[&[u8]],
        head_only: bool,
    ) -> io::Result<Response> {
        let r = self.exchange_inner(head, body, head_only);
        if r.is_err() {
            self.drop_stream();
        }
        r
    }

    fn exchange_inner(
        &mut self,
        head: &[u8],
        body: &[&[u8]],
        head_only: bool,
    ) -> io::Result<Response> {
        if self.close_after {
            self.drop_stream();
        }
        if self.filled > self.last_end {
            return Err(invalid(format!(
                "{} unexpected bytes after the previous response",
                self.filled - self.last_end
            )));
        }
        self.filled = 0;
        self.last_end = 0;
        self.ensure_connected()?;
        let stream = self.stream.as_mut().expect("connected");

        let mut slices: [IoSlice; 3] = [
            IoSlice::new(head),
            IoSlice::new(body.first().copied().unwrap_or(&[])),
            IoSlice::new(body.get(1).copied().unwrap_or(&[])),
        ];
        debug_assert!(body.len() <= 2);
        let mut bufs: &mut [IoSlice] = &mut slices;
        IoSlice::advance_slices(&mut bufs, 0);
        while !bufs.is_empty() {
            match stream.write_vectored(bufs) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut bufs, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }

        // Read until the head is complete.
        let limits = Limits {
            head_bytes_max: HEAD_MAX,
            body_bytes_max: BODY_MAX,
        };
        let head = loop {
            if self.filled > 0 {
                let parsed = parse_head(&self.buf[..self.filled], &limits);
                if let Some(head) = parsed.map_err(|e| invalid(format!("bad response: {e}")))? {
                    break head;
                }
            }
            if self.filled >= HEAD_MAX {
                return Err(invalid("response head too large".into()));
            }
            let n = read_some(stream, &mut self.buf[self.filled..])?;
            self.filled += n;
        };
        let (status, head_len, close) = (head.status, head.len_bytes, head.says_close());
        let answering = Answering::head_if(head_only);
        let framing = head
            .framing(answering)
            .map_err(|e| invalid(e.to_string()))?;
        let content_length = head.content_length().map_err(|e| invalid(e.to_string()))?;
        let body_len = match framing {
            Framing::Empty => 0,
            Framing::Length(n) if n <= BODY_MAX => n as usize,
            Framing::Length(n) => return Err(invalid(format!("response body of {n} bytes"))),
            Framing::Chunked => return Err(invalid("chunked responses are not supported".into())),
            Framing::UntilClose => {
                return Err(invalid(format!("status {status} without Content-Length")))
            }
        };
        let end = head_len + body_len;
        if self.buf.len() < end {
            self.buf.resize(end, 0);
        }
        while self.filled < end {
            let n = read_some(stream, &mut self.buf[self.filled..])?;
            self.filled += n;
        }
        self.last_end = end;
        self.close_after = close;
        Ok(Response {
            status,
            content_length,
            body_start: head_len,
            body_end: end,
        })
    }

    pub fn body(&self, r: &Response) -> &[u8] {
        &self.buf[r.body_start..r.body_end]
    }

    /// The start of the body as text, for error messages.
    pub fn preview(&self, r: &Response) -> String {
        let b = self.body(r);
        String::from_utf8_lossy(&b[..b.len().min(200)])
            .trim()
            .to_string()
    }
}

fn read_some(stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match stream.read(buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn exchanges_over_keep_alive_and_reconnects_after_close() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let mut served = 0;
            while served < 3 {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = vec![0u8; 4096];
                loop {
                    let mut got = 0;
                    let n = loop {
                        let n = s.read(&mut buf[got..]).unwrap();
                        if n == 0 {
                            break 0;
                        }
                        got += n;
                        if buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                            break got;
                        }
                    };
                    if n == 0 {
                        break;
                    }
                    served += 1;
                    let close = served == 2;
                    let resp = if close {
                        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
                    } else {
                        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
                    };
                    s.write_all(resp.as_bytes()).unwrap();
                    if close || served == 3 {
                        break;
                    }
                }
            }
        });
        let mut c = Conn::new(addr, Duration::from_secs(5));
        for _ in 0..3 {
            let r = c
                .exchange(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", &[], false)
                .unwrap();
            assert_eq!(r.status, 200);
            assert_eq!(c.body(&r), b"hello");
        }
        assert_eq!(c.connects, 2);
        server.join().unwrap();
    }
}
