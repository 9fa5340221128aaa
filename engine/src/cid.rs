//! Content identifiers (CIDs) of the IPFS world, as far as a SHA-256 block store needs them.
//!
//! Owns: turning the text of a CID from a request path into what the store can act on — the
//! block address (a sha2-256 digest is exactly a [`BlockHash`]), or, for an identity CID, the
//! bytes the CID carries inline — and writing a CID back out (its binary form for CAR
//! streams, its canonical text for ETags and file names). Decoding is the `cid` crate's
//! (multibase, multihash, varints); this module decides what the store accepts.
//!
//! Accepted: CIDv0 (`Qm…`, base58btc, implicitly dag-pb) and CIDv1 in any multibase the `cid`
//! crate decodes (base32 `b`/`B`, base36 `k`/`K`, base58btc `z`, base16, base64, …), any
//! codec — the codec is a label, the bytes are the block.
//!
//! Invariants: [`ContentId::parse`] is pure and total over untrusted bytes (never panics, no
//! I/O); a parsed CID's multihash is sha2-256 with a 32-byte digest, or identity with at most
//! [`IDENTITY_BYTES_MAX`] bytes; parsing the canonical text of a parsed CID gives it back.
//!
//! Must never: accept a sha2-256 multihash whose digest is not 32 bytes, or treat any other
//! hash function as if it were SHA-256 (that would serve a block under a name it does not have).

use crate::hash::BlockHash;

/// Multihash code of sha2-256.
pub const MULTIHASH_SHA2_256: u64 = 0x12;
/// Multihash code of identity (the "digest" is the data itself).
pub const MULTIHASH_IDENTITY: u64 = 0x00;
/// Multicodec of raw bytes.
pub const CODEC_RAW: u64 = 0x55;
/// Multicodec of dag-pb (UnixFS files and directories; every CIDv0).
pub const CODEC_DAG_PB: u64 = 0x70;
/// Most bytes an identity CID may carry inline (the `cid` crate's multihash capacity).
pub const IDENTITY_BYTES_MAX: usize = 64;
/// Longest CID text looked at: a CIDv1 with the largest identity payload in base16 fits.
pub const CID_TEXT_BYTES_MAX: usize = 256;

const _: () = assert!(CID_TEXT_BYTES_MAX > 2 * (IDENTITY_BYTES_MAX + 16));

/// What the store does with a CID's multihash.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Address {
    /// sha2-256: the block stored under this hash.
    Stored(BlockHash),
    /// identity: the data is in the CID; nothing is stored.
    Inline,
}

/// Why a CID was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum CidError {
    #[error("malformed CID")]
    Malformed,
    #[error("CID longer than {CID_TEXT_BYTES_MAX} characters")]
    TooLong,
    #[error("unsupported multihash function 0x{code:x}: only sha2-256 (and identity) CIDs")]
    UnsupportedHash { code: u64 },
    #[error("sha2-256 multihash with a {len}-byte digest (must be 32)")]
    BadDigestLength { len: u8 },
}

impl CidError {
    /// A short reason for a plain-text error body.
    pub fn reason(self) -> &'static str {
        match self {
            CidError::Malformed => "malformed CID",
            CidError::TooLong => "CID too long",
            CidError::UnsupportedHash { .. } => {
                "unsupported multihash function: only sha2-256 (and identity) CIDs are served"
            }
            CidError::BadDigestLength { .. } => "sha2-256 multihash digest is not 32 bytes",
        }
    }
}

/// A CID whose multihash the store understands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ContentId {
    cid: cid::Cid,
    address: Address,
}

impl ContentId {
    /// Parses the text of a CID (as it appears in a URL path: no percent-decoding).
    pub fn parse(text: &[u8]) -> Result<ContentId, CidError> {
        if text.len() > CID_TEXT_BYTES_MAX {
            return Err(CidError::TooLong);
        }
        let text = std::str::from_utf8(text).map_err(|_| CidError::Malformed)?;
        let cid = cid::Cid::try_from(text).map_err(|_| CidError::Malformed)?;
        let hash = cid.hash();
        let address = match hash.code() {
            MULTIHASH_SHA2_256 => {
                let digest: [u8; 32] = hash
                    .digest()
                    .try_into()
                    .map_err(|_| CidError::BadDigestLength { len: hash.size() })?;
                Address::Stored(BlockHash(digest))
            }
            MULTIHASH_IDENTITY => Address::Inline,
            code => return Err(CidError::UnsupportedHash { code }),
        };
        let parsed = ContentId { cid, address };
        debug_assert!(parsed.inline_data().len() <= IDENTITY_BYTES_MAX);
        Ok(parsed)
    }

    /// The CID of `data` stored as a raw (0x55) block: the CIDv1 raw-leaves form.
    pub fn raw_of(hash: BlockHash) -> ContentId {
        let multihash = cid::multihash::Multihash::wrap(MULTIHASH_SHA2_256, &hash.0)
            .expect("32 bytes fit a multihash");
        ContentId {
            cid: cid::Cid::new_v1(CODEC_RAW, multihash),
            address: Address::Stored(hash),
        }
    }

    pub fn address(&self) -> Address {
        self.address
    }

    /// The multicodec (0x70 dag-pb for every CIDv0).
    pub fn codec(&self) -> u64 {
        self.cid.codec()
    }

    /// The data of an identity CID; empty for any other.
    pub fn inline_data(&self) -> &[u8] {
        match self.address {
            Address::Inline => self.cid.hash().digest(),
            Address::Stored(_) => &[],
        }
    }

    /// Appends the binary CID (what CAR streams and dag-cbor links carry).
    pub fn write_bytes(&self, out: &mut Vec<u8>) {
        let before = out.len();
        self.cid
            .write_bytes(&mut *out)
            .expect("writing into a Vec cannot fail");
        assert!(
            out.len() > before + 2,
            "a CID has a version, codec and multihash"
        );
    }

    /// The canonical text: base58btc for CIDv0, lower-case base32 for CIDv1.
    pub fn canonical(&self) -> String {
        let text = self.cid.to_string();
        debug_assert!(text.bytes().all(|b| b.is_ascii_alphanumeric()));
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SHA-256 of "hello world".
    const HELLO: &str = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";
    const HELLO_RAW_V1: &str = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e";

    fn hello() -> BlockHash {
        BlockHash::from_hex(HELLO.as_bytes()).unwrap()
    }

    fn parse(text: &str) -> Result<ContentId, CidError> {
        ContentId::parse(text.as_bytes())
    }

    #[test]
    fn raw_leaves_cid_of_hello_world_names_its_sha256() {
        assert_eq!(BlockHash::of(b"hello world"), hello());
        let cid = parse(HELLO_RAW_V1).unwrap();
        assert_eq!(cid.address(), Address::Stored(hello()));
        assert_eq!(cid.codec(), CODEC_RAW);
        assert_eq!(cid.canonical(), HELLO_RAW_V1);
        assert_eq!(ContentId::raw_of(hello()), cid);
    }

    #[test]
    fn every_multibase_and_version_of_one_digest_parses_to_the_same_address() {
        // Made with the JavaScript `multiformats` library from sha2-256("hello world").
        let base16 = format!("f01551220{HELLO}");
        let forms = [
            (
                "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e",
                CODEC_RAW,
            ),
            (
                "BAFKREIFZJUT3TE2NHYEKKLSS27NH3K72YSCO7Y32KOAO5EEI66WOF36N5E",
                CODEC_RAW,
            ),
            (
                "k2cwued9o1pvrt3q271rrqbo49x30tbxwpoeaq75z14e5ui2rzygpbe1",
                CODEC_RAW,
            ),
            (
                "zb2rhj7crUKTQYRGCRATFaQ6YFLTde2YzdqbbhAASkL9uRDXn",
                CODEC_RAW,
            ),
            (base16.as_str(), CODEC_RAW),
            (
                "QmaozNR7DZHQK1ZcU9p7QdrshMvXqWK6gpu5rmrkPdT3L4",
                CODEC_DAG_PB,
            ),
            (
                "bafybeifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e",
                CODEC_DAG_PB,
            ),
            (
                "bafyreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e",
                0x71,
            ),
        ];
        for (text, codec) in forms {
            let cid = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(cid.address(), Address::Stored(hello()), "{text}");
            assert_eq!(cid.codec(), codec, "{text}");
            assert_eq!(parse(&cid.canonical()), Ok(cid), "{text} round trip");
        }
        let v0 = parse("QmaozNR7DZHQK1ZcU9p7QdrshMvXqWK6gpu5rmrkPdT3L4").unwrap();
        assert_eq!(
            v0.canonical(),
            "QmaozNR7DZHQK1ZcU9p7QdrshMvXqWK6gpu5rmrkPdT3L4"
        );
        let mut bytes = Vec::new();
        v0.write_bytes(&mut bytes);
        assert_eq!(bytes[..2], [0x12, 0x20], "a CIDv0 is its bare multihash");
        assert_eq!(bytes[2..], hello().0);
    }

    #[test]
    fn binary_form_of_a_cidv1_is_version_codec_multihash() {
        let cid = parse("bafyreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e").unwrap();
        let mut bytes = b"x".to_vec();
        cid.write_bytes(&mut bytes);
        assert_eq!(bytes[..5], [b'x', 0x01, 0x71, 0x12, 0x20]);
        assert_eq!(bytes[5..], hello().0);
    }

    #[test]
    fn identity_cids_carry_their_data() {
        let empty = parse("bafkqaaa").unwrap();
        assert_eq!(empty.address(), Address::Inline);
        assert_eq!(empty.inline_data(), b"");
        let mut bytes = Vec::new();
        empty.write_bytes(&mut bytes);
        assert_eq!(bytes, [0x01, 0x55, 0x00, 0x00]);
        let hi = parse("bafkqaatine").unwrap();
        assert_eq!(hi.inline_data(), b"hi");
        assert_eq!(hi.canonical(), "bafkqaatine");
    }

    #[test]
    fn other_hash_functions_are_unsupported_not_malformed() {
        // sha2-512 (0x13) and blake2b-256 (0xb220) of something, as CIDv1 base16.
        let sha512 = format!("f01551340{}", "ab".repeat(64));
        assert_eq!(
            parse(&sha512),
            Err(CidError::UnsupportedHash { code: 0x13 })
        );
        let blake = format!("f0155a0e40220{}", "cd".repeat(32));
        assert_eq!(
            parse(&blake),
            Err(CidError::UnsupportedHash { code: 0xb220 })
        );
        let short_sha256 = format!("f01551210{}", "ab".repeat(16));
        assert_eq!(
            parse(&short_sha256),
            Err(CidError::BadDigestLength { len: 16 })
        );
    }

    #[test]
    fn malformed_cids_are_refused() {
        let cases = [
            "",
            "b",
            "Qm",
            "QmaozNR7DZHQK1ZcU9p7QdrshMvXqWK6gpu5rmrkPdT3L",
            "QmaozNR7DZHQK1ZcU9p7QdrshMvXqWK6gpu5rmrkPdT3L40",
            "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5",
            "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e0",
            "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n51",
            "xafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e",
            "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e/",
            "zb2rhj7crUKTQYRGCRATFaQ6YFLTde2YzdqbbhAASkL9uRDX0",
            "%62afkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e",
            "f0255",
            "f02551220",
        ];
        for text in cases {
            assert_eq!(parse(text), Err(CidError::Malformed), "{text:?}");
        }
        assert_eq!(ContentId::parse(b"\xff\xfe"), Err(CidError::Malformed));
        let long = "b".repeat(CID_TEXT_BYTES_MAX + 1);
        assert_eq!(parse(&long), Err(CidError::TooLong));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for round in 0..20_000 {
            let mut text = Vec::new();
            for _ in 0..(round % 70) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let alphabet = b"bBkKzfQmafy0123456789abcdefghijklmnopqrstuvwxyz\xff";
                text.push(alphabet[(state % alphabet.len() as u64) as usize]);
            }
            if let Ok(cid) = ContentId::parse(&text) {
                assert_eq!(parse(&cid.canonical()), Ok(cid));
            }
        }
    }
}
