//! The stored state against the model: every address the model is certain about is indexed
//! (or not) accordingly, every indexed block was stored by some client with its length, and
//! its bytes on the disk hash to its address unless an injected fault damaged them (or, with
//! relaxed durability, a power loss took bytes whose writeback a failed sync had dropped).
//!
//! Owns: those checks, run after every recovery and at the end of a run, and telling the model
//! which stored blocks sit on damaged sectors. Never does: change the index or the disk.

use engine::hash::BlockHash;
use engine::meta::SharedImage;

use crate::failure::Failure;
use crate::fake::disk::Disk;
use crate::model::{Known, Model};

/// The index against the model, and every stored block's bytes against its address.
pub fn check_store(
    when: &str,
    image: &SharedImage,
    disk: &Disk,
    model: &Model,
    relaxed: bool,
) -> Result<(), Failure> {
    let index = image.lock().expect("image lock").committed.index.clone();
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
        let damaged = disk.may_differ(entry.slot.offset, u64::from(entry.len), relaxed);
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
pub fn mark_damaged_blocks(image: &SharedImage, disk: &Disk, model: &mut Model, relaxed: bool) {
    let img = image.lock().expect("image lock");
    for (hash, e) in &img.committed.index {
        if disk.may_differ(e.slot.offset, u64::from(e.len), relaxed) {
            model.mark_corrupt(*hash);
        }
    }
}
