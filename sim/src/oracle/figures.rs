//! The oracle for `/stats` and `/metrics`: the space figures against the model and against
//! each other.
//!
//! Checked in both formats: `blocks`, `data_bytes` and `used_bytes` (the slot bytes of stored
//! blocks: each block's size class, from the model's per-class counts) lie within the model's
//! bounds; `free_bytes + reserved_bytes + used_bytes == capacity_bytes`; the per-class
//! `free_slots` (and, in `/stats`, `reserved_slots` and `quarantined_bytes`) add up to the
//! byte figures they break down. Together these bound the per-class figures by the model:
//! the free and reserved slots of every class, weighed by their slot sizes, leave exactly
//! `used_bytes` of the capacity, which the model's per-class block counts bound. (A finer
//! per-class bound, "the slots of a class and larger fit in the file", follows from these
//! because the capacity is a whole number of the largest slots, so it adds nothing.)
//!
//! The simulator publishes the controller's figures to every worker before each batch's
//! replies go out and at every start (`World::publish_stats`), so no acknowledgement reaches a
//! client before its batch is in the figures: the publication lag is zero for what a client
//! can know. What the model cannot pin down (writes in flight or abandoned, states a crash
//! made uncertain) widens the bounds instead. All the figures of one answer come from one
//! publication, so the identities between them hold exactly.
//!
//! Owns: parsing those figures out of either format and the bounds the model allows.
//! Never does: change the model (a figure proves nothing about one address), draw randomness,
//! or look inside the engine. Invariant: the lower bounds count only addresses the model was
//! sure were stored for the request's whole life, the upper bounds every address that may be.

use engine::size_class::{SizeClass, CLASS_COUNT};

use crate::model::{Known, Model, ReadTicket};

/// Which endpoint answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `GET /stats`: one JSON object; the node's figures come before any nested object.
    Json,
    /// `GET /metrics`: Prometheus text, `buddy_blocks_<name> <value>` lines.
    Prometheus,
}

/// Bounds the model allows for one figure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Bounds {
    lo: u64,
    hi: u64,
}

impl Bounds {
    fn check(&self, what: &str, value: u64) -> Result<(), String> {
        if value < self.lo || value > self.hi {
            return Err(format!(
                "{what} is {value}, the model allows {}..={}",
                self.lo, self.hi
            ));
        }
        Ok(())
    }
}

/// The space figures of one answer. `/metrics` leaves out what only `/stats` has.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Space {
    blocks: u64,
    data_bytes: u64,
    capacity_bytes: u64,
    free_bytes: u64,
    reserved_bytes: u64,
    used_bytes: u64,
    free_slots: [u64; CLASS_COUNT],
    /// `/stats` only.
    reserved_slots: Option<[u64; CLASS_COUNT]>,
    /// `/stats` only: freed slots not yet back on the free lists (counted in `free_bytes`).
    quarantined_bytes: Option<u64>,
}

impl Space {
    /// Reads the figures: `/metrics` names each `buddy_blocks_<its /stats key>`.
    fn parse(format: Format, text: &str) -> Result<Space, String> {
        let figure = |key: &str| match format {
            Format::Json => json_figure(text, key),
            Format::Prometheus => prometheus_figure(text, &format!("buddy_blocks_{key}")),
        };
        let classes = |key: &str| match format {
            Format::Json => json_classes(text, key),
            Format::Prometheus => prometheus_classes(text, &format!("buddy_blocks_{key}")),
        };
        let in_stats = format == Format::Json;
        Ok(Space {
            blocks: figure("blocks")?,
            data_bytes: figure("data_bytes")?,
            capacity_bytes: figure("capacity_bytes")?,
            free_bytes: figure("free_bytes")?,
            reserved_bytes: figure("reserved_bytes")?,
            used_bytes: figure("used_bytes")?,
            free_slots: classes("free_slots")?,
            reserved_slots: in_stats.then(|| classes("reserved_slots")).transpose()?,
            quarantined_bytes: in_stats.then(|| figure("quarantined_bytes")).transpose()?,
        })
    }

    /// The byte figures and their per-class breakdowns agree with each other.
    fn check_identities(&self) -> Result<(), String> {
        let sum = self.free_bytes + self.reserved_bytes + self.used_bytes;
        if sum != self.capacity_bytes {
            return Err(format!(
                "free + reserved + used bytes is {sum}, capacity_bytes {}",
                self.capacity_bytes
            ));
        }
        let free_listed = slot_bytes(&self.free_slots);
        match self.quarantined_bytes {
            Some(q) if free_listed + q != self.free_bytes => {
                return Err(format!(
                    "free_slots per class hold {free_listed} bytes and {q} are quarantined, \
                     free_bytes is {}",
                    self.free_bytes
                ));
            }
            None if free_listed > self.free_bytes => {
                return Err(format!(
                    "free_slots per class hold {free_listed} bytes, over free_bytes {}",
                    self.free_bytes
                ));
            }
            _ => {}
        }
        if let Some(reserved) = self.reserved_slots {
            let reserved_listed = slot_bytes(&reserved);
            if reserved_listed != self.reserved_bytes {
                return Err(format!(
                    "reserved_slots per class hold {reserved_listed} bytes, reserved_bytes is {}",
                    self.reserved_bytes
                ));
            }
        }
        Ok(())
    }
}

/// What the model allows: blocks, their bytes, and blocks per size class.
#[derive(Clone, Copy, Debug, Default)]
struct ModelBounds {
    count: Bounds,
    bytes: Bounds,
    per_class: [Bounds; CLASS_COUNT],
}

impl ModelBounds {
    /// Slot bytes of the stored blocks (`used_bytes`).
    fn used_bytes(&self) -> Bounds {
        let mut used = Bounds::default();
        for class in SizeClass::ALL {
            let b = self.per_class[class.index()];
            used.lo += b.lo * class.bytes();
            used.hi += b.hi * class.bytes();
        }
        used
    }
}

/// Checks the space figures of a `/stats` or `/metrics` body. `reads` are the tickets taken
/// when the request was sent, one per address no write was touching then (sorted).
pub fn check(
    format: Format,
    body: &[u8],
    reads: &[ReadTicket],
    model: &Model,
) -> Result<(), String> {
    let text = std::str::from_utf8(body).map_err(|_| "the figures are not text")?;
    let space = Space::parse(format, text)?;
    let allowed = bounds(reads, model);
    allowed.count.check("blocks", space.blocks)?;
    allowed.bytes.check("data_bytes", space.data_bytes)?;
    allowed.used_bytes().check("used_bytes", space.used_bytes)?;
    space.check_identities()
}

/// Blocks and bytes: an address counts towards the lower bound when the model was sure it was
/// stored for the request's whole life, towards the upper bound unless sure it was not.
/// Addresses whose bytes no client ever had (random hashes) cannot be stored.
fn bounds(reads: &[ReadTicket], model: &Model) -> ModelBounds {
    debug_assert!(
        reads.windows(2).all(|w| w[0].hash < w[1].hash),
        "sorted tickets"
    );
    let mut m = ModelBounds::default();
    for (hash, a) in &model.addrs {
        let Some(content) = a.content else { continue };
        let len = model.contents[content].1.len() as u64;
        let class = SizeClass::for_len(len).expect("model content is a valid block");
        let sure = match reads.binary_search_by(|t| t.hash.cmp(hash)) {
            Ok(i) => model.read_expectation(&reads[i]),
            Err(_) => Known::Uncertain,
        };
        if sure == Known::Absent {
            continue;
        }
        let per_class = &mut m.per_class[class.index()];
        if sure == Known::Present {
            m.count.lo += 1;
            m.bytes.lo += len;
            per_class.lo += 1;
        }
        m.count.hi += 1;
        m.bytes.hi += len;
        per_class.hi += 1;
    }
    assert!(m.count.lo <= m.count.hi && m.bytes.lo <= m.bytes.hi);
    m
}

/// Bytes of `slots` slots per class.
fn slot_bytes(slots: &[u64; CLASS_COUNT]) -> u64 {
    SizeClass::ALL
        .iter()
        .map(|c| slots[c.index()] * c.bytes())
        .sum()
}

/// The first `"key":<number>` of a JSON object (the node's figures precede nested objects).
fn json_figure(text: &str, key: &str) -> Result<u64, String> {
    let needle = format!("\"{key}\":");
    let at = text.find(&needle).ok_or(format!("/stats has no {key}"))? + needle.len();
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .map_err(|_| format!("/stats {key} is not a number"))
}

/// The object `"key":{"4k":<n>,...,"512k":<n>}` of a JSON object (its first occurrence).
fn json_classes(text: &str, key: &str) -> Result<[u64; CLASS_COUNT], String> {
    let needle = format!("\"{key}\":{{");
    let at = text.find(&needle).ok_or(format!("/stats has no {key}"))? + needle.len();
    let end = text[at..]
        .find('}')
        .ok_or(format!("/stats {key} is not closed"))?
        + at;
    let object = &text[at - 1..=end];
    let mut out = [0; CLASS_COUNT];
    for class in SizeClass::ALL {
        out[class.index()] =
            json_figure(object, class.label()).map_err(|e| format!("{e} in {key}"))?;
    }
    Ok(out)
}

/// The samples `name{class="<label>"}` of Prometheus text, one per class.
fn prometheus_classes(text: &str, name: &str) -> Result<[u64; CLASS_COUNT], String> {
    let mut out = [0; CLASS_COUNT];
    for class in SizeClass::ALL {
        let labelled = format!("{name}{{class=\"{}\"}}", class.label());
        out[class.index()] = prometheus_figure(text, &labelled)?;
    }
    Ok(out)
}

/// The value of the sample `name` (with its labels, if any) in Prometheus text.
fn prometheus_figure(text: &str, name: &str) -> Result<u64, String> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .ok_or(format!("/metrics has no {name}"))?;
    line.trim()
        .parse()
        .map_err(|_| format!("/metrics {name} is not a whole number: {line}"))
}

#[cfg(test)]
mod tests {
    use engine::controller::ControllerStats;
    use engine::stats::{render_json, render_prometheus, StatsSnapshot};

    use super::*;
    use crate::model::WriteEnd;

    const K4: u64 = 4096;
    const K512: u64 = 512 * 1024;

    /// The engine's own figures for a 1 MiB file holding one 10-byte block: one 4 KiB slot
    /// used, one 4 KiB slot reserved, the rest free as the buddy split it.
    fn stats() -> ControllerStats {
        let mut s = ControllerStats {
            capacity_bytes: 2 * K512,
            blocks: 1,
            data_bytes: 10,
            used_bytes: K4,
            reserved_bytes: K4,
            free_bytes: 2 * K512 - 2 * K4,
            ..ControllerStats::default()
        };
        s.reserved_slots[0] = 1;
        // One 512 KiB slot split down to two 4 KiB ones leaves one free slot per class from
        // 8k to 256k, next to the other 512 KiB slot.
        s.free_slots = [0, 1, 1, 1, 1, 1, 1, 1];
        s
    }

    /// Both renderings of `s` checked against a model with that block stored and an 8 KiB
    /// class block (5000 bytes) deleted.
    fn verdicts(s: &ControllerStats) -> [Result<(), String>; 2] {
        let mut m = Model::new();
        let stored = m.add_content(vec![1; 10]);
        let deleted = m.add_content(vec![2; 5000]);
        for (i, state) in [(stored, Known::Present), (deleted, Known::Absent)] {
            let t = m.begin_write(m.contents[i].0);
            m.end_write(t, WriteEnd::Effect(state), Some(Known::Absent));
        }
        let reads = m.begin_reads_after(None);
        let snap = StatsSnapshot {
            controller: s.clone(),
            ..StatsSnapshot::default()
        };
        let json = render_json(&snap);
        let prometheus = render_prometheus(&snap);
        [
            check(Format::Json, json.as_bytes(), &reads, &m),
            check(Format::Prometheus, prometheus.as_bytes(), &reads, &m),
        ]
    }

    fn both_refuse(s: &ControllerStats, what: &str) {
        for (format, v) in ["json", "prometheus"].iter().zip(verdicts(s)) {
            let e = v.expect_err(format);
            assert!(e.contains(what), "{format}: {e}");
        }
    }

    #[test]
    fn figures_are_read_from_both_formats() {
        let snap = StatsSnapshot {
            controller: stats(),
            ..StatsSnapshot::default()
        };
        let json = Space::parse(Format::Json, &render_json(&snap)).unwrap();
        let prom = Space::parse(Format::Prometheus, &render_prometheus(&snap)).unwrap();
        assert_eq!(json.free_slots, [0, 1, 1, 1, 1, 1, 1, 1]);
        assert_eq!(json.reserved_slots, Some([1, 0, 0, 0, 0, 0, 0, 0]));
        assert_eq!(json.quarantined_bytes, Some(0));
        assert_eq!(
            (
                json.blocks,
                json.data_bytes,
                json.used_bytes,
                json.capacity_bytes
            ),
            (1, 10, K4, 2 * K512)
        );
        assert_eq!(prom.free_slots, json.free_slots);
        assert_eq!(
            (prom.free_bytes, prom.reserved_bytes),
            (json.free_bytes, K4)
        );
        let prom_text = "buddy_blocks_blocks_total 1\nbuddy_blocks_blocks 3\n";
        assert_eq!(prometheus_figure(prom_text, "buddy_blocks_blocks"), Ok(3));
    }

    #[test]
    fn figures_that_agree_with_the_model_pass() {
        assert_eq!(verdicts(&stats()), [Ok(()), Ok(())]);
    }

    #[test]
    fn a_stored_block_bounds_the_figures_from_below_and_a_deleted_one_from_above() {
        let mut s = stats();
        s.blocks = 0;
        both_refuse(&s, "blocks is 0");
        let mut s = stats();
        s.blocks = 2;
        both_refuse(&s, "blocks is 2");
        let mut s = stats();
        s.data_bytes = 11;
        both_refuse(&s, "data_bytes is 11");
    }

    #[test]
    fn used_bytes_must_be_the_stored_blocks_slot_sizes() {
        // The 10-byte block charged as an 8 KiB slot, the identity kept.
        let mut s = stats();
        s.used_bytes = 2 * K4;
        s.free_bytes -= K4;
        both_refuse(&s, "used_bytes is 8192");
    }

    #[test]
    fn a_class_left_out_of_free_slots_is_caught() {
        // What the switch `miscount_free_slots` does: the 512k class reads 0.
        // `/metrics` publishes no quarantine, so there free slots are only bounded above.
        let mut s = stats();
        s.free_slots[7] = 0;
        let [json, prom] = verdicts(&s);
        assert!(json.unwrap_err().contains("free_slots per class hold"));
        assert_eq!(prom, Ok(()));
        s.free_slots[7] = 2;
        both_refuse(&s, "free_slots per class hold");
    }

    #[test]
    fn quarantined_bytes_complete_the_free_lists() {
        let mut s = stats();
        s.quarantined_bytes = K4;
        s.free_bytes += K4;
        s.reserved_bytes -= K4;
        s.reserved_slots[0] = 0;
        assert_eq!(verdicts(&s), [Ok(()), Ok(())]);
        s.quarantined_bytes = 0;
        let [json, prom] = verdicts(&s);
        assert!(json.unwrap_err().contains("free_slots per class"));
        assert_eq!(
            prom,
            Ok(()),
            "/metrics has no quarantine: only an upper bound"
        );
    }

    #[test]
    fn reserved_slots_in_the_wrong_class_are_caught_by_stats() {
        let mut s = stats();
        s.reserved_slots = [0, 1, 0, 0, 0, 0, 0, 0];
        let [json, prom] = verdicts(&s);
        assert!(json.unwrap_err().contains("reserved_slots per class"));
        assert_eq!(prom, Ok(()), "/metrics has no reserved_slots");
    }

    #[test]
    fn the_capacity_identity_holds() {
        let mut s = stats();
        s.reserved_bytes += K4;
        s.reserved_slots[0] += 1;
        both_refuse(&s, "free + reserved + used");
    }
}
