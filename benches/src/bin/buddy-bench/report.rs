//! The report: latency percentiles as JSON, rounding, and the human-readable summary.

use hdrhistogram::Histogram;
use serde_json::{json, Value};

pub(crate) fn percentile_json(h: &Histogram<u32>) -> Value {
    json!({
        "p50": h.value_at_quantile(0.50),
        "p90": h.value_at_quantile(0.90),
        "p99": h.value_at_quantile(0.99),
        "p999": h.value_at_quantile(0.999),
        "max": h.max(),
        "mean": (h.mean() * 10.0).round() / 10.0,
    })
}

pub(crate) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub(crate) fn human_summary(o: &Value, first_errors: &[String]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let _ = writeln!(
        s,
        "{} {}  mix {}  size {}  {} conn  {:.1}s measured (+{}s warm-up, {} preloaded)",
        o["target"].as_str().unwrap_or(""),
        o["url"].as_str().unwrap_or(""),
        o["mix"].as_str().unwrap_or(""),
        o["size"].as_str().unwrap_or(""),
        o["connections"],
        f(&o["duration_s"]),
        o["warmup_s"],
        o["preload"],
    );
    let _ = writeln!(
        s,
        "  {:>10.0} req/s  {:>9.1} MB/s  {} requests  {} errors",
        f(&o["rps"]),
        f(&o["mbps"]),
        o["requests"],
        o["errors"]
    );
    let lat = |l: &Value| {
        format!(
            "p50 {} us  p90 {}  p99 {}  p99.9 {}  max {}",
            l["p50"], l["p90"], l["p99"], l["p999"], l["max"]
        )
    };
    let _ = writeln!(s, "  latency  {}", lat(&o["latency_us"]));
    if let Some(ops) = o["ops"].as_object() {
        if ops.len() > 1 {
            for (name, v) in ops {
                let _ = writeln!(s, "  {:<7} {:>9.0} req/s  {}", name, f(&v["rps"]), lat(v));
            }
        }
    }
    let _ = write!(
        s,
        "  cpu: client {:.2} cores (user {} s, sys {} s)",
        f(&o["client_cores"]),
        o["client_cpu_s"]["user"],
        o["client_cpu_s"]["sys"]
    );
    if !o["server_cores"].is_null() {
        let _ = write!(
            s,
            ", server {:.2} cores ({} s), server RSS {} MB",
            f(&o["server_cores"]),
            o["server_cpu_s"],
            o["server_rss_mb"]
        );
    }
    if !o["machine_busy_cores"].is_null() {
        let _ = write!(
            s,
            ", machine busy {:.2} cores (others {:.2})",
            f(&o["machine_busy_cores"]),
            f(&o["other_cores"])
        );
    }
    let _ = writeln!(s);
    for e in first_errors {
        let _ = writeln!(s, "  error: {e}");
    }
    s
}
