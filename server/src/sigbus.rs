//! Dying of SIGBUS with a word: the index is memory-mapped by libmdbx, and a process touching
//! a page of a mapped file that was truncated under it gets SIGBUS, which by default kills it
//! without a line in the log.
//!
//! [`install`] sets a handler that writes one line, prepared beforehand, to stderr (`write(2)`
//! only: async-signal-safe, no allocation, no lock) and then dies of the same signal (the
//! disposition is reset on entry and the signal re-raised), so supervisors still see "killed
//! by SIGBUS". Must never try to recover: the mapped bytes are gone.

use std::path::Path;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use crate::mdbx::ENV_DIR_NAME;

static LINE: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static LINE_BYTES: AtomicUsize = AtomicUsize::new(0);

/// The line the handler writes for the data directory `dir`.
pub fn line(dir: &Path) -> String {
    let index = dir.join(ENV_DIR_NAME);
    format!(
        "buddy-blocks: fatal: SIGBUS: a memory-mapped file was truncated or damaged under the \
         running process, almost certainly the index {} (the only file it maps); the process \
         stops now. Restore {ENV_DIR_NAME} from a backup (it cannot be rebuilt from the data \
         file) and run `buddy-blocks check --data-dir {}` before starting it again\n",
        index.display(),
        dir.display()
    )
}

/// Installs the handler for the data directory `dir`. Once per process: a later call changes
/// nothing (the process serves one data directory).
pub fn install(dir: &Path) {
    if !LINE.load(Ordering::Acquire).is_null() {
        return;
    }
    let text: &'static mut [u8] = Box::leak(line(dir).into_bytes().into_boxed_slice());
    assert!(!text.is_empty() && text.ends_with(b"\n"));
    // The length is set before the pointer: a handler that sees the pointer sees its length.
    LINE_BYTES.store(text.len(), Ordering::Release);
    LINE.store(text.as_mut_ptr(), Ordering::Release);
    // SAFETY: a zeroed sigaction with a valid handler, an empty mask and plain flags, passed
    // to sigaction(2) for SIGBUS; the handler only calls async-signal-safe functions.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigbus as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESETHAND | libc::SA_NODEFER;
        libc::sigemptyset(&mut action.sa_mask);
        let rc = libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut());
        assert_eq!(rc, 0, "sigaction(SIGBUS)");
    }
}

extern "C" fn on_sigbus(
    sig: libc::c_int,
    _info: *mut libc::siginfo_t,
    _context: *mut libc::c_void,
) {
    let ptr = LINE.load(Ordering::Acquire);
    let len = LINE_BYTES.load(Ordering::Acquire);
    // SAFETY: `ptr` is null or the leaked line, `len` bytes long (set once, before the
    // pointer, never freed); write(2) and raise(3) are async-signal-safe. The
    // disposition was reset to the default on entry (SA_RESETHAND) and the signal is not
    // blocked (SA_NODEFER), so raise() ends the process by SIGBUS.
    unsafe {
        if !ptr.is_null() {
            libc::write(libc::STDERR_FILENO, ptr.cast(), len);
        }
        libc::raise(sig);
    }
}
