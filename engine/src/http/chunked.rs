//! Chunked transfer coding: an incremental decoder that takes any split of the stream.
//!
//! Owns: [`ChunkedDecoder`] (its state in `ChunkState`): sizes, extensions, data, trailers.
//! Invariants: the decoded body never exceeds the decoder's `max_body_bytes` (413); a size
//! line is at most `CHUNK_SIZE_LINE_BYTES_MAX`, the trailers `TRAILER_BYTES_MAX`.
//! Must never: consume bytes past the end of the chunked body (they are the next request).

use super::*;

/// Where the chunked decoder is inside the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ChunkState {
    /// Hex digits of a chunk size (`digits` of them so far, value `size`).
    SizeDigits {
        size: u64,
        digits: u32,
    },
    /// After the digits: optional whitespace, then `;` extensions or CR.
    SizeAfterDigits {
        size: u64,
    },
    /// Inside chunk extensions: anything up to CR.
    SizeExtension {
        size: u64,
    },
    /// Saw the CR ending a chunk-size line; LF must follow.
    SizeLf {
        size: u64,
    },
    /// Copying chunk data; `remaining` bytes of this chunk are still to come.
    Data {
        remaining: u64,
    },
    /// After chunk data: CR, then LF.
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerLineStart,
    /// Inside a trailer line (ignored).
    TrailerLine,
    /// Saw the CR ending a trailer line; LF must follow. `empty` if that line was empty.
    TrailerLf {
        empty: bool,
    },
    Done,
    /// Refused the body; `ChunkedDecoder::failure` says why.
    Failed,
}

/// Incremental decoder of a `Transfer-Encoding: chunked` body.
///
/// Feed the bytes in any pieces; the output, the errors and the consumed counts add up to the
/// same as feeding them at once. Chunk extensions and trailers are checked for shape and
/// otherwise ignored. Line ends must be CRLF. After the terminating zero chunk and its trailer
/// section the decoder is done and consumes nothing more (what follows is the next request).
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: ChunkState,
    max_body_bytes: u64,
    /// Sum of the chunk sizes accepted so far (never above `max_body_bytes`).
    declared_bytes: u64,
    /// Data bytes appended to `out` so far (never above `declared_bytes`).
    decoded_bytes: u64,
    /// Bytes of the current chunk-size line, CRLF included.
    size_line_bytes: usize,
    /// Bytes of the trailer section so far.
    trailer_bytes: usize,
    /// Set exactly when `state` is `Failed`: every later call returns it again.
    failure: Option<HttpError>,
}

impl ChunkedDecoder {
    /// The most body bytes this decoder accepts.
    pub fn max_body_bytes(&self) -> u64 {
        self.max_body_bytes
    }

    /// A decoder that refuses (413) a body whose decoded size would exceed `max_body_bytes`.
    pub fn new(max_body_bytes: u64) -> Self {
        ChunkedDecoder {
            state: ChunkState::SizeDigits { size: 0, digits: 0 },
            max_body_bytes,
            declared_bytes: 0,
            decoded_bytes: 0,
            size_line_bytes: 0,
            trailer_bytes: 0,
            failure: None,
        }
    }

    /// Consumes from `input`, appending decoded body bytes to `out`; returns the bytes consumed,
    /// which is all of `input` unless the body ended inside it. After an error every later call
    /// returns the same error.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, HttpError> {
        if let Some(error) = &self.failure {
            assert!(self.state == ChunkState::Failed);
            return Err(error.clone());
        }
        let out_len_before = out.len();
        let mut consumed = 0usize;
        while consumed < input.len() {
            let rest = input.get(consumed..).unwrap_or(&[]);
            match self.state {
                ChunkState::Done => break,
                ChunkState::Failed => unreachable!("a failed decoder returns on entry"),
                ChunkState::Data { remaining } => {
                    let take = rest
                        .len()
                        .min(usize::try_from(remaining).unwrap_or(usize::MAX));
                    out.extend_from_slice(rest.get(..take).unwrap_or(&[]));
                    self.decoded_bytes += take as u64;
                    let remaining = remaining - take as u64;
                    self.state = if remaining == 0 {
                        ChunkState::DataCr
                    } else {
                        ChunkState::Data { remaining }
                    };
                    consumed += take;
                }
                _ => {
                    let byte = rest.first().copied().unwrap_or(0);
                    consumed += 1;
                    if let Err(error) = self.step(byte) {
                        self.state = ChunkState::Failed;
                        self.failure = Some(error.clone());
                        return Err(error);
                    }
                }
            }
        }
        assert!(consumed <= input.len());
        assert!(self.decoded_bytes <= self.declared_bytes);
        assert!(self.declared_bytes <= self.max_body_bytes);
        assert!((out.len() - out_len_before) as u64 <= consumed as u64);
        Ok(consumed)
    }

    /// True once the terminating zero chunk and the trailer section have been consumed.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Body bytes decoded so far.
    pub fn decoded_bytes(&self) -> u64 {
        self.decoded_bytes
    }

    /// Advances the framing state by one byte (everything except chunk data).
    pub(super) fn step(&mut self, byte: u8) -> Result<(), HttpError> {
        const BAD_CHUNK: HttpError = HttpError::bad("malformed chunk");
        self.state = match self.state {
            ChunkState::SizeDigits { .. }
            | ChunkState::SizeAfterDigits { .. }
            | ChunkState::SizeExtension { .. }
            | ChunkState::SizeLf { .. } => self.step_size_line(byte)?,
            ChunkState::DataCr if byte == b'\r' => ChunkState::DataLf,
            ChunkState::DataLf if byte == b'\n' => ChunkState::SizeDigits { size: 0, digits: 0 },
            ChunkState::DataCr | ChunkState::DataLf => {
                return Err(HttpError::bad("chunk data not followed by CRLF"));
            }
            ChunkState::TrailerLineStart
            | ChunkState::TrailerLine
            | ChunkState::TrailerLf { .. } => self.step_trailer(byte)?,
            ChunkState::Data { .. } | ChunkState::Done | ChunkState::Failed => {
                return Err(BAD_CHUNK);
            }
        };
        Ok(())
    }

    /// One byte of a chunk-size line: `1*HEXDIG [ BWS ";" ext ] CRLF`.
    pub(super) fn step_size_line(&mut self, byte: u8) -> Result<ChunkState, HttpError> {
        const BAD_SIZE: HttpError = HttpError::bad("malformed chunk size line");
        self.size_line_bytes += 1;
        if self.size_line_bytes > CHUNK_SIZE_LINE_BYTES_MAX {
            return Err(HttpError::bad("chunk size line too long"));
        }
        let next = match self.state {
            ChunkState::SizeDigits { size, digits } => match hex_digit(byte) {
                Some(_) if size > u64::MAX >> 4 => {
                    return Err(HttpError::bad("chunk size overflows"));
                }
                Some(d) => ChunkState::SizeDigits {
                    size: (size << 4) | d,
                    digits: digits + 1,
                },
                None if digits == 0 => return Err(BAD_SIZE),
                None => {
                    self.check_chunk_fits(size)?;
                    after_size_digits(size, byte).ok_or(BAD_SIZE)?
                }
            },
            ChunkState::SizeAfterDigits { size } => {
                after_size_digits(size, byte).ok_or(BAD_SIZE)?
            }
            ChunkState::SizeExtension { size } => match byte {
                b'\r' => ChunkState::SizeLf { size },
                b'\t' => ChunkState::SizeExtension { size },
                _ if byte < b' ' || byte == 0x7f => return Err(BAD_SIZE),
                _ => ChunkState::SizeExtension { size },
            },
            ChunkState::SizeLf { size } if byte == b'\n' => self.end_size_line(size),
            _ => return Err(BAD_SIZE),
        };
        Ok(next)
    }

    /// 413 as soon as a chunk size would take the body over the limit.
    pub(super) fn check_chunk_fits(&mut self, size: u64) -> Result<(), HttpError> {
        match self.declared_bytes.checked_add(size) {
            Some(total) if total <= self.max_body_bytes => {
                self.declared_bytes = total;
                Ok(())
            }
            _ => Err(HttpError::new(413, "body too large")),
        }
    }

    pub(super) fn end_size_line(&mut self, size: u64) -> ChunkState {
        assert!(self.size_line_bytes <= CHUNK_SIZE_LINE_BYTES_MAX);
        self.size_line_bytes = 0;
        if size == 0 {
            ChunkState::TrailerLineStart
        } else {
            ChunkState::Data { remaining: size }
        }
    }

    /// One byte of the trailer section: `*( field-line CRLF ) CRLF`, field lines ignored.
    pub(super) fn step_trailer(&mut self, byte: u8) -> Result<ChunkState, HttpError> {
        const BAD_TRAILER: HttpError = HttpError::bad("malformed trailer section");
        self.trailer_bytes += 1;
        if self.trailer_bytes > TRAILER_BYTES_MAX {
            return Err(HttpError::new(431, "trailer section too large"));
        }
        let next = match (self.state, byte) {
            (ChunkState::TrailerLineStart, b'\r') => ChunkState::TrailerLf { empty: true },
            (ChunkState::TrailerLineStart, b' ' | b'\t') => {
                return Err(HttpError::bad("obsolete line folding in trailer"));
            }
            (ChunkState::TrailerLine, b'\r') => ChunkState::TrailerLf { empty: false },
            (ChunkState::TrailerLine, b'\t') => ChunkState::TrailerLine,
            (ChunkState::TrailerLineStart | ChunkState::TrailerLine, _)
                if byte < b' ' || byte == 0x7f =>
            {
                return Err(BAD_TRAILER);
            }
            (ChunkState::TrailerLineStart | ChunkState::TrailerLine, _) => ChunkState::TrailerLine,
            (ChunkState::TrailerLf { empty: true }, b'\n') => ChunkState::Done,
            (ChunkState::TrailerLf { empty: false }, b'\n') => ChunkState::TrailerLineStart,
            _ => return Err(BAD_TRAILER),
        };
        Ok(next)
    }
}

/// The state after a chunk size's digits, given the byte that ended them.
pub(super) fn after_size_digits(size: u64, byte: u8) -> Option<ChunkState> {
    match byte {
        b' ' | b'\t' => Some(ChunkState::SizeAfterDigits { size }),
        b';' => Some(ChunkState::SizeExtension { size }),
        b'\r' => Some(ChunkState::SizeLf { size }),
        _ => None,
    }
}

pub(super) fn hex_digit(byte: u8) -> Option<u64> {
    match byte {
        b'0'..=b'9' => Some(u64::from(byte - b'0')),
        b'a'..=b'f' => Some(u64::from(byte - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(byte - b'A' + 10)),
        _ => None,
    }
}
