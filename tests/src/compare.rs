//! The rules of comparison: which parts of two answers to one step must be equal.
//!
//! Everything the engine writes must be equal: the status line, every header in order and
//! byte for byte (the engine writes no `Date`, `Server` or other clock- or host-dependent
//! header, so none is excluded), the body, whether the server closed the connection, and any
//! bytes that did not parse as a response. Two answers are compared by their structure only,
//! because they report the state of a running process that the two sides reach at different
//! moments and by different paths:
//! - `/stats` ([`Compare::Stats`]): the same JSON keys at every level (arrays by length), equal
//!   figures of what the script stored ([`STATS_EXACT`]) and equal answers by status summed
//!   over the workers (which worker took a connection is the kernel's choice in the server, the
//!   script's in the simulator, so `responses_by_status` is compared as a sum); pool levels,
//!   free and reserved bytes, latencies, batch sizes and counters of driver events differ by
//!   nature (the server's threads run when the OS says, the simulator's when its seed says).
//!   Its `Content-Length` follows the figures.
//! - `/metrics` ([`Compare::Metrics`]): the same metric families (`# TYPE` lines), in order.
//!
//! Owns: [`Compare`] and [`differences`]. Never does: decide what an answer should be.

use engine::test_support::http_response::Response;
use serde_json::Value;
use sim::scripted::Answer;

/// `/stats` figures both sides must agree on after the script's writes are published.
pub const STATS_EXACT: [&str; 7] = [
    "capacity_bytes",
    "blocks",
    "data_bytes",
    "used_bytes",
    "durability",
    "verify_reads",
    "corrupt_blocks_detected",
];

/// How a step's answers are compared.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Compare {
    /// Status line, headers, body, close: all equal.
    Exact,
    /// A `/stats` answer: see the module doc.
    Stats,
    /// A `/metrics` answer: see the module doc.
    Metrics,
}

/// What differs between the simulator's answer and the server's, one line each (empty when
/// they agree).
pub fn differences(compare: Compare, sim: &Answer, real: &Answer) -> Vec<String> {
    let mut out = Vec::new();
    if sim.closed != real.closed {
        out.push(format!("closed: sim {} real {}", sim.closed, real.closed));
    }
    if (sim.leftover_bytes, &sim.error) != (real.leftover_bytes, &real.error) {
        out.push(format!(
            "unparsed rest: sim {} bytes ({:?}) real {} bytes ({:?})",
            sim.leftover_bytes, sim.error, real.leftover_bytes, real.error
        ));
    }
    if sim.responses.len() != real.responses.len() {
        out.push(format!(
            "answers: sim {:?} real {:?}",
            statuses(&sim.responses),
            statuses(&real.responses)
        ));
        return out;
    }
    for (i, (s, r)) in sim.responses.iter().zip(&real.responses).enumerate() {
        for d in response_differences(compare, s, r) {
            out.push(format!("answer {i}: {d}"));
        }
    }
    out
}

fn statuses(responses: &[Response]) -> Vec<u16> {
    responses.iter().map(|r| r.status).collect()
}

fn response_differences(compare: Compare, sim: &Response, real: &Response) -> Vec<String> {
    let mut out = Vec::new();
    if (sim.version_minor, sim.status) != (real.version_minor, real.status) {
        out.push(format!(
            "status: sim HTTP/1.{} {} real HTTP/1.{} {}",
            sim.version_minor, sim.status, real.version_minor, real.status
        ));
    }
    let kept = |r: &Response| -> Vec<(String, String)> {
        let by_figures = compare != Compare::Exact;
        r.headers
            .iter()
            .filter(|(n, _)| !(by_figures && n.eq_ignore_ascii_case("content-length")))
            .cloned()
            .collect()
    };
    if kept(sim) != kept(real) {
        out.push(format!(
            "headers: sim {:?} real {:?}",
            kept(sim),
            kept(real)
        ));
    }
    let body = match compare {
        Compare::Exact => (sim.body != real.body).then(|| {
            format!(
                "body: sim {:?} real {:?}",
                shorten(&sim.body),
                shorten(&real.body)
            )
        }),
        Compare::Stats => stats_difference(&sim.body, &real.body),
        Compare::Metrics => {
            let (s, r) = (families(&sim.body), families(&real.body));
            (s != r).then(|| format!("metric families: sim {s:?} real {r:?}"))
        }
    };
    out.extend(body);
    out
}

/// The first 200 bytes of a body, as text.
fn shorten(body: &[u8]) -> String {
    let cut = &body[..body.len().min(200)];
    format!("{} ({} bytes)", String::from_utf8_lossy(cut), body.len())
}

fn stats_difference(sim: &[u8], real: &[u8]) -> Option<String> {
    let parse = |b: &[u8]| serde_json::from_slice::<Value>(b).map_err(|e| e.to_string());
    let (s, r) = match (parse(sim), parse(real)) {
        (Ok(s), Ok(r)) => (s, r),
        (s, r) => return Some(format!("stats JSON: sim {:?} real {:?}", s.err(), r.err())),
    };
    let (mut ks, mut kr) = (Vec::new(), Vec::new());
    shape(&s, "", &mut ks);
    shape(&r, "", &mut kr);
    if ks != kr {
        let only_sim: Vec<&String> = ks.iter().filter(|k| !kr.contains(k)).collect();
        let only_real: Vec<&String> = kr.iter().filter(|k| !ks.contains(k)).collect();
        return Some(format!(
            "stats keys: only sim {only_sim:?}, only real {only_real:?}"
        ));
    }
    let differ: Vec<String> = STATS_EXACT
        .iter()
        .filter(|k| s.get(**k) != r.get(**k))
        .map(|k| format!("{k}: sim {:?} real {:?}", s.get(*k), r.get(*k)))
        .collect();
    let (ts, tr) = (status_totals(&s), status_totals(&r));
    if ts != tr {
        return Some(format!("answers by status: sim {ts:?} real {tr:?}"));
    }
    (!differ.is_empty()).then(|| format!("stats figures: {}", differ.join("; ")))
}

/// A per-worker map whose keys are data (the statuses a worker happened to answer).
const BY_STATUS: &str = "responses_by_status";

/// `responses_by_status` summed over the workers.
fn status_totals(stats: &Value) -> std::collections::BTreeMap<String, u64> {
    let mut totals = std::collections::BTreeMap::new();
    let workers = stats.get("workers").and_then(Value::as_array);
    for w in workers.into_iter().flatten() {
        let by = w.get(BY_STATUS).and_then(Value::as_object);
        for (status, n) in by.into_iter().flatten() {
            *totals.entry(status.clone()).or_insert(0) += n.as_u64().unwrap_or(0);
        }
    }
    totals
}

/// Every key path of a JSON value (`a.b`, arrays as `a[len]`), depth first.
fn shape(v: &Value, at: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                out.push(path.clone());
                if k != BY_STATUS {
                    shape(child, &path, out);
                }
            }
        }
        Value::Array(items) => {
            out.push(format!("{at}[{}]", items.len()));
            for (i, child) in items.iter().enumerate() {
                shape(child, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// The metric families of a Prometheus text exposition, in order.
fn families(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(raw: &[u8], closed: bool) -> Answer {
        Answer::parse(raw, &[false], closed)
    }

    #[test]
    fn any_byte_of_status_header_body_or_close_is_a_difference() {
        let base = b"HTTP/1.1 200 OK\r\nETag: \"a\"\r\nContent-Length: 2\r\n\r\nok";
        let a = answer(base, false);
        assert!(differences(Compare::Exact, &a, &a).is_empty());
        let others: [&[u8]; 3] = [
            b"HTTP/1.1 201 Created\r\nETag: \"a\"\r\nContent-Length: 2\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\nETag: \"b\"\r\nContent-Length: 2\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\nETag: \"a\"\r\nContent-Length: 2\r\n\r\nOK",
        ];
        for other in others {
            assert_eq!(
                differences(Compare::Exact, &a, &answer(other, false)).len(),
                1
            );
        }
        assert_eq!(
            differences(Compare::Exact, &a, &answer(base, true)).len(),
            1
        );
        assert_eq!(differences(Compare::Exact, &a, &answer(b"", true)).len(), 2);
    }

    #[test]
    fn stats_agree_on_keys_and_stored_figures_not_on_pool_levels() {
        let stats = |body: &str| {
            let raw = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            answer(raw.as_bytes(), false)
        };
        let a = stats(r#"{"blocks":3,"free_bytes":10,"w":[{"r":1}]}"#);
        let pools = stats(r#"{"blocks":3,"free_bytes":200,"w":[{"r":7}]}"#);
        assert!(differences(Compare::Stats, &a, &pools).is_empty());
        let blocks = stats(r#"{"blocks":4,"free_bytes":10,"w":[{"r":1}]}"#);
        assert_eq!(differences(Compare::Stats, &a, &blocks).len(), 1);
        let keys = stats(r#"{"blocks":3,"free_bytes":10,"w":[{"r":1},{"r":1}]}"#);
        assert_eq!(differences(Compare::Stats, &a, &keys).len(), 1);
    }
}
