// Shared criterion settings: short runs (each benchmark ~1.5 s), as issue 6 asks.
use std::time::Duration;

use criterion::Criterion;

pub fn quick() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30)
        .configure_from_args()
}
