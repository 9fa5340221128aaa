//! The CARv1 bytes around one root block (header, section length, CID) and the check whether a
//! dag-pb block has links (then its DAG is larger than the block and a full CAR is refused).
//! It never puts an identity CID's virtual block into a CAR.

use super::*;

// ---------------------------------------------------------------------------------------------
// CARv1 (ipld/ipld specs/transport/car/carv1): varint(header length) | dag-cbor header
// {"roots": [cid], "version": 1} | per block: varint(cid length + data length) | cid | data.

/// Appends the CAR bytes that come before the root block's data: the header with `cid` as the
/// only root and, unless the CID is an identity CID (never a CAR block), the block section's
/// length and CID. The data of `data_len` bytes follows; nothing else does.
pub fn write_car_prefix(out: &mut Vec<u8>, cid: &ContentId, data_len: usize) {
    let mut cid_bytes = Vec::with_capacity(64);
    cid.write_bytes(&mut cid_bytes);
    let mut header = Vec::with_capacity(96);
    header.extend_from_slice(&[0xa2, 0x65]);
    header.extend_from_slice(b"roots");
    header.extend_from_slice(&[0x81, 0xd8, 0x2a]);
    // A CID link in dag-cbor: tag 42 over a byte string of 0x00 (identity multibase) + CID.
    push_cbor_bytes_head(&mut header, cid_bytes.len() + 1);
    header.push(0x00);
    header.extend_from_slice(&cid_bytes);
    header.push(0x67);
    header.extend_from_slice(b"version");
    header.push(0x01);
    push_varint(out, header.len() as u64);
    out.extend_from_slice(&header);
    match cid.address() {
        Address::Stored(_) => {
            push_varint(out, (cid_bytes.len() + data_len) as u64);
            out.extend_from_slice(&cid_bytes);
        }
        Address::Inline => assert_eq!(data_len, 0, "an identity CID has no CAR block"),
    }
}

/// The length of the whole CAR: prefix and data.
pub fn car_len(cid: &ContentId, data_len: usize) -> u64 {
    let mut prefix = Vec::with_capacity(160);
    write_car_prefix(&mut prefix, cid, data_len);
    (prefix.len() + data_len) as u64
}

pub(super) fn push_cbor_bytes_head(out: &mut Vec<u8>, len: usize) {
    assert!(len <= usize::from(u16::MAX), "a CID is short");
    match len {
        0..=23 => out.push(0x40 | len as u8),
        24..=255 => out.extend_from_slice(&[0x58, len as u8]),
        _ => {
            out.push(0x59);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
    }
}

pub(super) fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let low = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

/// True if a dag-pb node (protobuf `PBNode`: field 1 Data, field 2 Links) lists a link. Reads
/// the top-level fields only; bytes that are not a well-formed message count as no links
/// found (the CAR then carries the block the CID names, which the client verifies).
pub fn dag_pb_has_links(block: &[u8]) -> bool {
    let mut rest = block;
    while !rest.is_empty() {
        let Some((key, after_key)) = read_varint(rest) else {
            return false;
        };
        let (field, wire_type) = (key >> 3, key & 7);
        if field == 2 && wire_type == 2 {
            return true;
        }
        rest = match wire_type {
            0 => match read_varint(after_key) {
                Some((_, after)) => after,
                None => return false,
            },
            2 => {
                let Some((len, after_len)) = read_varint(after_key) else {
                    return false;
                };
                match usize::try_from(len).ok().and_then(|n| after_len.get(n..)) {
                    Some(after) => after,
                    None => return false,
                }
            }
            _ => return false,
        };
    }
    false
}

pub(super) fn read_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, bytes.get(i + 1..)?));
        }
    }
    None
}
