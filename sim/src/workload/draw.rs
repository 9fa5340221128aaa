//! Drawing requests: block sizes (every class, and the size edges), new or duplicate content,
//! a hot set of addresses, and the request kind from the seed's mix.
//!
//! Owns: the seeded choice of what a client asks next. Never does: serialise or send a
//! request, or look at an answer. Invariant: every draw goes through the world's one seeded
//! generator, in a fixed order, so a seed replays.

use engine::hash::BlockHash;
use rand::{Rng, RngExt};

use super::{Ctx, Workload, BLOCK_MAX_BYTES, HOT_SET_MAX, SIZE_EDGES};
use crate::request::{BadToken, Edge, Kind, RangeReq};

impl Workload {
    pub(super) fn draw_size(ctx: &mut Ctx<'_>) -> usize {
        if ctx.chance(ctx.opts.large_p) {
            return if ctx.rng.random_bool(0.3) {
                BLOCK_MAX_BYTES
            } else {
                ctx.rng.random_range(131_073..=BLOCK_MAX_BYTES)
            };
        }
        match ctx.rng.random_range(0..100) {
            0..=9 => SIZE_EDGES[ctx.rng.random_range(0..4)],
            10..=69 => ctx.rng.random_range(1..=4096),
            70..=94 => ctx.rng.random_range(4097..=32_768),
            _ => ctx.rng.random_range(32_769..=131_072),
        }
    }

    pub(super) fn new_content(&mut self, ctx: &mut Ctx<'_>) -> usize {
        let len = Self::draw_size(ctx);
        self.new_content_of(len, ctx)
    }

    /// New random content of exactly `len` bytes, registered with the model (and the hot set).
    fn new_content_of(&mut self, len: usize, ctx: &mut Ctx<'_>) -> usize {
        assert!(
            (1..=BLOCK_MAX_BYTES).contains(&len),
            "a block of {len} bytes"
        );
        let mut bytes = vec![0u8; len];
        ctx.rng.fill_bytes(&mut bytes);
        let index = ctx.model.add_content(bytes);
        if self.hot.len() < HOT_SET_MAX {
            self.hot.push(index);
        }
        index
    }

    pub(super) fn pick_content(&mut self, ctx: &mut Ctx<'_>) -> usize {
        let n = ctx.model.contents.len();
        if n > 0 && !self.hot.is_empty() && ctx.chance(ctx.opts.hot_p) {
            return self.hot[ctx.rng.random_range(0..self.hot.len())];
        }
        if n > 0 {
            // Favour recent content: the tail of the list.
            let window = n.min(64);
            if ctx.rng.random_bool(0.7) {
                return n - 1 - ctx.rng.random_range(0..window);
            }
            return ctx.rng.random_range(0..n);
        }
        self.new_content(ctx)
    }

    pub(super) fn pick_hash(&mut self, ctx: &mut Ctx<'_>) -> BlockHash {
        if ctx.model.contents.is_empty() || ctx.rng.random_bool(0.08) {
            let mut h = [0u8; 32];
            ctx.rng.fill_bytes(&mut h);
            return BlockHash(h);
        }
        let i = self.pick_content(ctx);
        ctx.model.contents[i].0
    }

    /// The address of a GET or HEAD: with the seed's `read_in_flight_p`, a block some client
    /// is uploading now (a hot spot: reads racing a PUT's batch being made durable).
    fn pick_read_hash(&mut self, ctx: &mut Ctx<'_>) -> BlockHash {
        if ctx.chance(ctx.opts.read_in_flight_p) {
            let uploading = self
                .clients
                .iter()
                .flat_map(|c| &c.waiting)
                .filter_map(|r| match r.kind {
                    Kind::Put { content, .. } => Some(content),
                    _ => None,
                });
            let count = uploading.clone().count();
            if count > 0 {
                let content = uploading
                    .clone()
                    .nth(ctx.rng.random_range(0..count))
                    .expect("within the count");
                return ctx.model.contents[content].0;
            }
        }
        self.pick_hash(ctx)
    }

    pub(super) fn draw_kind(&mut self, ctx: &mut Ctx<'_>) -> Kind {
        if ctx.chance(ctx.opts.reuse_race_p) {
            return self.draw_race(ctx);
        }
        let m = ctx.opts.mix;
        let mut r = ctx.rng.random_range(0..m.total().max(1));
        let mut take = |w: u32| {
            if r < w {
                true
            } else {
                r -= w;
                false
            }
        };
        if take(m.put) || take(m.put_hash) {
            let path_hash = ctx
                .rng
                .random_bool(f64::from(m.put_hash) / f64::from((m.put + m.put_hash).max(1)));
            let content = if ctx.chance(ctx.opts.duplicate_p) {
                self.pick_content(ctx)
            } else {
                self.new_content(ctx)
            };
            return Kind::Put { content, path_hash };
        }
        if take(m.get) {
            let hash = self.pick_read_hash(ctx);
            return Kind::Get {
                hash,
                if_none_match: ctx.rng.random_bool(0.05),
            };
        }
        if take(m.head) {
            return Kind::Head {
                hash: self.pick_read_hash(ctx),
            };
        }
        if take(m.delete) {
            return Kind::Delete {
                hash: self.pick_hash(ctx),
            };
        }
        if take(m.range) {
            let hash = self.pick_hash(ctx);
            let len = ctx.model.content_of(&hash).map_or(4096, |b| b.len() as u64);
            let a = ctx.rng.random_range(0..len + 2);
            let spec = match ctx.rng.random_range(0..3) {
                0 => RangeReq::FromTo(a, a + ctx.rng.random_range(0..len + 2)),
                1 => RangeReq::From(a),
                _ => RangeReq::Suffix(ctx.rng.random_range(0..len + 2)),
            };
            return Kind::Range { hash, spec };
        }
        if take(m.bad) {
            return self.draw_bad(ctx);
        }
        if take(m.probe) {
            return self.draw_probe(ctx);
        }
        match ctx.rng.random_range(0..5) {
            0 => Kind::Health,
            1 => Kind::Stats,
            2 => Kind::Metrics,
            3 => {
                let n = ctx.rng.random_range(1..=8);
                Kind::Missing {
                    hashes: (0..n).map(|_| self.pick_hash(ctx)).collect(),
                }
            }
            _ => {
                let after = ctx.rng.random_bool(0.5).then(|| self.pick_hash(ctx));
                Kind::List {
                    after,
                    limit: ctx.rng.random_range(1..=50),
                }
            }
        }
    }

    pub(super) fn draw_bad(&mut self, ctx: &mut Ctx<'_>) -> Kind {
        let auth = ctx.opts.auth_token.is_some();
        match ctx.rng.random_range(0..7) {
            0 => Kind::Garbage {
                seed: ctx.rng.random(),
            },
            1 => Kind::BadHex,
            2 => Kind::Oversize,
            3 => Kind::UnknownPath,
            4 => Kind::NotAllowed {
                hash: self.pick_hash(ctx),
            },
            5 if auth => Kind::Unauthorized {
                hash: self.pick_hash(ctx),
                delete: ctx.rng.random_bool(0.5),
                token: if ctx.rng.random_bool(0.5) {
                    BadToken::Missing
                } else {
                    BadToken::Other
                },
            },
            _ => Kind::PutWrongHash {
                body_seed: ctx.rng.random(),
                claimed: self.pick_hash(ctx),
            },
        }
    }

    /// A boundary probe: each stands exactly at a limit or one byte past it, with the answer
    /// SPEC.md gives (`oracle::answer`).
    pub(super) fn draw_probe(&mut self, ctx: &mut Ctx<'_>) -> Kind {
        let auth = ctx.opts.auth_token.is_some();
        let edge = if ctx.rng.random_bool(0.5) {
            Edge::AtLimit
        } else {
            Edge::OverByOne
        };
        match ctx.rng.random_range(0..4) {
            0 if auth => Kind::Unauthorized {
                hash: self.pick_hash(ctx),
                delete: ctx.rng.random_bool(0.5),
                token: if edge == Edge::AtLimit {
                    BadToken::Prefix
                } else {
                    BadToken::OneMore
                },
            },
            0 | 1 => Kind::HeadLimit { edge },
            2 => match edge {
                Edge::AtLimit => {
                    let content = match self.at_limit_content {
                        Some(content) => content,
                        None => self.new_content_of(BLOCK_MAX_BYTES, ctx),
                    };
                    self.at_limit_content = Some(content);
                    Kind::ChunkedAtLimit { content }
                }
                Edge::OverByOne => Kind::ChunkedOverLimit,
            },
            _ => {
                let hash = self.pick_hash(ctx);
                let len = ctx.model.content_of(&hash).map_or(4096, |b| b.len() as u64);
                let last = len - 1;
                let spec = match ctx.rng.random_range(0..6) {
                    0 => RangeReq::FromTo(last, last),
                    1 => RangeReq::From(last),
                    2 => RangeReq::From(len),
                    3 => RangeReq::Suffix(1),
                    4 => RangeReq::FromTo(last, len),
                    _ => RangeReq::FromTo(0, last),
                };
                Kind::Range { hash, spec }
            }
        }
    }
}
