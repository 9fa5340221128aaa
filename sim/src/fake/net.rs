//! The fake network: byte streams between simulated clients and the workers' listeners.
//!
//! Fault model:
//! - A client connects to one worker's listener (SO_REUSEPORT picks one; here the client does);
//!   the connection waits in that worker's backlog until an Accept takes it.
//! - Bytes a client sends arrive in order, but the ring hands them to Recv in whatever pieces
//!   it likes (short reads), after a seeded latency.
//! - Each connection has a receive window on the client side: a client that does not read makes
//!   the server's Send wait (a slow reader), as a full socket buffer would.
//! - A client may close its write side after its last request (FIN: Recv returns 0), or vanish
//!   (reset: the server's next Recv or Send fails with ECONNRESET or EPIPE).
//! - A server crash resets every connection; clients see it as a reset.
//!
//! Handles are never reused (a real kernel reuses descriptors; the worker's generations guard
//! against stale ops either way).

use std::collections::{BTreeMap, VecDeque};

use engine::io::OpId;

#[derive(Debug)]
pub struct NetConn {
    pub worker: usize,
    pub client: usize,
    /// Bytes the client sent that the server has not received yet.
    pub to_server: VecDeque<u8>,
    /// The client closed its write side: after `to_server` drains, Recv returns 0.
    pub client_fin: bool,
    /// The client vanished (reset).
    pub client_gone: bool,
    /// Bytes the server sent that the client has not read yet.
    pub to_client: VecDeque<u8>,
    /// The server closed the connection (Close completed) or crashed.
    pub server_closed: bool,
    /// The server side vanished with a crash (the client sees a reset, not EOF).
    pub server_reset: bool,
    pub accepted: bool,
    pub window_bytes: usize,
    /// A Recv waiting for bytes (parked in the worker's ring).
    pub recv_waiter: Option<OpId>,
    /// A Send waiting for window space.
    pub send_waiter: Option<OpId>,
    /// A socket fault was injected on this connection (explains a close without a response).
    pub faulted: bool,
}

#[derive(Debug, Default)]
pub struct Net {
    conns: BTreeMap<u64, NetConn>,
    backlog: Vec<VecDeque<u64>>,
    next_handle: u64,
    pub connects: u64,
}

impl Net {
    pub fn new(workers: usize) -> Net {
        Net {
            conns: BTreeMap::new(),
            backlog: (0..workers).map(|_| VecDeque::new()).collect(),
            next_handle: 1000,
            connects: 0,
        }
    }

    /// A client opens a connection to `worker`; returns its handle.
    pub fn connect(&mut self, worker: usize, client: usize, window_bytes: usize) -> u64 {
        assert!(worker < self.backlog.len());
        assert!(window_bytes >= 1);
        let handle = self.next_handle;
        self.next_handle += 1;
        self.connects += 1;
        self.conns.insert(
            handle,
            NetConn {
                worker,
                client,
                to_server: VecDeque::new(),
                client_fin: false,
                client_gone: false,
                to_client: VecDeque::new(),
                server_closed: false,
                server_reset: false,
                accepted: false,
                window_bytes,
                recv_waiter: None,
                send_waiter: None,
                faulted: false,
            },
        );
        self.backlog[worker].push_back(handle);
        handle
    }

    pub fn backlog_len(&self, worker: usize) -> usize {
        self.backlog[worker].len()
    }

    /// The next connection for an Accept on `worker` (skipping ones whose client vanished
    /// before the server took them: the kernel would still hand them out, reset; we do too).
    pub fn accept(&mut self, worker: usize) -> Option<u64> {
        let handle = self.backlog[worker].pop_front()?;
        let conn = self.conns.get_mut(&handle).expect("backlog entry exists");
        conn.accepted = true;
        Some(handle)
    }

    pub fn get(&self, handle: u64) -> Option<&NetConn> {
        self.conns.get(&handle)
    }

    pub fn get_mut(&mut self, handle: u64) -> Option<&mut NetConn> {
        self.conns.get_mut(&handle)
    }

    /// The client sends bytes; returns the Recv to wake, if one is parked.
    pub fn client_send(&mut self, handle: u64, bytes: &[u8]) -> Option<(usize, OpId)> {
        let conn = self
            .conns
            .get_mut(&handle)
            .expect("client sends on its connection");
        assert!(!conn.client_fin && !conn.client_gone, "send after close");
        if conn.server_closed {
            return None;
        }
        conn.to_server.extend(bytes);
        conn.recv_waiter.take().map(|op| (conn.worker, op))
    }

    /// The client reads up to `max` bytes; returns them and the Send to wake, if any.
    pub fn client_read(&mut self, handle: u64, max: usize) -> (Vec<u8>, Option<(usize, OpId)>) {
        let conn = self
            .conns
            .get_mut(&handle)
            .expect("client reads its connection");
        let n = max.min(conn.to_client.len());
        let bytes: Vec<u8> = conn.to_client.drain(..n).collect();
        let wake = if n > 0 {
            conn.send_waiter.take().map(|op| (conn.worker, op))
        } else {
            None
        };
        (bytes, wake)
    }

    /// The client closes its write side (FIN) or vanishes (reset); returns ops to wake.
    pub fn client_close(&mut self, handle: u64, reset: bool) -> Vec<(usize, OpId)> {
        let Some(conn) = self.conns.get_mut(&handle) else {
            return Vec::new();
        };
        if reset {
            conn.client_gone = true;
            conn.to_client.clear();
        } else {
            conn.client_fin = true;
        }
        let w = conn.worker;
        let wake: Vec<(usize, OpId)> = [conn.recv_waiter.take(), conn.send_waiter.take()]
            .into_iter()
            .flatten()
            .map(|op| (w, op))
            .collect();
        self.reap(handle);
        wake
    }

    /// The server's Close completed.
    pub fn server_close(&mut self, handle: u64) {
        if let Some(conn) = self.conns.get_mut(&handle) {
            conn.server_closed = true;
            conn.to_server.clear();
        }
        self.reap(handle);
    }

    /// Forgets a connection once neither side can use it any more.
    fn reap(&mut self, handle: u64) {
        let Some(conn) = self.conns.get(&handle) else {
            return;
        };
        let client_done = conn.client_gone || (conn.client_fin && conn.to_client.is_empty());
        if client_done && conn.server_closed {
            self.conns.remove(&handle);
        }
    }

    /// The client has read everything and the server has closed: the client may forget it.
    pub fn client_forget(&mut self, handle: u64) {
        if let Some(conn) = self.conns.get_mut(&handle) {
            conn.client_gone = true;
        }
        self.reap(handle);
    }

    /// A crash: every connection is reset and every backlog emptied.
    pub fn crash(&mut self) {
        for conn in self.conns.values_mut() {
            conn.server_closed = true;
            conn.server_reset = true;
            conn.recv_waiter = None;
            conn.send_waiter = None;
            conn.to_server.clear();
        }
        for b in &mut self.backlog {
            b.clear();
        }
        let handles: Vec<u64> = self.conns.keys().copied().collect();
        for h in handles {
            self.reap(h);
        }
    }

    pub fn open_connections(&self) -> usize {
        self.conns.len()
    }
}
