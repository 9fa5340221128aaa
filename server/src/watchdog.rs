//! The watchdog: what the main thread does while the server runs.
//!
//! Every [`TICK`] it gathers what the other threads leave in [`Shared`] (the controller's
//! heartbeat, the flush in flight, each worker's oldest wait for the controller and oldest
//! read or write of the data file, a latched storage error), asks the engine's [`health::verdict`], publishes the verdict for every
//! worker's `/health`, `/stats` and `/metrics`, and logs each change once (a stall is one
//! line when it starts and one when it ends, not a line per check). It returns the signal
//! when SIGTERM or SIGINT arrives.
//!
//! Must never: block on anything but the signal wait, or touch the index or the data file: it
//! has to keep running when they hang.

use std::path::Path;
use std::time::Duration;

use engine::health::{self, Change, Observations, Unhealthy, Watchdog};

use crate::shared::Shared;

/// How often the watchdog looks.
pub const TICK: Duration = Duration::from_millis(100);

/// Free space under which a latched storage error is explained as a full disk.
const FULL_DISK_BYTES: u64 = 256 << 20;

/// Watches until SIGTERM or SIGINT (blocked in every thread, see `serve::block_signals`);
/// returns the signal.
pub fn run_until_signal(
    signals: &libc::sigset_t,
    shared: &Shared,
    stall_limit: Duration,
    data_dir: &Path,
) -> i32 {
    let mut watchdog = Watchdog::default();
    let mut explained: Option<(String, String)> = None;
    loop {
        if let Some(sig) = wait_for_signal(signals, TICK) {
            shared.set_health(Some(Unhealthy::ShuttingDown));
            return sig;
        }
        let failure = shared.storage_failure().map(|cause| {
            // Explained once: the free space at the time of the failure is what tells.
            match &explained {
                Some((c, text)) if *c == cause => text.clone(),
                _ => {
                    let text = explain_failure(&cause, data_dir);
                    explained = Some((cause, text.clone()));
                    text
                }
            }
        });
        let observations = Observations {
            now: shared.now(),
            controller_beat: shared.controller_beat.load(),
            sync_since: shared.sync_since.load(),
            oldest_wait_since: shared.oldest_wait.iter().filter_map(|w| w.load()).min(),
            oldest_file_op_since: shared.oldest_file_op.iter().filter_map(|w| w.load()).min(),
            storage_failure: failure,
            shutting_down: false,
        };
        let verdict = health::verdict(&observations, stall_limit);
        match watchdog.update(verdict.as_ref()) {
            Change::Entered(why) => {
                tracing::error!(reason = why.code(), "unhealthy: {}", why.reason());
            }
            Change::Recovered { was } => tracing::warn!(was, "healthy again"),
            Change::Unchanged => {}
        }
        shared.set_health(verdict);
    }
}

/// The latched error in words an operator can act on: libmdbx reports a full disk as an
/// I/O error, so the free space of the data directory's filesystem is added, and called a
/// full disk when it is low.
pub fn explain_failure(cause: &str, data_dir: &Path) -> String {
    match free_bytes(data_dir) {
        Some(free) if free < FULL_DISK_BYTES => format!(
            "{cause} (the disk holding {} is full: {} MiB free; free space, then restart)",
            data_dir.display(),
            free >> 20
        ),
        Some(free) => format!(
            "{cause} ({} MiB free on the disk holding {})",
            free >> 20,
            data_dir.display()
        ),
        None => cause.to_string(),
    }
}

/// Bytes an unprivileged writer may still use on the filesystem holding `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into a zeroed local; the path is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail.saturating_mul(st.f_frsize))
}

/// Waits up to `timeout` for one of `signals`.
fn wait_for_signal(signals: &libc::sigset_t, timeout: Duration) -> Option<i32> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: waits on a valid set with a valid timeout; no siginfo wanted.
    let sig = unsafe { libc::sigtimedwait(signals, std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_says_how_much_space_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let text = explain_failure("index commit: Input/output error", dir.path());
        assert!(
            text.starts_with("index commit: Input/output error ("),
            "{text}"
        );
        assert!(text.contains("MiB free"), "{text}");
    }
}
