//! Fuzzes the buddy allocator (engine/src/buddy/) against a page bitmap.
//!
//! The model is `engine::test_support::allocator_model` (shared with the buddy proptests): one
//! bool per 4 KiB page (`true` = free). Arbitrary sequences of allocate, free (of a live slot or
//! of any slot), mark_allocated and grow must agree with it at every step: allocate returns pages
//! the model has free, and returns `None` exactly when the model has no aligned free run of the
//! class's size; failed calls change nothing; `check_invariants` holds after every step; and
//! freeing everything leaves only whole 512 KiB slots. Capacity stays at most 64 MiB so the model
//! stays small.

#![no_main]

use arbitrary::Arbitrary;
use engine::buddy::Slot;
use engine::size_class::SLOT_MAX_BYTES;
use engine::test_support::allocator_model::{class_of, AllocatorModel};
use libfuzzer_sys::fuzz_target;

/// Largest capacity the fuzzer builds: 64 MiB, i.e. 128 top-level slots.
const CAPACITY_BYTES_MAX: u64 = 64 * 1024 * 1024;
const TOP_SLOTS_MAX: u64 = CAPACITY_BYTES_MAX / SLOT_MAX_BYTES;
/// Longest op sequence run per input.
const OPS_MAX: usize = 2048;

const _: () = assert!(CAPACITY_BYTES_MAX.is_multiple_of(SLOT_MAX_BYTES));
const _: () = assert!(TOP_SLOTS_MAX >= 1 && TOP_SLOTS_MAX <= 256);

#[derive(Arbitrary, Debug)]
enum Op {
    Allocate {
        class: u8,
    },
    /// Frees the `k % live`-th live slot.
    FreeLive {
        k: u16,
    },
    /// Frees any slot at all (usually not allocated, often misaligned or out of range).
    FreeAny {
        offset: u64,
        class: u8,
    },
    /// Marks any slot at all.
    MarkAny {
        offset: u64,
        class: u8,
    },
    /// Marks the `index`-th aligned slot of `class` (in range more often than `MarkAny`).
    MarkAligned {
        index: u16,
        class: u8,
    },
    /// Grows by `top_slots % 4` top-level slots, up to `CAPACITY_BYTES_MAX`.
    Grow {
        top_slots: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    top_slots: u8,
    ops: Vec<Op>,
}

/// Applies one drawn step to the allocator and its model, then checks them.
fn apply(model: &mut AllocatorModel, op: Op) {
    match op {
        Op::Allocate { class } => model.allocate(class_of(class)),
        Op::FreeLive { k } => model.free_live(usize::from(k)),
        Op::FreeAny { offset, class } => model.free_any(Slot {
            offset,
            class: class_of(class),
        }),
        Op::MarkAny { offset, class } => model.mark(Slot {
            offset,
            class: class_of(class),
        }),
        Op::MarkAligned { index, class } => {
            let class = class_of(class);
            model.mark(Slot {
                offset: u64::from(index) * class.bytes(),
                class,
            });
        }
        Op::Grow { top_slots } => model.grow(u64::from(top_slots % 4), TOP_SLOTS_MAX),
    }
    model.check();
}

fuzz_target!(|input: Input| {
    let top_slots = u64::from(input.top_slots) % TOP_SLOTS_MAX + 1;
    let mut model = AllocatorModel::new(top_slots);
    model.check();
    for op in input.ops.into_iter().take(OPS_MAX) {
        apply(&mut model, op);
    }
    model.free_everything();
});
