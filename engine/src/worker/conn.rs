//! A connection: its slot (`ConnRef`: index + generation), what it holds, and look-ups by
//! `ConnRef` that tell a gone connection from a live one.
//!
//! Owns: [`ConnRef`], [`Conn`], [`Active`] (the request in progress) and the accessors
//! (`conn_at`, `stage_of`, `stage_head`, `stage_method`, `persistence_of`).
//! Invariants: a `ConnRef` names a connection only while the generations match; `rbuf` is
//! present exactly when no receive is in flight; a grant is held only with a request; a
//! connection's [`ConnState`] only moves forward.
//! Must never: reach a connection by index alone (a reused slot is another connection).

use super::*;

/// A connection slot index and its generation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct ConnRef {
    pub(super) index: usize,
    pub(super) generation: u32,
}

pub(super) struct Conn {
    pub(super) generation: u32,
    pub(super) handle: ConnHandle,
    /// Received bytes not yet consumed (None while a receive owns the buffer).
    pub(super) rbuf: Option<Vec<u8>>,
    pub(super) recv_op: Option<OpId>,
    pub(super) send_op: Option<OpId>,
    pub(super) send_started: Instant,
    pub(super) file_op: Option<OpId>,
    /// Responses waiting to be sent, each `(buffer, start, end)`.
    pub(super) outq: VecDeque<(Vec<u8>, usize, usize)>,
    /// The peer has shut its side (a receive returned 0 bytes). A field of its own: it can
    /// happen in any state (mid-request, while a response is sent, while lingering), and
    /// the connection still sends what it owes.
    pub(super) eof: bool,
    pub(super) active: Option<Active>,
    /// First byte of the current request (head not complete yet).
    pub(super) head_started: Option<Instant>,
    pub(super) last_activity: Instant,
    /// Whether the connection stays open after the current response: the request's own
    /// wish (`Connection`, HTTP/1.0), cleared by an answer that closes and by shutdown. A
    /// property of the request in progress, not a state of the connection.
    pub(super) keep_alive: bool,
    /// Where the connection is in its life.
    pub(super) state: ConnState,
    /// Whether it was accepted over the connection limit, fixed at accept: such a
    /// connection is answered `503` and closed, and counts in `Worker::rejecting` (not
    /// `conns_open`) until its slot is freed, whatever its state.
    pub(super) admission: Admission,
    /// Bytes of a refused request's body still to skip.
    pub(super) discard: u64,
    /// The part of the worker's buffer budget the current request holds (none between
    /// requests).
    pub(super) grant: Option<Grant>,
}

/// Where a connection is in its life. Transitions only go down this list:
/// `Open` -> (`Lingering` ->) `Closing` -> `CloseSubmitted`; the slot is freed when the close
/// op completes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum ConnState {
    /// Serving requests.
    Open,
    /// Answered with `Connection: close` while the client may still send a refused body:
    /// skipping its `discard` bytes before closing, so the close does not reset the
    /// connection before the client reads the answer.
    Lingering,
    /// Closing: its receive and send are cancelled; waiting for every op on it to complete.
    Closing,
    /// Every op on it completed and the close op is submitted.
    CloseSubmitted,
}

/// Whether a connection was accepted within the connection limit.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Admission {
    Admitted,
    /// Over `max_connections`: answered `503`, then closed.
    OverLimit,
}

impl Conn {
    /// Closing or closed: no new I/O but the close.
    pub(super) fn is_closing(&self) -> bool {
        matches!(self.state, ConnState::Closing | ConnState::CloseSubmitted)
    }

    pub(super) fn over_limit(&self) -> bool {
        self.admission == Admission::OverLimit
    }
}

pub(super) struct Active {
    pub(super) head: RequestHead,
    pub(super) route: Route,
    pub(super) started: Instant,
    /// When the request last asked the controller something: its wait for storage is bounded
    /// by the request timeout from there (a slow client's upload does not eat storage's time).
    pub(super) asked: Instant,
    pub(super) stage: Stage,
    /// `request` span (debug level): worker, request number, method, path.
    pub(super) span: tracing::Span,
}

/// The connection `r` names, if it is still that connection (field-disjoint borrow).
pub(super) fn conn_at(conns: &mut [Option<Conn>], r: ConnRef) -> Option<&mut Conn> {
    match conns.get_mut(r.index) {
        Some(Some(c)) if c.generation == r.generation => Some(c),
        _ => None,
    }
}

impl super::ConnTable {
    /// The connection a handler runs for: open by the handler's contract (its op or its
    /// request is live), so a miss is a worker bug.
    pub(super) fn live_mut(&mut self, r: ConnRef) -> &mut Conn {
        conn_at(&mut self.entries, r).expect("a handler's connection is open")
    }
}

pub(super) fn stage_of(conns: &[Option<Conn>], r: ConnRef) -> Option<&Stage> {
    match conns.get(r.index) {
        Some(Some(c)) if c.generation == r.generation => c.active.as_ref().map(|a| &a.stage),
        _ => None,
    }
}

/// The head of the request in progress on connection `r`.
pub(super) fn stage_head(conns: &[Option<Conn>], r: ConnRef) -> Option<&RequestHead> {
    match conns.get(r.index) {
        Some(Some(c)) if c.generation == r.generation => c.active.as_ref().map(|a| &a.head),
        _ => None,
    }
}

/// The method of the request in progress on `r` (`Other` if none).
pub(super) fn stage_method(conns: &[Option<Conn>], r: ConnRef) -> Method {
    let conn = conns.get(r.index).and_then(Option::as_ref);
    conn.filter(|c| c.generation == r.generation)
        .and_then(|c| c.active.as_ref())
        .map_or(Method::Other, |a| a.head.method)
}

/// The stage of the request in progress on connection `r`, if it is still that connection.
/// What a response on `conn` says about the connection: closed unless it is kept alive, and
/// an HTTP/1.0 client that asked to keep it is told so.
pub(super) fn persistence_of(conn: &Conn) -> http::Persistence {
    let http10 = conn.active.as_ref().is_some_and(|a| a.head.http10);
    match (conn.keep_alive, http10) {
        (false, _) => http::Persistence::Close,
        (true, true) => http::Persistence::KeepAlive10,
        (true, false) => http::Persistence::KeepOpen,
    }
}

impl Worker {
    /// The request in progress on `r` (a programmer error if there is none: the caller
    /// was dispatched on its stage or its controller reply).
    pub(super) fn active_mut(&mut self, r: ConnRef) -> &mut Active {
        conn_at(&mut self.conns.entries, r)
            .and_then(|c| c.active.as_mut())
            .expect("a request in progress on an open connection")
    }

    pub(super) fn conn_mut(&mut self, r: ConnRef) -> Option<&mut Conn> {
        conn_at(&mut self.conns.entries, r)
    }

    pub(super) fn conn_ref(&self, index: usize) -> ConnRef {
        ConnRef {
            index,
            generation: self.conns.generations[index],
        }
    }
}
