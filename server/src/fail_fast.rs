//! Fail fast: a panic on any thread stops the whole process at once.
//!
//! A panic is a broken invariant. A storage node that broke one must not go on serving from a
//! state it cannot trust: with unwinding, a dead controller thread would leave the workers
//! answering while every write waits forever, and a dead worker would leave shutdown waiting
//! for it. The process's files are crash-consistent by design (the same recovery as after
//! `kill -9`), so the hook logs the panic in one line and aborts; a supervisor restarts the
//! node.
//!
//! Owns: the panic hook, and the test-only trigger that lets black-box tests prove it.
//! Must never: try to recover, flush or close anything after a panic (that is what the next
//! start's recovery is for).

use std::path::PathBuf;

/// Installs the hook: the panic's message and thread in the log (and the standard report on
/// stderr), then `abort` (exit by SIGABRT, status 134).
pub fn install_hook() {
    let standard = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        tracing::error!(
            thread = name,
            "panic: {info}; stopping the process now (its files are crash-consistent: \
             restart it, and report the bug with this log)"
        );
        standard(info);
        std::process::abort();
    }));
}

/// Test-only: `BUDDY_BLOCKS_TEST_PANIC_DIR=<dir>` makes a thread panic once a file named
/// after its kind (`controller`, `worker`) appears in that directory. Unset, it costs nothing.
#[derive(Clone, Debug)]
pub struct TestPanic {
    trigger: Option<PathBuf>,
}

impl TestPanic {
    pub fn from_env(kind: &str) -> TestPanic {
        let trigger = std::env::var_os("BUDDY_BLOCKS_TEST_PANIC_DIR").map(|d| {
            let dir = PathBuf::from(d);
            dir.join(kind)
        });
        TestPanic { trigger }
    }

    /// Panics if the trigger file exists. Call now and then (a `stat` when enabled).
    pub fn check(&self) {
        if let Some(path) = &self.trigger {
            if path.exists() {
                panic!("test-only panic trigger {}", path.display());
            }
        }
    }
}
