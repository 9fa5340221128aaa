//! The oracle for `/stats` and `/metrics`: the stored-block figures (`blocks`, `data_bytes`)
//! against the model.
//!
//! The simulator publishes the controller's figures to every worker before each batch's
//! replies go out and at every start (`World::publish_stats`), so no acknowledgement reaches a
//! client before its batch is in the figures: the publication lag is zero for what a client
//! can know. What the model cannot pin down (writes in flight or abandoned, states a crash
//! made uncertain) widens the bounds instead.
//!
//! Owns: parsing those two figures out of either format and the bounds the model allows.
//! Never does: change the model (a figure proves nothing about one address), draw randomness,
//! or look inside the engine. Invariant: the lower bound counts only addresses the model was
//! sure were stored for the request's whole life, the upper bound every address that may be.

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

/// Checks the stored-block figures of a `/stats` or `/metrics` body. `reads` are the tickets
/// taken when the request was sent, one per address no write was touching then (sorted).
pub fn check(
    format: Format,
    body: &[u8],
    reads: &[ReadTicket],
    model: &Model,
) -> Result<(), String> {
    let text = std::str::from_utf8(body).map_err(|_| "the figures are not text")?;
    let (blocks, data_bytes) = match format {
        Format::Json => (
            json_figure(text, "blocks")?,
            json_figure(text, "data_bytes")?,
        ),
        Format::Prometheus => (
            prometheus_figure(text, "buddy_blocks_blocks")?,
            prometheus_figure(text, "buddy_blocks_data_bytes")?,
        ),
    };
    let (count, bytes) = bounds(reads, model);
    count.check("blocks", blocks)?;
    bytes.check("data_bytes", data_bytes)
}

/// Blocks and bytes: an address counts towards the lower bound when the model was sure it was
/// stored for the request's whole life, towards the upper bound unless sure it was not.
/// Addresses whose bytes no client ever had (random hashes) cannot be stored.
fn bounds(reads: &[ReadTicket], model: &Model) -> (Bounds, Bounds) {
    debug_assert!(
        reads.windows(2).all(|w| w[0].hash < w[1].hash),
        "sorted tickets"
    );
    let (mut count, mut bytes) = (Bounds::default(), Bounds::default());
    for (hash, a) in &model.addrs {
        let Some(content) = a.content else { continue };
        let len = model.contents[content].1.len() as u64;
        let sure = match reads.binary_search_by(|t| t.hash.cmp(hash)) {
            Ok(i) => model.read_expectation(&reads[i]),
            Err(_) => Known::Uncertain,
        };
        if sure == Known::Absent {
            continue;
        }
        if sure == Known::Present {
            count.lo += 1;
            bytes.lo += len;
        }
        count.hi += 1;
        bytes.hi += len;
    }
    assert!(count.lo <= count.hi && bytes.lo <= bytes.hi);
    (count, bytes)
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

/// The value of the unlabelled sample `name` in Prometheus text.
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
    use super::*;

    #[test]
    fn figures_are_read_from_both_formats() {
        let json = r#"{"version":"x","blocks":3,"data_bytes":70,"scrub":{"blocks":9}}"#;
        assert_eq!(json_figure(json, "blocks"), Ok(3));
        assert_eq!(json_figure(json, "data_bytes"), Ok(70));
        let prom =
            "# HELP buddy_blocks_blocks x\nbuddy_blocks_blocks_total 1\nbuddy_blocks_blocks 3\n";
        assert_eq!(prometheus_figure(prom, "buddy_blocks_blocks"), Ok(3));
    }

    #[test]
    fn a_stored_block_bounds_the_figures_from_below_and_a_deleted_one_from_above() {
        let mut m = Model::new();
        let stored = m.add_content(vec![1; 10]);
        let deleted = m.add_content(vec![2; 20]);
        for (i, state) in [(stored, Known::Present), (deleted, Known::Absent)] {
            let t = m.begin_write(m.contents[i].0);
            m.end_write(
                t,
                crate::model::WriteEnd::Effect(state),
                Some(Known::Absent),
            );
        }
        let reads = m.begin_reads_after(None);
        let json = |b: u64, d: u64| format!("{{\"blocks\":{b},\"data_bytes\":{d}}}");
        assert!(check(Format::Json, json(1, 10).as_bytes(), &reads, &m).is_ok());
        assert!(check(Format::Json, json(0, 0).as_bytes(), &reads, &m).is_err());
        assert!(check(Format::Json, json(2, 30).as_bytes(), &reads, &m).is_err());
        assert!(check(Format::Json, json(1, 11).as_bytes(), &reads, &m).is_err());
    }
}
