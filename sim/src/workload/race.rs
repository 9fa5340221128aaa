//! The reuse race, a hot spot of the workload (`Options::reuse_race_p`): reads aimed at a block
//! just before, while and after it is deleted, and PUTs of new content of its size class, so
//! its freed slot is reused while views and reads of the old entry may still be around (SPEC
//! guarantee 4; the switches `reuse_while_reading` and `reuse_before_views_end`).
//!
//! Owns: the script one race follows ([`STEPS`]) and its progress. The steps are handed out one
//! per draw, to whichever client draws next, so they run concurrently over several connections
//! and workers. Never does: judge an answer (the oracle does), or draw anything outside the
//! world's one seeded generator. Invariant: a race's target is stored once by its first step;
//! the other steps may find it present or absent, and the oracle accepts either while a write
//! of it is in flight.

use engine::size_class::SizeClass;
use rand::{Rng, RngExt};

use super::{Ctx, Workload};
use crate::request::Kind;

/// One step of a race.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// PUT the target (new content).
    Store,
    /// GET the target.
    Read,
    /// HEAD, `missing` or a listing from just below the target.
    Look,
    /// DELETE the target.
    Delete,
    /// PUT new content of the target's size class (its freed slot's next tenant).
    Reuse,
}

/// The script: reads pile up before the DELETE, then reads, looks and reuses race it.
const STEPS: [Step; 16] = [
    Step::Store,
    Step::Read,
    Step::Look,
    Step::Read,
    Step::Read,
    Step::Delete,
    Step::Read,
    Step::Read,
    Step::Reuse,
    Step::Read,
    Step::Reuse,
    Step::Look,
    Step::Read,
    Step::Reuse,
    Step::Read,
    Step::Look,
];

/// The race in progress: its target (a content index) and the next step.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Race {
    target: Option<usize>,
    next: usize,
}

impl Workload {
    /// The next step of the reuse race (a new race once the last one's script is done).
    pub(super) fn draw_race(&mut self, ctx: &mut Ctx<'_>) -> Kind {
        assert!(self.race.next < STEPS.len());
        let step = STEPS[self.race.next];
        self.race.next = (self.race.next + 1) % STEPS.len();
        let target = match (step, self.race.target) {
            (Step::Store, _) | (_, None) => {
                let t = self.new_content(ctx);
                self.race.target = Some(t);
                t
            }
            (_, Some(t)) => t,
        };
        let hash = ctx.model.contents[target].0;
        match step {
            Step::Store => Kind::Put {
                content: target,
                path_hash: false,
            },
            Step::Read => Kind::Get {
                hash,
                if_none_match: false,
            },
            Step::Look => match ctx.rng.random_range(0..3) {
                0 => Kind::Head { hash },
                1 => Kind::Missing {
                    hashes: vec![hash, self.pick_hash(ctx)],
                },
                _ => {
                    // Start just below the target, so the page begins with it if it is there.
                    let mut below = hash;
                    below.0[31] = below.0[31].wrapping_sub(1);
                    Kind::List {
                        after: Some(below),
                        limit: ctx.rng.random_range(1..=4),
                    }
                }
            },
            Step::Delete => Kind::Delete { hash },
            Step::Reuse => {
                let len = ctx.model.contents[target].1.len() as u64;
                let class = SizeClass::for_len(len).expect("a stored length");
                let lo = if class == SizeClass::MIN {
                    1
                } else {
                    class.bytes() / 2 + 1
                };
                let mut bytes = vec![0u8; ctx.rng.random_range(lo..=class.bytes()) as usize];
                ctx.rng.fill_bytes(&mut bytes);
                Kind::Put {
                    content: ctx.model.add_content(bytes),
                    path_hash: ctx.rng.random_bool(0.5),
                }
            }
        }
    }
}
