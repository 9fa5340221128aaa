//! A request's route and its state machine (`Stage`), with the types the stages carry.
//!
//! Owns: [`Route`], [`Flavour`], [`Stage`], [`Lookup`], [`VerifyPut`], [`BufferNeed`], [`BodyReader`], [`StreamPut`].
//! Invariants: a request is in exactly one stage; a stage with a file op in flight (`Write`,
//! `Read`, a `Stream` that is `writing`) keeps its stage until the completion returns.
//! Must never: hold behaviour; the handlers in the sibling files move requests between stages.

use super::*;

pub(super) enum BodyReader {
    Length { remaining: u64 },
    Chunked(ChunkedDecoder),
}

impl BodyReader {
    /// Decodes body bytes from `input` onto `out`: (bytes of `input` consumed, whether the
    /// body is complete).
    pub(super) fn take(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(usize, bool), HttpError> {
        match self {
            BodyReader::Length { remaining } => {
                let n = (*remaining as usize).min(input.len());
                out.extend_from_slice(&input[..n]);
                *remaining -= n as u64;
                Ok((n, *remaining == 0))
            }
            BodyReader::Chunked(decoder) => {
                decoder.decode(input, out).map(|n| (n, decoder.is_done()))
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Route {
    PutBlock {
        expected: Option<BlockHash>,
    },
    GetBlock {
        hash: BlockHash,
        head_only: bool,
        flavour: Flavour,
    },
    /// `GET`/`HEAD /ipfs/{identity CID}`: answered from the CID in the path.
    IpfsInline {
        head_only: bool,
        negotiated: Negotiated,
    },
    DeleteBlock {
        hash: BlockHash,
    },
    Missing,
    List,
    Health,
    Stats,
    Metrics,
}

/// How a stored block is answered: the `/block/` way, or as the IPFS gateway says.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Flavour {
    Block,
    Ipfs(Negotiated),
}

pub(super) enum Stage {
    /// Reading the request body.
    Body {
        reader: BodyReader,
        body: Vec<u8>,
        hasher: sha2::Sha256,
        crc: u32,
    },
    /// Body complete, waiting for a pool slot of `class`.
    WaitSlot {
        body: Vec<u8>,
        hash: BlockHash,
        crc: u32,
        deadline: Instant,
    },
    /// A PUT with Content-Length: the body goes into its slot piece by piece as it arrives.
    /// Not boxed: a box per PUT would be a heap allocation per request; an `Active` lives in
    /// its connection only while a request is in progress.
    Stream(StreamPut),
    /// Writing the (buffered, chunked) body into `slot`; the buffer is in the write op.
    Write {
        hash: BlockHash,
        crc: u32,
        slot: Slot,
        written: usize,
    },
    /// Waiting for the controller's occupy reply.
    Occupy { hash: BlockHash },
    /// Waiting for the buffer budget (`WorkerConfig::buffer_budget_bytes`).
    WaitBuffer { need: BufferNeed, deadline: Instant },
    /// A PUT of a block the worker's view already shows (durable): the body is read and hashed
    /// into no slot, then `200` (or `422`: `verify.rs`).
    Verify(VerifyPut),
    /// Waiting for its lookup in the worker's index view (`Worker::serve_reads`, within the
    /// same loop turn: no deadline of its own).
    Lookup(Lookup),
    /// Waiting for a release reply.
    Release,
    /// Reading the block from the data file.
    Read {
        location: Location,
        /// The version of the view the address came from (in the reader horizon).
        version: u64,
        read: usize,
    },
    /// The response is queued; the request ends when it is sent.
    Responded,
}

/// What a request in `Stage::Lookup` asks the worker's index view.
pub(super) enum Lookup {
    /// GET or HEAD of a block (`Route::GetBlock`, which holds the hash).
    Block,
    /// A PUT out of space: is the block stored already? (Then a 200, not a 507.)
    Dedup { hash: BlockHash },
    /// A PUT to a named hash, before its body: is the block stored already? (Then its body
    /// is only verified: no slot, no write, no controller.) `reader`: the body's framing.
    PreCheck { hash: BlockHash, reader: BodyReader },
    /// `POST /blocks/missing`: which of these hashes are not stored.
    Missing { hashes: Vec<BlockHash> },
    /// `GET /blocks` (or HEAD): up to `limit` stored blocks after `after`.
    List {
        after: Option<BlockHash>,
        limit: u16,
    },
}

/// A body read only to check that it hashes to `expected` (a block the view shows).
pub(super) struct VerifyPut {
    pub(super) reader: BodyReader,
    pub(super) hasher: sha2::Sha256,
    pub(super) expected: BlockHash,
    /// Body bytes taken so far.
    pub(super) taken: u64,
    /// The body bytes of one feed (decoded), hashed and cleared at once: at most a receive
    /// buffer's worth.
    pub(super) scratch: Vec<u8>,
}

/// What a request waiting for the buffer budget goes on with once it has its grant.
pub(super) enum BufferNeed {
    /// Read a block for a GET. The view version the address came from stays in flight while
    /// waiting (the slot must not be reused before the read).
    Read { location: Location, version: u64 },
    /// Read a body into one buffer (chunked PUT, `POST /blocks/missing`, a PUT that needs its
    /// hash before a 507); `send_continue`: whether to answer `Expect: 100-continue` when it
    /// starts.
    Body {
        reader: BodyReader,
        send_continue: SendContinue,
    },
}

/// Whether a body about to be read answers `Expect: 100-continue`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum SendContinue {
    /// Send `100 Continue` if the client asked for it and has sent nothing yet.
    IfExpected,
    /// Not now: the body was already asked for (a streamed PUT that falls back to reading
    /// its body into one buffer).
    No,
}

/// A PUT body streamed into its slot: at most one piece of [`STREAM_PIECE_BYTES`] is held in
/// memory, so a slow upload costs a piece, not a block.
pub(super) struct StreamPut {
    /// Declared body length.
    pub(super) len: u64,
    /// Body bytes not yet taken from the connection.
    pub(super) remaining: u64,
    /// The pool slot, once there is one (the body is not read before).
    pub(super) slot: Option<Slot>,
    /// Until when to wait for a slot.
    pub(super) deadline: Instant,
    /// Taken bytes not yet written (empty while its buffer is in a write).
    pub(super) piece: Vec<u8>,
    /// Bytes a piece holds before it is written: [`STREAM_PIECE_BYTES`] with a buffer
    /// grant (a "lane": the piece and a receive buffer), 0 while waiting for one,
    /// [`IDLE_RECV_BYTES`] after waiting in vain (slower, never stuck behind slow uploads).
    pub(super) piece_max: usize,
    /// Waiting for a lane (queued for a `GrantKind::Lane`) until then; after it, small pieces.
    pub(super) lane_deadline: Option<Instant>,
    /// A write of the current piece is in flight.
    pub(super) writing: bool,
    /// Bytes of the piece in flight already written (short writes).
    pub(super) piece_written: usize,
    /// Body bytes written before the current piece.
    pub(super) written: u64,
    pub(super) hasher: sha2::Sha256,
    pub(super) crc: u32,
}

impl Stage {
    /// The streamed upload of a request in `Stage::Stream` (a programmer error otherwise:
    /// the caller dispatched on the stage).
    pub(super) fn stream_mut(&mut self) -> &mut StreamPut {
        match self {
            Stage::Stream(s) => s,
            _ => panic!("not a streamed upload"),
        }
    }

    pub(super) fn is_lookup(&self) -> bool {
        matches!(self, Stage::Lookup(_))
    }

    /// Takes the stage out, leaving `Responded` (the caller puts back what goes on).
    pub(super) fn take(&mut self) -> Stage {
        std::mem::replace(self, Stage::Responded)
    }
}
