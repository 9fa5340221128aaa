//! Benchmarks live here (issue 6).
