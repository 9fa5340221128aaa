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

/// The `main` of a benchmark file: `criterion_group!` of `$target` with [`quick`] settings,
/// and `criterion_main!`.
macro_rules! quick_main {
    ($target:path) => {
        criterion::criterion_group! {
            name = benches;
            config = common::quick();
            targets = $target
        }
        criterion::criterion_main!(benches);
    };
}
