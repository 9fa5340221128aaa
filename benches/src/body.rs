//! PUT bodies that no earlier PUT carried, and cheap verification of GET bodies.
//!
//! `unique-tail` (the default) keeps the client light on the 2 shared cores: every body is
//! `base[..p] ++ tail`, where `base` is 512 KiB of random bytes drawn once per run, `p` is the
//! largest multiple of 64 with at least 16 bytes left, and the tail starts with 16 bytes unique to
//! the PUT (run nonce, connection, sequence number) followed by random bytes. The SHA-256 state
//! after `base[..p]` is computed once per length, so hashing a PUT costs one or two compression
//! rounds, and a GET body is verified completely (its SHA-256 equals its address) by a `memcmp`
//! of the prefix plus hashing the tail. The server still hashes and stores every byte; neither
//! buddy-blocks nor nginx looks at content otherwise, so this changes nothing for them.
//!
//! `random` fills every byte from the PRNG and hashes the whole body on the client.

use sha2::{Digest, Sha256};

use engine::hash::BlockHash;

use crate::spec::BLOCK_MAX;
use crate::Rng;

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum BodyMode {
    /// Run-wide random prefix plus a unique random tail; SHA-256 midstate cached per length.
    UniqueTail,
    /// Every byte random; full SHA-256 on the client for PUT and GET.
    Random,
}

impl BodyMode {
    pub fn name(self) -> &'static str {
        match self {
            BodyMode::UniqueTail => "unique-tail",
            BodyMode::Random => "random",
        }
    }
}

/// Bytes at the start of the tail that make a body unique.
pub const UNIQUE_BYTES: usize = 16;

pub struct BodyFactory {
    mode: BodyMode,
    base: Vec<u8>,
    /// (length, prefix length, SHA-256 state after `base[..prefix]`).
    mids: Vec<(usize, usize, Sha256)>,
}

/// A body made by [`BodyFactory::make`]: `base[..prefix]` followed by the caller's buffer.
#[derive(Clone, Copy, Debug)]
pub struct Made {
    pub hash: BlockHash,
    pub len: usize,
    prefix: usize,
}

impl Made {
    /// The body as two slices to write back to back (the first may be empty).
    pub fn parts<'a>(&self, f: &'a BodyFactory, buf: &'a [u8]) -> [&'a [u8]; 2] {
        debug_assert_eq!(self.prefix + buf.len(), self.len);
        [&f.base[..self.prefix], buf]
    }
}

fn prefix_len(len: usize) -> usize {
    if len < UNIQUE_BYTES {
        0
    } else {
        (len - UNIQUE_BYTES) / 64 * 64
    }
}

impl BodyFactory {
    /// `lens`: every length `make` will be asked for (others work, hashed in full).
    pub fn new(mode: BodyMode, lens: &[usize], rng: &mut Rng) -> BodyFactory {
        let mut base = Vec::new();
        let mut mids = Vec::new();
        if mode == BodyMode::UniqueTail {
            base = vec![0u8; BLOCK_MAX];
            rng.fill(&mut base);
            for &len in lens {
                let p = prefix_len(len);
                if len >= UNIQUE_BYTES && !mids.iter().any(|(l, _, _)| *l == len) {
                    let mut h = Sha256::new();
                    h.update(&base[..p]);
                    mids.push((len, p, h));
                }
            }
        }
        BodyFactory { mode, base, mids }
    }

    fn mid(&self, len: usize) -> Option<&(usize, usize, Sha256)> {
        self.mids.iter().find(|(l, _, _)| *l == len)
    }

    /// A new body of `len` bytes whose first bytes after the shared prefix are `unique`; `buf`
    /// receives everything after the prefix.
    pub fn make(&self, len: usize, unique: [u64; 2], rng: &mut Rng, buf: &mut Vec<u8>) -> Made {
        assert!(len > 0 && len <= BLOCK_MAX);
        let mut u = [0u8; UNIQUE_BYTES];
        u[..8].copy_from_slice(&unique[0].to_le_bytes());
        u[8..].copy_from_slice(&unique[1].to_le_bytes());
        match self.mid(len) {
            Some((_, p, state)) => {
                buf.clear();
                buf.resize(len - p, 0);
                buf[..UNIQUE_BYTES].copy_from_slice(&u);
                rng.fill(&mut buf[UNIQUE_BYTES..]);
                let mut h = state.clone();
                h.update(&buf[..]);
                Made {
                    hash: BlockHash(h.finalize().into()),
                    len,
                    prefix: *p,
                }
            }
            None => {
                buf.clear();
                buf.resize(len, 0);
                rng.fill(buf);
                let n = len.min(UNIQUE_BYTES);
                buf[..n].copy_from_slice(&u[..n]);
                Made {
                    hash: BlockHash::of(buf),
                    len,
                    prefix: 0,
                }
            }
        }
    }

    /// Whether `body` hashes to `hash` (exactly: SHA-256 of all its bytes).
    pub fn verify(&self, body: &[u8], hash: &BlockHash) -> bool {
        if let Some((_, p, state)) = self.mid(body.len()) {
            if body[..*p] == self.base[..*p] {
                let mut h = state.clone();
                h.update(&body[*p..]);
                let got: [u8; 32] = h.finalize().into();
                return got == hash.0;
            }
        }
        BlockHash::of(body) == *hash
    }

    pub fn mode(&self) -> BodyMode {
        self.mode
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_hash_to_their_address_and_differ() {
        for mode in [BodyMode::UniqueTail, BodyMode::Random] {
            let lens = [1usize, 15, 16, 100, 4096, 65536, BLOCK_MAX];
            let mut rng = Rng::new(3);
            let f = BodyFactory::new(mode, &lens, &mut rng);
            let mut seen = std::collections::HashSet::new();
            for (i, &len) in lens.iter().chain(lens.iter()).enumerate() {
                let mut buf = Vec::new();
                let m = f.make(len, [9, i as u64], &mut rng, &mut buf);
                let [a, b] = m.parts(&f, &buf);
                let whole = [a, b].concat();
                assert_eq!(whole.len(), len);
                assert_eq!(BlockHash::of(&whole), m.hash, "{mode:?} {len}");
                assert!(f.verify(&whole, &m.hash));
                let mut bad = whole.clone();
                bad[len / 2] ^= 1;
                assert!(!f.verify(&bad, &m.hash));
                assert!(seen.insert(m.hash) || len < 2);
            }
        }
    }
}
