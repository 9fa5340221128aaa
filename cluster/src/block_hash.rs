//! `BlockHash`: a block's address, the SHA-256 of its bytes.
//!
//! Owns parsing (64 hex characters, either case) and printing (lowercase). It never does I/O.
//! Invariant: a `BlockHash` always holds exactly 32 bytes, so every printed form is 64 chars.

use std::fmt;

use sha2::{Digest, Sha256};

/// Bytes in a SHA-256 digest.
pub const HASH_BYTES: usize = 32;
/// Characters in a printed block address.
pub const HASH_HEX_CHARS: usize = HASH_BYTES * 2;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockHash(pub [u8; HASH_BYTES]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a 64-hex block address: {0:?}")]
pub struct BadHash(pub String);

impl BlockHash {
    /// The address of `bytes`.
    pub fn of(bytes: &[u8]) -> BlockHash {
        BlockHash(Sha256::digest(bytes).into())
    }

    /// Parses 64 hex characters (either case).
    pub fn parse(text: &str) -> Result<BlockHash, BadHash> {
        let raw = text.as_bytes();
        if raw.len() != HASH_HEX_CHARS {
            return Err(BadHash(shorten(text)));
        }
        let mut out = [0u8; HASH_BYTES];
        for (i, pair) in raw.chunks_exact(2).enumerate() {
            let (Some(hi), Some(lo)) = (nibble(pair[0]), nibble(pair[1])) else {
                return Err(BadHash(shorten(text)));
            };
            out[i] = hi << 4 | lo;
        }
        Ok(BlockHash(out))
    }

    /// The first 8 bytes as a number: uniform over blocks, the input of placement scores.
    pub fn prefix_u64(&self) -> u64 {
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(first)
    }
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Error messages quote at most 80 characters of what they were given.
fn shorten(text: &str) -> String {
    text.chars().take(80).collect()
}

impl fmt::Display for BlockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for BlockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlockHash({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The empty string's SHA-256 prints as the well-known constant and parses back.
    #[test]
    fn prints_and_parses_sha256() {
        let h = BlockHash::of(b"");
        let text = h.to_string();
        assert_eq!(
            text,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(BlockHash::parse(&text.to_uppercase()), Ok(h));
    }

    /// Wrong lengths and non-hex characters are refused.
    #[test]
    fn refuses_bad_addresses() {
        assert!(BlockHash::parse("abc").is_err());
        assert!(BlockHash::parse(&"g".repeat(64)).is_err());
        assert!(BlockHash::parse(&"a".repeat(65)).is_err());
    }
}
