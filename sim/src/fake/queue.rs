//! The fake SPSC queue between a worker and the controller: a bounded FIFO of encoded frames.
//!
//! Fault model: a push into a full queue is refused (back-pressure; the producer keeps the
//! message and tries again later — never a drop). The consumer may stall: with the seed's
//! probability a push freezes the queue's consumer side for a while, so the queue fills up
//! behind it. Frames come out exactly as they went in, in order.

use std::collections::VecDeque;

use engine::message::Frame;

#[derive(Debug)]
pub struct FrameQueue {
    frames: VecDeque<Frame>,
    capacity: usize,
    /// The consumer does not look at the queue before this time.
    pub stalled_until: u64,
    pub pushed: u64,
    pub refused: u64,
    pub high_water: usize,
}

impl FrameQueue {
    pub fn new(capacity: usize) -> FrameQueue {
        assert!(capacity >= 1, "a queue holds at least one frame");
        FrameQueue {
            frames: VecDeque::with_capacity(capacity),
            capacity,
            stalled_until: 0,
            pushed: 0,
            refused: 0,
            high_water: 0,
        }
    }

    /// Appends a frame; `false` (and nothing changes) when the queue is full.
    pub fn push(&mut self, frame: Frame) -> bool {
        if self.frames.len() >= self.capacity {
            self.refused += 1;
            return false;
        }
        self.frames.push_back(frame);
        self.pushed += 1;
        self.high_water = self.high_water.max(self.frames.len());
        assert!(self.frames.len() <= self.capacity);
        true
    }

    pub fn pop(&mut self) -> Option<Frame> {
        self.frames.pop_front()
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.frames.len() >= self.capacity
    }

    /// Whether the consumer may take frames at `now`.
    pub fn readable(&self, now: u64) -> bool {
        !self.frames.is_empty() && self.stalled_until <= now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_refuses_and_keeps_order() {
        let mut q = FrameQueue::new(2);
        assert!(q.push([1; 64]) && q.push([2; 64]));
        assert!(!q.push([3; 64]), "back-pressure");
        assert_eq!(q.pop().unwrap()[0], 1);
        assert!(q.push([3; 64]));
        assert_eq!((q.pop().unwrap()[0], q.pop().unwrap()[0]), (2, 3));
        assert_eq!(q.refused, 1);
    }
}
