//! Per-worker block pools: reserved slots per size class, ready for PUTs without a controller
//! round trip.
//!
//! Each class has a `target_free`. Whenever a class is below target and has no allocate request
//! in flight, the worker asks the controller for the difference (plus the PUTs waiting). At most
//! one allocate request per class is in flight. Slots of failed PUTs come back here. A pool whose
//! last request came back short is `exhausted` until a later request is granted; a PUT waiting on
//! an exhausted pool is answered 507 once the controller confirms no space is left.
//!
//! Targets adapt to demand (the seed's remedy for pool exhaustion): a PUT that finds its pool
//! empty doubles that class's target, up to the class's bound; a second without such a miss
//! lowers it by a quarter, never below the configured base.

use crate::buddy::Slot;
use crate::message::{RequestId, ALLOCATE_COUNT_MAX};
use crate::size_class::{SizeClass, CLASS_COUNT};

/// The seed's BlockPoolConfig defaults: target free slots per class, 4 KiB .. 512 KiB.
pub const POOL_TARGET_DEFAULT: [u16; CLASS_COUNT] = [10, 10, 10, 5, 5, 3, 2, 2];
/// Upper bound of a class's target (configuration is clamped to it).
pub const POOL_TARGET_MAX: u16 = 1024;

/// How often adapted targets decay towards their base.
pub const POOL_DECAY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Debug, Clone)]
struct ClassPool {
    free: Vec<Slot>,
    target: u16,
    base: u16,
    max: u16,
    missed: bool,
    in_flight: Option<RequestId>,
    /// The last allocate came back short.
    exhausted: bool,
}

#[derive(Debug, Clone)]
pub struct Pools {
    classes: Vec<ClassPool>,
    pub refill_requests: u64,
}

impl Pools {
    /// `bytes_max` bounds how far adaptation may raise each class's target (split evenly over
    /// the classes); the configured targets themselves are always honoured.
    pub fn new(targets: [u16; CLASS_COUNT], bytes_max: u64) -> Pools {
        let classes = targets
            .iter()
            .zip(SizeClass::ALL)
            .map(|(&t, class)| {
                let base = t.min(POOL_TARGET_MAX);
                let share = bytes_max / CLASS_COUNT as u64 / class.bytes();
                let max = (share.min(u64::from(POOL_TARGET_MAX)) as u16).max(base);
                ClassPool {
                    free: Vec::new(),
                    target: base,
                    base,
                    max,
                    missed: false,
                    in_flight: None,
                    exhausted: false,
                }
            })
            .collect();
        Pools {
            classes,
            refill_requests: 0,
        }
    }

    pub fn take(&mut self, class: SizeClass) -> Option<Slot> {
        let slot = self.classes[class.index()].free.pop();
        debug_assert!(slot.is_none_or(|s| s.class == class));
        slot
    }

    /// A reserved slot that was not used (failed PUT) goes back.
    pub fn put_back(&mut self, slot: Slot) {
        let pool = &mut self.classes[slot.class.index()];
        debug_assert!(!pool.free.contains(&slot), "slot {slot:?} returned twice");
        pool.free.push(slot);
    }

    pub fn free_count(&self, class: SizeClass) -> usize {
        self.classes[class.index()].free.len()
    }

    pub fn target(&self, class: SizeClass) -> u16 {
        self.classes[class.index()].target
    }

    pub fn is_exhausted(&self, class: SizeClass) -> bool {
        self.classes[class.index()].exhausted
    }

    pub fn in_flight(&self, class: SizeClass) -> bool {
        self.classes[class.index()].in_flight.is_some()
    }

    /// How many slots to ask for now (`waiting` PUTs need one each), or `None` if no request is
    /// due. The caller sends the request and reports it with [`Pools::requested`].
    pub fn refill_due(&self, class: SizeClass, waiting: usize) -> Option<u16> {
        let pool = &self.classes[class.index()];
        if pool.in_flight.is_some() {
            return None;
        }
        let want = usize::from(pool.target) + waiting;
        let have = pool.free.len();
        if have >= want || (waiting == 0 && pool.exhausted) {
            return None;
        }
        let count = (want - have).min(usize::from(ALLOCATE_COUNT_MAX)) as u16;
        debug_assert!(count >= 1);
        Some(count)
    }

    pub fn requested(&mut self, class: SizeClass, request: RequestId) {
        let pool = &mut self.classes[class.index()];
        assert!(pool.in_flight.is_none(), "one allocate in flight per class");
        pool.in_flight = Some(request);
        self.refill_requests += 1;
    }

    /// Which class an in-flight allocate request belongs to.
    pub fn class_of_request(&self, request: RequestId) -> Option<SizeClass> {
        SizeClass::ALL
            .into_iter()
            .find(|c| self.classes[c.index()].in_flight == Some(request))
    }

    /// The controller finished an allocate request.
    pub fn done(&mut self, class: SizeClass, request: RequestId, requested: u16, granted: u16) {
        let pool = &mut self.classes[class.index()];
        assert_eq!(
            pool.in_flight,
            Some(request),
            "done for a request not in flight"
        );
        assert!(granted <= requested);
        pool.in_flight = None;
        pool.exhausted = granted < requested;
    }

    /// A PUT found the pool empty: raise the target (adaptive pools).
    pub fn note_miss(&mut self, class: SizeClass) {
        let pool = &mut self.classes[class.index()];
        pool.missed = true;
        pool.target = pool
            .target
            .saturating_mul(2)
            .max(pool.target + 1)
            .min(pool.max);
        debug_assert!(pool.target >= pool.base && pool.target <= pool.max.max(pool.base));
    }

    /// Called every [`POOL_DECAY_INTERVAL`]: targets without a miss drift back to their base.
    pub fn decay(&mut self) {
        for pool in &mut self.classes {
            if !pool.missed && pool.target > pool.base {
                let step = (pool.target / 4).max(1);
                pool.target = (pool.target - step).max(pool.base);
            }
            pool.missed = false;
        }
    }

    /// Space ran short (a reclaim): targets back to base, and no refill until a PUT waits.
    pub fn shrink_for_reclaim(&mut self) {
        for pool in &mut self.classes {
            pool.target = pool.base;
            pool.exhausted = true;
        }
    }

    /// Forget exhaustion (space may have been freed): the next refill asks again.
    pub fn clear_exhausted(&mut self) {
        for pool in &mut self.classes {
            pool.exhausted = false;
        }
    }

    /// Every pooled slot, removed (for handing back).
    pub fn drain_all(&mut self) -> Vec<Slot> {
        let mut out = Vec::new();
        for pool in &mut self.classes {
            out.append(&mut pool.free);
        }
        out
    }

    pub fn levels(&self) -> [u64; CLASS_COUNT] {
        let mut out = [0; CLASS_COUNT];
        for (i, p) in self.classes.iter().enumerate() {
            out[i] = p.free.len() as u64;
        }
        out
    }

    pub fn targets(&self) -> [u16; CLASS_COUNT] {
        let mut out = [0; CLASS_COUNT];
        for (i, p) in self.classes.iter().enumerate() {
            out[i] = p.target;
        }
        out
    }

    pub fn pooled_bytes(&self) -> u64 {
        self.classes
            .iter()
            .map(|p| p.free.iter().map(|s| s.bytes()).sum::<u64>())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(offset: u64, class: u8) -> Slot {
        Slot {
            offset,
            class: SizeClass::new(class).unwrap(),
        }
    }

    #[test]
    fn below_target_asks_for_the_difference_once() {
        let mut p = Pools::new([2, 0, 0, 0, 0, 0, 0, 1], 1 << 30);
        let c0 = SizeClass::MIN;
        assert_eq!(p.refill_due(c0, 0), Some(2));
        p.requested(c0, 7);
        assert_eq!(p.refill_due(c0, 3), None, "one request in flight per class");
        p.put_back(slot(0, 0));
        p.done(c0, 7, 2, 1);
        assert!(p.is_exhausted(c0));
        assert_eq!(
            p.refill_due(c0, 0),
            None,
            "exhausted and nobody waiting: don't spin"
        );
        assert_eq!(p.refill_due(c0, 1), Some(2));
        assert_eq!(p.take(c0), Some(slot(0, 0)));
        assert_eq!(p.take(c0), None);
        assert_eq!(p.refill_due(SizeClass::MAX, 0), Some(1));
        assert_eq!(p.refill_due(SizeClass::new(3).unwrap(), 0), None);
    }

    #[test]
    fn targets_adapt_to_misses_within_bounds_and_decay() {
        let mut p = Pools::new([2, 0, 0, 0, 0, 0, 0, 1], 8 * 512 * 1024);
        let c0 = SizeClass::MIN;
        p.note_miss(c0);
        assert_eq!(p.target(c0), 4);
        for _ in 0..20 {
            p.note_miss(c0);
        }
        assert_eq!(
            p.target(c0),
            128,
            "bounded by bytes_max / classes / class size"
        );
        p.note_miss(SizeClass::MAX);
        assert_eq!(p.target(SizeClass::MAX), 1, "no room to grow: base is kept");
        p.decay();
        assert_eq!(
            p.target(c0),
            128,
            "a miss in the last interval holds the target"
        );
        p.decay();
        assert_eq!(p.target(c0), 96);
        for _ in 0..40 {
            p.decay();
        }
        assert_eq!(p.target(c0), 2, "back to base");
    }
}
