//! Buffer pools: small (idle receive), receive (request in progress), large (a block) and
//! piece (an upload's 64 KiB piece) buffers, recycled instead of reallocated.
//!
//! Owns: taking and recycling buffers (`small_buf`, `recv_buf`, `large_buf_of_len`, `read_buf`,
//! `recycle`, `recycle_piece`, `shrink_rbuf`).
//! Invariants: idle buffers kept are bounded per kind (`BUFFERS_KEPT_MAX`,
//! `RECV_BUFS_KEPT_MAX`, and the budget for large and piece buffers).
//! Must never: decide who may hold a large buffer; that is the budget's (budget.rs).

use super::*;

/// Idle buffers kept for reuse, by kind.
#[derive(Default)]
pub(super) struct BufferPools {
    /// Idle-receive buffers (`IDLE_RECV_BYTES`).
    pub(super) small: Vec<Vec<u8>>,
    /// Block buffers (`LARGE_BUF_BYTES`), kept at their length.
    pub(super) large: Vec<Vec<u8>>,
    /// Upload pieces (`STREAM_PIECE_BYTES`).
    pub(super) piece: Vec<Vec<u8>>,
    /// Receive buffers of a request in progress (`recv_chunk_bytes` and a little more).
    pub(super) recv: Vec<Vec<u8>>,
    /// Buffers of finished requests' heads, for the next heads (no allocation per request).
    pub(super) heads: HeadBuffers,
    /// Where a GET's response head is written before it goes in front of the body.
    pub(super) head_scratch: Vec<u8>,
}

impl Worker {
    pub(super) fn small_buf(&mut self) -> Vec<u8> {
        let cap = IDLE_RECV_BYTES;
        match self.bufs.small.pop() {
            Some(mut b) => {
                b.clear();
                b
            }
            None => Vec::with_capacity(cap),
        }
    }

    pub(super) fn large_buf(&mut self) -> Vec<u8> {
        match self.bufs.large.pop() {
            Some(mut b) => {
                b.clear();
                b
            }
            None => Vec::with_capacity(LARGE_BUF_BYTES),
        }
    }

    /// A receive buffer with room for `need` bytes, for a request in progress.
    pub(super) fn recv_buf(&mut self, need: usize) -> Vec<u8> {
        match self.bufs.recv.pop() {
            Some(mut b) if b.capacity() >= need => {
                b.clear();
                b
            }
            _ => Vec::with_capacity(need.max(self.recv_buf_bytes())),
        }
    }

    /// The capacity of a pooled receive buffer: a chunk plus what may already be buffered.
    pub(super) fn recv_buf_bytes(&self) -> usize {
        self.config.recv_chunk_bytes + 2 * IDLE_RECV_BYTES
    }

    /// A large buffer of exactly `len` bytes whose contents are unspecified (the read that
    /// fills it overwrites them): zero-filling 512 KiB per GET was 13% of the server's CPU.
    pub(super) fn large_buf_of_len(&mut self, len: usize) -> Vec<u8> {
        assert!(len <= LARGE_BUF_BYTES);
        let mut buf = match self.bufs.large.pop() {
            Some(b) => b,
            None => Vec::with_capacity(LARGE_BUF_BYTES),
        };
        if buf.len() >= len {
            buf.truncate(len);
        } else {
            buf.resize(len, 0);
        }
        buf
    }

    /// The buffer a GET of a block of `len` bytes reads into (the head room in front), from
    /// the smallest pool it fits: a 4 KiB block does not pin a 512 KiB buffer.
    pub(super) fn read_buf(&mut self, len: u32) -> Vec<u8> {
        let end = HEAD_ROOM_BYTES + len as usize;
        let mut buf = match self.read_grant(len) {
            0 => self.small_buf(),
            LARGE_BUF_BYTES => return self.large_buf_of_len(end),
            _ => self.recv_buf(end),
        };
        buf.resize(end, 0);
        buf
    }

    pub(super) fn recycle(&mut self, mut buf: Vec<u8>) {
        let large = LARGE_BUF_BYTES;
        if buf.capacity() >= large && buf.capacity() <= 2 * large {
            // Kept at its length: `large_buf_of_len` then needs no zero fill. The idle ones
            // kept are bounded by the budget too (memory that is not given back is RSS).
            if self.bufs.large.len() < self.config.buffer_budget_bytes / large {
                self.bufs.large.push(buf);
            }
            return;
        }
        buf.clear();
        let recv = self.recv_buf_bytes();
        if buf.capacity() >= recv && buf.capacity() <= 2 * recv {
            if self.bufs.recv.len() < RECV_BUFS_KEPT_MAX {
                self.bufs.recv.push(buf);
            }
        } else if (IDLE_RECV_BYTES..=2 * IDLE_RECV_BYTES).contains(&buf.capacity())
            && self.bufs.small.len() < BUFFERS_KEPT_MAX
        {
            self.bufs.small.push(buf);
        }
    }

    /// Swaps a connection's receive buffer for a small one if what it holds fits.
    pub(super) fn shrink_rbuf(&mut self, r: ConnRef) {
        let Some(conn) = conn_at(&mut self.conns.entries, r) else {
            return;
        };
        let Some(rbuf) = conn.rbuf.as_ref() else {
            return;
        };
        if rbuf.capacity() <= 2 * IDLE_RECV_BYTES || rbuf.len() > IDLE_RECV_BYTES {
            return;
        }
        let mut small = self.small_buf();
        let conn = self.conns.live_mut(r);
        let rbuf = conn.rbuf.as_mut().expect("checked above");
        small.extend_from_slice(rbuf);
        let big = std::mem::replace(rbuf, small);
        self.recycle(big);
    }

    pub(super) fn recycle_piece(&mut self, mut buf: Vec<u8>) {
        buf.clear();
        if buf.capacity() != STREAM_PIECE_BYTES {
            // A small piece (an upload beyond the budget).
            self.recycle(buf);
        } else if self.bufs.piece.len() < self.config.buffer_budget_bytes / STREAM_PIECE_BYTES {
            self.bufs.piece.push(buf);
        }
    }
}
