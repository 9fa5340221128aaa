//! Block addresses: SHA-256 of a block's bytes, written as 64 lowercase hex characters.

use std::fmt;

/// A block's address: the SHA-256 of exactly its bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct BlockHash(pub [u8; 32]);

pub const HASH_HEX_LEN: usize = 64;

impl BlockHash {
    pub const ZERO: BlockHash = BlockHash([0; 32]);

    /// Hashes `data` in one go (streaming hashing lives in the worker).
    pub fn of(data: &[u8]) -> BlockHash {
        use sha2::Digest;
        BlockHash(sha2::Sha256::digest(data).into())
    }

    /// Parses 64 hex characters, either case. Anything else is `None`.
    pub fn from_hex(text: &[u8]) -> Option<BlockHash> {
        if text.len() != HASH_HEX_LEN {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in text.chunks_exact(2).enumerate() {
            out[i] = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
        }
        Some(BlockHash(out))
    }

    /// Writes the 64 lowercase hex characters into `out`.
    pub fn write_hex(&self, out: &mut [u8; HASH_HEX_LEN]) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for (i, b) in self.0.iter().enumerate() {
            out[2 * i] = DIGITS[(b >> 4) as usize];
            out[2 * i + 1] = DIGITS[(b & 15) as usize];
        }
    }

    /// The 64 lowercase hex characters, on the stack.
    pub fn hex(&self) -> Hex {
        let mut buf = [0u8; HASH_HEX_LEN];
        self.write_hex(&mut buf);
        Hex(buf)
    }

    pub fn to_hex(&self) -> String {
        let mut buf = [0u8; HASH_HEX_LEN];
        self.write_hex(&mut buf);
        String::from_utf8(buf.to_vec()).expect("hex digits are ASCII")
    }

    /// The next hash in ascending order, `None` after all-ones (used by listing).
    pub fn successor(&self) -> Option<BlockHash> {
        let mut out = self.0;
        for byte in out.iter_mut().rev() {
            if *byte == 0xff {
                *byte = 0;
            } else {
                *byte += 1;
                return Some(BlockHash(out));
            }
        }
        None
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Debug for BlockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlockHash({})", &self.to_hex()[..16])
    }
}

impl fmt::Display for BlockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector_and_hex_round_trip() {
        let h = BlockHash::of(b"abc");
        let hex = h.to_hex();
        assert_eq!(
            hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(BlockHash::from_hex(hex.as_bytes()), Some(h));
        assert_eq!(BlockHash::from_hex(hex.to_uppercase().as_bytes()), Some(h));
    }

    #[test]
    fn bad_hex_is_rejected() {
        assert_eq!(BlockHash::from_hex(b"abc"), None);
        let mut bad = [b'a'; 64];
        bad[10] = b'g';
        assert_eq!(BlockHash::from_hex(&bad), None);
    }

    #[test]
    fn successor_carries() {
        let mut a = [0u8; 32];
        a[31] = 0xff;
        let mut b = [0u8; 32];
        b[30] = 1;
        assert_eq!(BlockHash(a).successor(), Some(BlockHash(b)));
        assert_eq!(BlockHash([0xff; 32]).successor(), None);
    }
}

/// A hash in 64 lowercase hex characters, without a heap allocation ([`BlockHash::hex`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Hex([u8; HASH_HEX_LEN]);

impl Hex {
    pub fn as_bytes(&self) -> &[u8; HASH_HEX_LEN] {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits are ASCII")
    }
}

impl fmt::Debug for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
