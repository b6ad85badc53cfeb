//! The few Linux system calls behind the TAP device, each wrapped in a safe function.
//!
//! With the CRC-32's processor instructions (`wire::crc32`), this is the only
//! place in smolsock with `unsafe` code: opening `/dev/net/tun` and
//! attaching it to a TAP interface (`TUNSETIFF`), asking the interface MTU
//! (`SIOCGIFMTU`), reading and writing one frame, waiting for the descriptor with
//! `ppoll`, and drawing a random seed with `getrandom`. Every wrapper turns `-1` into
//! [`io::Error::last_os_error`] and never panics.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use smoltcp::time::Duration;

/// Copies `name` into a zeroed `ifreq`, or `None` if it does not fit `IFNAMSIZ - 1`
/// bytes or holds a NUL (the kernel would read a different name than the caller meant).
fn ifreq_named(name: &str) -> Option<libc::ifreq> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return None;
    }
    // SAFETY: `ifreq` is a plain C struct (a char array and a union of integers,
    // sockaddrs and a pointer); all-zero bytes are a valid value for every field.
    #[allow(unsafe_code)]
    let mut ifreq: libc::ifreq = unsafe { core::mem::zeroed() };
    for (slot, byte) in ifreq.ifr_name.iter_mut().zip(bytes) {
        *slot = libc::c_char::from_ne_bytes([*byte]);
    }
    Some(ifreq)
}

/// Why [`open_tap`] failed, before it is turned into the public error.
pub(super) enum OpenFailure {
    /// The name is empty, too long for `IFNAMSIZ` or holds a NUL byte.
    InvalidName,
    /// `open("/dev/net/tun")` failed.
    Tun(io::Error),
    /// `ioctl(TUNSETIFF)` failed.
    Attach(io::Error),
}

/// Opens `/dev/net/tun` non-blocking and attaches it to the TAP interface `name`
/// (creating a non-persistent one if it does not exist), without packet information
/// headers, so every read and write is exactly one Ethernet frame.
///
/// The interface is looked up in the network namespace of the calling thread.
pub(super) fn open_tap(name: &str) -> Result<OwnedFd, OpenFailure> {
    let mut ifreq = ifreq_named(name).ok_or(OpenFailure::InvalidName)?;
    // SAFETY: the path is a NUL-terminated C string literal and the flags are plain
    // integers; `open` touches no Rust memory.
    #[allow(unsafe_code)]
    let raw = unsafe {
        libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if raw < 0 {
        return Err(OpenFailure::Tun(io::Error::last_os_error()));
    }
    // SAFETY: `raw` is a descriptor we just opened and nothing else owns it; the
    // `OwnedFd` closes it exactly once, also on the error path below.
    #[allow(unsafe_code)]
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };

    // The flags are 0x0002 | 0x1000, which fit a c_short.
    let flags = libc::IFF_TAP | libc::IFF_NO_PI;
    ifreq.ifr_ifru.ifru_flags = libc::c_short::try_from(flags).unwrap_or(libc::c_short::MAX);
    // SAFETY: TUNSETIFF reads (and may write back the name into) the `ifreq` we pass,
    // which is a valid, exclusively borrowed `libc::ifreq` for the whole call.
    #[allow(unsafe_code)]
    let result = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETIFF as _,
            &mut ifreq as *mut libc::ifreq,
        )
    };
    if result < 0 {
        return Err(OpenFailure::Attach(io::Error::last_os_error()));
    }
    Ok(fd)
}

/// The IP MTU of interface `name` (1500 on a fresh TAP) in the calling thread's
/// network namespace, asked through a throwaway datagram socket.
pub(super) fn interface_mtu(name: &str) -> io::Result<usize> {
    let mut ifreq = ifreq_named(name)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "invalid interface name"))?;
    // SAFETY: plain integer arguments; touches no Rust memory.
    #[allow(unsafe_code)]
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` was just returned by `socket` and is owned by nobody else.
    #[allow(unsafe_code)]
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: SIOCGIFMTU reads the name from and writes the MTU into the `ifreq`,
    // a valid, exclusively borrowed `libc::ifreq` for the whole call.
    #[allow(unsafe_code)]
    let result = unsafe {
        libc::ioctl(
            socket.as_raw_fd(),
            libc::SIOCGIFMTU as _,
            &mut ifreq as *mut libc::ifreq,
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFMTU succeeded, so the kernel stored the MTU in `ifru_mtu`; the
    // union member is a plain c_int either way.
    #[allow(unsafe_code)]
    let mtu = unsafe { ifreq.ifr_ifru.ifru_mtu };
    usize::try_from(mtu).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "negative MTU"))
}

/// Reads one frame into `buffer`. Returns the frame's full length, which the kernel
/// reports even when the frame was longer than `buffer` (then only the first
/// `buffer.len()` bytes were copied).
pub(super) fn read_frame(fd: BorrowedFd<'_>, buffer: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the pointer and length describe `buffer`, which is exclusively borrowed
    // and stays alive for the call; `read` writes at most `buffer.len()` bytes.
    #[allow(unsafe_code)]
    let n = unsafe {
        libc::read(
            fd.as_raw_fd(),
            buffer.as_mut_ptr().cast::<libc::c_void>(),
            buffer.len(),
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Writes one frame. A TAP descriptor takes a frame whole or not at all.
pub(super) fn write_frame(fd: BorrowedFd<'_>, frame: &[u8]) -> io::Result<usize> {
    // SAFETY: the pointer and length describe `frame`, which is borrowed and alive
    // for the call; `write` only reads from it.
    #[allow(unsafe_code)]
    let n = unsafe {
        libc::write(
            fd.as_raw_fd(),
            frame.as_ptr().cast::<libc::c_void>(),
            frame.len(),
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Sleeps until `fd` is readable or `timeout` passed (`None`: no limit).
///
/// `ppoll` rather than smoltcp's `phy::wait`: that one uses `select`, whose `FD_SET`
/// indexes a fixed 1024-bit array and so panics for a descriptor above 1023, and it
/// keeps only whole milliseconds in its timeout's fraction. An interrupted wait
/// (`EINTR`, e.g. Ctrl-C) is a normal early wake-up, not an error.
///
/// A TAP descriptor polls as `POLLERR` only once its interface is gone (deleted,
/// or its namespace torn down); it never works again, and polling on would spin,
/// so that is an error (`ENODEV`). A link that is merely down polls normally.
pub(super) fn wait_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<()> {
    let mut pollfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let timespec = timeout.map(|timeout| {
        let micros = timeout.total_micros();
        libc::timespec {
            tv_sec: libc::time_t::try_from(micros / 1_000_000).unwrap_or(libc::time_t::MAX),
            // Below 1e9, so it fits a c_long on every target.
            tv_nsec: libc::c_long::try_from((micros % 1_000_000).saturating_mul(1_000))
                .unwrap_or(0),
        }
    });
    let timespec_ptr = timespec
        .as_ref()
        .map_or(core::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `pollfd` is one valid, exclusively borrowed entry (count 1); the
    // timeout pointer is either null (wait forever) or points to a live `timespec`;
    // a null signal mask leaves the thread's mask unchanged.
    #[allow(unsafe_code)]
    let result = unsafe { libc::ppoll(&mut pollfd, 1, timespec_ptr, core::ptr::null()) };
    if result < 0 {
        let error = io::Error::last_os_error();
        if error.kind() == io::ErrorKind::Interrupted {
            return Ok(());
        }
        return Err(error);
    }
    if pollfd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
        return Err(io::Error::from_raw_os_error(libc::ENODEV));
    }
    Ok(())
}

/// Eight bytes from the kernel's random pool, for `Config::random_seed`.
pub(super) fn random_u64() -> io::Result<u64> {
    let mut bytes = [0u8; 8];
    let mut filled = 0usize;
    // getrandom may return fewer bytes than asked (only for large requests in
    // practice) or be interrupted; loop a bounded number of times.
    for _ in 0..16 {
        let Some(rest) = bytes.get_mut(filled..) else {
            break;
        };
        if rest.is_empty() {
            break;
        }
        // SAFETY: the pointer and length describe `rest`, an exclusively borrowed
        // part of `bytes` that outlives the call; getrandom writes at most that many.
        #[allow(unsafe_code)]
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast::<libc::c_void>(), rest.len(), 0) };
        match usize::try_from(n) {
            Ok(n) => filled = filled.saturating_add(n),
            Err(_) => {
                let error = io::Error::last_os_error();
                if error.kind() != io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
        }
    }
    if filled < bytes.len() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "getrandom returned too few bytes",
        ));
    }
    Ok(u64::from_ne_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_that_the_kernel_would_misread_are_refused() {
        assert!(ifreq_named("").is_none());
        assert!(ifreq_named("tap\0x").is_none());
        assert!(ifreq_named("sixteen-bytes-xx").is_none());
        assert!(ifreq_named("fifteen-bytes-x").is_some());
    }

    #[test]
    fn random_seeds_differ() {
        // Two equal draws of 64 random bits would mean the seed is not random.
        assert_ne!(random_u64().unwrap(), random_u64().unwrap());
    }
}
