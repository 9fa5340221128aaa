//! Size classes: eight power-of-two slot sizes, 4 KiB (class 0) to 512 KiB (class 7).
//!
//! A block of `n` bytes (1..=524,288) lives in the smallest class whose slot holds it. This module
//! owns that mapping and nothing else; it never allocates.

use std::fmt;

/// Smallest slot: 4 KiB, also the sector size every slot offset is aligned to.
pub const SLOT_MIN_BYTES: u64 = 4096;
/// Largest slot and largest block: 512 KiB.
pub const SLOT_MAX_BYTES: u64 = 512 * 1024;
/// Number of classes (index 0..=7).
pub const CLASS_COUNT: usize = 8;
/// Largest block a client may store.
pub const BLOCK_LEN_MAX_BYTES: u64 = SLOT_MAX_BYTES;

const _: () = assert!(SLOT_MIN_BYTES << (CLASS_COUNT - 1) == SLOT_MAX_BYTES);
const _: () = assert!(SLOT_MAX_BYTES.is_multiple_of(SLOT_MIN_BYTES));
const _: () = assert!(SLOT_MIN_BYTES.is_power_of_two());

/// A size class index, always in `0..CLASS_COUNT`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct SizeClass(u8);

impl SizeClass {
    /// Every class, smallest first.
    pub const ALL: [SizeClass; CLASS_COUNT] = [
        SizeClass(0),
        SizeClass(1),
        SizeClass(2),
        SizeClass(3),
        SizeClass(4),
        SizeClass(5),
        SizeClass(6),
        SizeClass(7),
    ];
    pub const MIN: SizeClass = SizeClass(0);
    pub const MAX: SizeClass = SizeClass((CLASS_COUNT - 1) as u8);

    /// The class with this index, or `None` when out of range (decoders use this).
    pub fn new(index: u8) -> Option<SizeClass> {
        if (index as usize) < CLASS_COUNT {
            Some(SizeClass(index))
        } else {
            None
        }
    }

    /// The smallest class that holds a block of `len_bytes`; `None` for 0 or over 512 KiB.
    pub fn for_len(len_bytes: u64) -> Option<SizeClass> {
        if len_bytes == 0 || len_bytes > SLOT_MAX_BYTES {
            return None;
        }
        let pages = len_bytes.div_ceil(SLOT_MIN_BYTES);
        let index = pages.next_power_of_two().trailing_zeros() as u8;
        let class = SizeClass(index);
        debug_assert!(class.bytes() >= len_bytes);
        debug_assert!(index == 0 || class.bytes() / 2 < len_bytes);
        Some(class)
    }

    pub fn index(self) -> usize {
        self.0 as usize
    }

    pub fn as_u8(self) -> u8 {
        self.0
    }

    /// Slot size in bytes.
    pub fn bytes(self) -> u64 {
        SLOT_MIN_BYTES << self.0
    }

    /// The next larger class, `None` for 512 KiB.
    pub fn larger(self) -> Option<SizeClass> {
        SizeClass::new(self.0 + 1)
    }

    /// The next smaller class, `None` for 4 KiB.
    pub fn smaller(self) -> Option<SizeClass> {
        self.0.checked_sub(1).map(SizeClass)
    }

    /// Short label used in configuration and metrics: `4k` .. `512k`.
    pub fn label(self) -> &'static str {
        ["4k", "8k", "16k", "32k", "64k", "128k", "256k", "512k"][self.index()]
    }

    /// Parses a label as written by [`SizeClass::label`] (case-insensitive, `KiB` accepted).
    pub fn from_label(text: &str) -> Option<SizeClass> {
        let t = text.trim().to_ascii_lowercase();
        let t = t.strip_suffix("ib").unwrap_or(&t);
        SizeClass::ALL.into_iter().find(|c| c.label() == t)
    }
}

impl fmt::Display for SizeClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_map_to_the_smallest_holding_class() {
        assert_eq!(SizeClass::for_len(0), None);
        assert_eq!(SizeClass::for_len(1), Some(SizeClass(0)));
        assert_eq!(SizeClass::for_len(4095), Some(SizeClass(0)));
        assert_eq!(SizeClass::for_len(4096), Some(SizeClass(0)));
        assert_eq!(SizeClass::for_len(4097), Some(SizeClass(1)));
        assert_eq!(SizeClass::for_len(8192), Some(SizeClass(1)));
        assert_eq!(SizeClass::for_len(8193), Some(SizeClass(2)));
        assert_eq!(SizeClass::for_len(262_145), Some(SizeClass(7)));
        assert_eq!(SizeClass::for_len(524_288), Some(SizeClass(7)));
        assert_eq!(SizeClass::for_len(524_289), None);
    }

    #[test]
    fn every_length_fits_and_no_smaller_class_would() {
        for len in (1..=SLOT_MAX_BYTES).step_by(977) {
            let c = SizeClass::for_len(len).unwrap();
            assert!(c.bytes() >= len);
            if let Some(s) = c.smaller() {
                assert!(s.bytes() < len);
            }
        }
    }

    #[test]
    fn labels_round_trip() {
        for c in SizeClass::ALL {
            assert_eq!(SizeClass::from_label(c.label()), Some(c));
        }
        assert_eq!(SizeClass::from_label("64KiB"), Some(SizeClass(4)));
        assert_eq!(SizeClass::from_label("3k"), None);
        assert_eq!(SizeClass::new(8), None);
    }
}
