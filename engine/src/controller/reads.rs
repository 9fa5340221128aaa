//! The read phase of a cycle: get_address (`POST /blocks/missing`, the dedup check before a
//! 507) and list answered from a read view of the committed state, at the start of a cycle (and
//! while a batch is made durable in the background). GET and HEAD do not come here: workers look
//! them up in their own index views.
//!
//! Must never answer a block of the batch being made durable as stored (`awaiting_stored`):
//! a read never reports a block before it is durable. No `Address` reply leads to a read of
//! slot bytes, so none takes part in the isolation protocol.

use crate::message::{ErrorCode, Location, ToController, ToWorker};
use crate::meta::{MetaRead, MetaStore};

use super::durability::Latched;
use super::{Controller, LatchCause};

impl<M: MetaStore> Controller<M> {
    /// Steps 4-5: the readers' horizons, then the answers to get_address and list.
    pub(super) fn read_phase(&mut self, batch: &[ToController]) {
        assert!(batch.len() <= super::BATCH_MESSAGES_MAX);
        // Horizons first: they may let quarantined slots go before this cycle allocates.
        self.advance_horizons(batch);
        self.release_quarantine();
        self.answer_reads(batch);
    }

    /// Step 5: get_address and list from a read view of the committed state.
    pub(super) fn answer_reads(&mut self, batch: &[ToController]) {
        let read = match self.store.read() {
            Ok(r) => r,
            Err(e) => {
                // Field by field: `read` still borrows the store.
                Latched::latch(&mut self.failed, &mut self.stats, LatchCause::ReadView(e));
                for m in batch {
                    if let ToController::GetAddress {
                        worker, request, ..
                    }
                    | ToController::List {
                        worker, request, ..
                    } = *m
                    {
                        self.outbox[worker as usize].push_back(ToWorker::Error {
                            request,
                            code: ErrorCode::Io,
                        });
                    }
                }
                return;
            }
        };
        let mut listed = Vec::new();
        for m in batch {
            match *m {
                ToController::GetAddress {
                    worker,
                    request,
                    hash,
                } => {
                    let found = match read.get(&hash) {
                        Ok(Some(_)) if self.awaiting_stored.contains(&hash) => Ok(None),
                        other => other,
                    };
                    let reply = match found {
                        Ok(found) => {
                            let location = found.map(|e| Location {
                                slot: e.slot,
                                len: e.len,
                                crc32c: e.crc32c,
                            });
                            ToWorker::Address { request, location }
                        }
                        Err(_) => ToWorker::Error {
                            request,
                            code: ErrorCode::Io,
                        },
                    };
                    self.outbox[worker as usize].push_back(reply);
                }
                ToController::List {
                    worker,
                    request,
                    after,
                    limit,
                } => {
                    listed.clear();
                    let out = &mut self.outbox[worker as usize];
                    // Blocks not yet durable are left out; ask for as many more.
                    let more = self.awaiting_stored.len();
                    let awaiting = &self.awaiting_stored;
                    match read.list(after.as_ref(), limit as usize + more, &mut listed) {
                        Ok(()) => {
                            listed.retain(|(hash, _)| !awaiting.contains(hash));
                            listed.truncate(limit as usize);
                            if self.config.bugs.truncate_listing() && listed.len() == limit as usize
                            {
                                listed.pop();
                            }
                            for (hash, e) in &listed {
                                out.push_back(ToWorker::ListItem {
                                    request,
                                    hash: *hash,
                                    len: e.len,
                                });
                            }
                            let count = listed.len() as u16;
                            out.push_back(ToWorker::ListDone { request, count });
                        }
                        Err(_) => out.push_back(ToWorker::Error {
                            request,
                            code: ErrorCode::Io,
                        }),
                    }
                }
                _ => {}
            }
        }
    }
}
