//! A block's address (the SHA-256 of its bytes): the engine's `BlockHash`, with what the
//! cluster adds to it: parsing text into a typed error, and the number placement scores from.
//!
//! It never does I/O. The type itself (hashing, hex printing, ordering) is the engine's, so
//! the node and the cluster cannot disagree on what an address is.

pub use engine::hash::{BlockHash, HASH_HEX_LEN};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a 64-hex block address: {0:?}")]
pub struct BadHash(pub String);

/// Parses 64 hex characters (either case).
pub fn parse(text: &str) -> Result<BlockHash, BadHash> {
    BlockHash::from_hex(text.as_bytes()).ok_or_else(|| BadHash(text.chars().take(80).collect()))
}

/// The first 8 bytes as a number: uniform over blocks, the input of placement scores.
pub fn placement_key(hash: &BlockHash) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.0[..8]);
    u64::from_be_bytes(first)
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
        assert_eq!(parse(&text.to_uppercase()), Ok(h));
        assert_eq!(placement_key(&h), 0xe3b0_c442_98fc_1c14);
    }

    /// Wrong lengths and non-hex characters are refused, quoting the input.
    #[test]
    fn refuses_bad_addresses() {
        assert_eq!(parse("abc"), Err(BadHash("abc".into())));
        assert!(parse(&"g".repeat(64)).is_err());
        assert!(parse(&"a".repeat(65)).is_err());
    }
}
