//! Slot-reuse protection (SPEC guarantee 4): released slots wait in quarantine for readers.

use crate::meta::MetaStore;

use super::Controller;

impl<M: MetaStore> Controller<M> {
    pub(super) fn release_quarantine(&mut self) {
        while let Some((sent, slot)) = self.quarantine.front() {
            let done = sent.iter().zip(self.horizon.iter()).all(|(s, h)| h > s);
            if !done {
                break;
            }
            let slot = *slot;
            self.quarantine.pop_front();
            self.allocator
                .free(slot)
                .expect("quarantined slot was allocated");
        }
    }
}
