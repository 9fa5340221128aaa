//! Sockets and eventfds, created with plain syscalls (SO_REUSEPORT must be set before bind).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn set_opt(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: passes a pointer to a live c_int and its size.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

/// Whether the port is shared with the other listeners of this process.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Sharing {
    /// SO_REUSEPORT: one listener per worker on the same address.
    ReusePort,
    /// Exclusive: the bind fails if any socket (even one with SO_REUSEPORT) holds the port.
    Exclusive,
}

/// A listening TCP socket with SO_REUSEPORT (one per worker, same address) and TCP_NODELAY
/// (inherited by accepted sockets).
pub fn listener(addr: SocketAddr, backlog: i32) -> io::Result<OwnedFd> {
    let fd = bound(addr, Sharing::ReusePort)?;
    set_opt(fd.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
    // SAFETY: plain syscall on our descriptor.
    check(unsafe { libc::listen(fd.as_raw_fd(), backlog) })?;
    Ok(fd)
}

/// Refuses a port another process already serves: SO_REUSEPORT would otherwise let this
/// process join its listeners, and connections would alternate between two servers. One
/// exclusive bind (SO_REUSEADDR, so a restart is not blocked by TIME_WAIT, but without
/// SO_REUSEPORT) fails with `EADDRINUSE` if anything holds the port; it is closed before the
/// workers bind theirs. (Another process could bind in that instant; another buddy-blocks
/// cannot: see [`claim_listen_address`].)
pub fn refuse_taken_port(addr: SocketAddr) -> io::Result<()> {
    bound(addr, Sharing::Exclusive).map(drop)
}

/// Claims `addr` among buddy-blocks processes for as long as the returned descriptor lives: a
/// Unix socket bound to the abstract name `buddy-blocks listen <addr>` (per network namespace,
/// like ports; released by the kernel when the process exits, however it exits). A second
/// server started in the same instant as the first, which could slip past
/// [`refuse_taken_port`], fails here with `EADDRINUSE`.
pub fn claim_listen_address(addr: SocketAddr) -> io::Result<OwnedFd> {
    let name = format!("buddy-blocks listen {addr}");
    // SAFETY: plain syscall; the result is checked and owned below.
    let fd =
        check(unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: a zeroed sockaddr_un is valid (family set below).
    let mut sun: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
    // sun_path[0] = 0 makes the name abstract; the name follows, without a terminator.
    assert!(name.len() < sun.sun_path.len(), "{name}");
    for (dst, src) in sun.sun_path[1..].iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + 1 + name.len();
    // SAFETY: passes a live sockaddr_un and the length of its used part.
    check(unsafe {
        libc::bind(
            fd,
            (&sun as *const libc::sockaddr_un).cast(),
            len as libc::socklen_t,
        )
    })?;
    Ok(owned)
}

/// A TCP socket bound to `addr`, not yet listening.
fn bound(addr: SocketAddr, sharing: Sharing) -> io::Result<OwnedFd> {
    let domain = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain syscall; the result is checked and owned below.
    let fd = check(unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    set_opt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    if sharing == Sharing::ReusePort {
        set_opt(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    }
    let rc = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: passes a live sockaddr_in and its size.
            unsafe {
                libc::bind(
                    fd,
                    (&sin as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            }
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: passes a live sockaddr_in6 and its size.
            unsafe {
                libc::bind(
                    fd,
                    (&sin6 as *const libc::sockaddr_in6).cast(),
                    std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                )
            }
        }
    };
    check(rc)?;
    Ok(owned)
}

/// An eventfd for waking a worker's ring.
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the result is checked and owned below.
    let fd = check(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) })?;
    // SAFETY: fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
