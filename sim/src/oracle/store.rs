//! The stored state against the model: every address the model is certain about is indexed
//! (or not) accordingly, every indexed block was stored by some client with its length, and
//! its bytes on the disk hash to its address unless an injected fault damaged them (or, with
//! relaxed durability, or through a replayed log record, a power loss took bytes whose writeback a
//! failed sync had dropped: `Disk::may_differ`).
//!
//! Owns: those checks, run after every recovery and at the end of a run, and telling the model
//! which stored blocks sit on damaged sectors; both read the index through the store's own read
//! path (`MetaRead`), whichever store the run uses. Never does: change the index or the disk.

use std::collections::BTreeMap;

use engine::hash::BlockHash;
use engine::meta::{IndexEntry, MetaRead};

use crate::failure::Failure;
use crate::fake::disk::Disk;
use crate::model::{Known, Model};

/// The index against the model, and every stored block's bytes against its address.
pub fn check_store(
    when: &str,
    read: &impl MetaRead,
    disk: &Disk,
    model: &Model,
) -> Result<(), Failure> {
    let index = committed_index(read).map_err(|e| Failure::Correctness(format!("{when}: {e}")))?;
    for (hash, known) in model.certain() {
        let stored = index.contains_key(hash);
        let bad = match known {
            Known::Present => !stored,
            Known::Absent => stored,
            Known::Uncertain => false,
        };
        if bad {
            return Err(Failure::Correctness(format!(
                "{when}: the index {} {hash}, but the model says {known:?}",
                if stored { "holds" } else { "lacks" }
            )));
        }
    }
    for (hash, entry) in &index {
        let Some(content) = model.content_of(hash) else {
            return Err(Failure::Correctness(format!(
                "{when}: the index holds {hash}, which no client ever stored"
            )));
        };
        if content.len() != entry.len as usize {
            return Err(Failure::Correctness(format!(
                "{when}: {hash} is indexed with length {} but is {} bytes",
                entry.len,
                content.len()
            )));
        }
        let mut bytes = vec![0u8; entry.len as usize];
        disk.read(entry.slot.offset, &mut bytes);
        let damaged = disk.may_differ(entry.slot.offset, u64::from(entry.len));
        if BlockHash::of(&bytes) != *hash && !damaged {
            return Err(Failure::Correctness(format!(
                "{when}: stored bytes of {hash} at {:?} are corrupt and no fault explains it",
                entry.slot
            )));
        }
    }
    Ok(())
}

/// Tells the model which stored blocks overlap damaged sectors (after a misdirected write,
/// and after recovery): reads of them may fail verification.
pub fn mark_damaged_blocks(read: &impl MetaRead, disk: &Disk, model: &mut Model) {
    read.for_each_entry(&mut |hash, e| {
        if disk.may_differ(e.slot.offset, u64::from(e.len)) {
            model.mark_corrupt(*hash);
        }
    })
    .expect("a walk of the committed index");
}

/// Every committed entry, by hash.
fn committed_index(
    read: &impl MetaRead,
) -> Result<BTreeMap<BlockHash, IndexEntry>, engine::meta::MetaError> {
    let mut index = BTreeMap::new();
    read.for_each_entry(&mut |hash, entry| {
        index.insert(*hash, *entry);
    })?;
    Ok(index)
}
