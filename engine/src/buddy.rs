//! placeholder: the buddy allocator is being written (keep `Slot` as is).
use crate::size_class::SizeClass;

/// A slot of the data file: `class.bytes()` bytes at `offset` (aligned to its size).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Slot {
    pub offset: u64,
    pub class: SizeClass,
}

impl Slot {
    pub fn bytes(self) -> u64 {
        self.class.bytes()
    }
    pub fn end(self) -> u64 {
        self.offset + self.class.bytes()
    }
}
