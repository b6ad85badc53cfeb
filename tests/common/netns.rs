//! A private network namespace per test, with `tap0` inside, for tests that run the
//! smoltcp stack against the Linux kernel's own TCP/IP stack.
//!
//! Nothing here touches the host's network: every device and address lives in a
//! namespace named `smolsock-test-<pid>-<n>` that the test created, and [`NetNs`]
//! deletes it on drop, also when the test panics. Namespaces left behind by a killed
//! test run (whose pid is gone) are swept the next time one is created.
//!
//! Threads: `setns(CLONE_NEWNET)` moves only the calling thread, so a test can run
//! the stack on one thread and kernel sockets (`std::net`) on another, both inside
//! the same namespace. A TAP device must be opened by a thread that is already
//! inside, because the kernel looks its name up in the opener's namespace.
//!
//! Tests that need this are `#[ignore = "needs CAP_NET_ADMIN: ..."]` and start with
//! `if !netns::has_cap_net_admin() { return; }`; CI runs them as root with
//! `cargo test -- --include-ignored`.

// Each test crate that includes this file uses a different part of it.
#![allow(dead_code)]

use std::fs::File;
use std::io;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Where `ip netns add` keeps its namespaces.
const NETNS_DIR: &str = "/var/run/netns";

/// The prefix of every namespace these tests make; nothing else is ever deleted.
const PREFIX: &str = "smolsock-test-";

/// The TAP interface inside each namespace.
pub const TAP: &str = "tap0";

/// What a test prints when it skips for lack of privileges.
pub const SKIP_MESSAGE: &str = "skipped: needs CAP_NET_ADMIN and CAP_SYS_ADMIN (run as root) to create a network namespace and a TAP device";

/// Whether this process may create namespaces and TAP devices; prints
/// [`SKIP_MESSAGE`] when not, so a skipped test says why.
///
/// With `SMOLSOCK_REQUIRE_TAP` set (CI sets it), a test that cannot run fails
/// instead of passing unseen.
pub fn has_cap_net_admin() -> bool {
    let ok = is_privileged();
    if !ok {
        assert!(
            std::env::var_os("SMOLSOCK_REQUIRE_TAP").is_none(),
            "SMOLSOCK_REQUIRE_TAP is set but this test cannot run: {SKIP_MESSAGE}"
        );
        eprintln!("{SKIP_MESSAGE}");
    }
    ok
}

/// [`has_cap_net_admin`] without the message: `CAP_NET_ADMIN` (12) and, for
/// `ip netns add` and `setns`, `CAP_SYS_ADMIN` (21) in the effective set, plus
/// `/dev/net/tun` and `ip` present.
pub fn is_privileged() -> bool {
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_SYS_ADMIN: u32 = 21;
    let effective = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(0);
    let has = |cap: u32| effective & (1u64 << cap) != 0;
    has(CAP_NET_ADMIN)
        && has(CAP_SYS_ADMIN)
        && PathBuf::from("/dev/net/tun").exists()
        && Command::new("ip").arg("-V").output().is_ok()
}

/// The path of `tap-setup.sh` at the crate root.
pub fn tap_setup_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tap-setup.sh")
}

/// Runs `tap-setup.sh` with `args`.
pub fn tap_setup(args: &[&str]) -> Output {
    Command::new(tap_setup_script())
        .args(args)
        .output()
        .expect("cannot run tap-setup.sh")
}

/// Runs a command and panics, showing its output, if it fails.
pub fn run_ok(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The names `ip netns list` shows.
pub fn list_namespaces() -> Vec<String> {
    let output = run_ok(Command::new("ip").args(["netns", "list"]));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// A fresh name `smolsock-test-<pid>-<n>`, unique within this process and across
/// the processes alive now.
pub fn unique_name() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{PREFIX}{}-{n}", std::process::id())
}

/// Deletes namespaces this harness made in runs that are gone (killed before their
/// drop guards ran): only names with our prefix whose pid no longer exists.
fn sweep_stale_namespaces() {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !PathBuf::from(format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", &name]).output();
        }
    }
}

/// Deletes the namespace `name` on drop, whether or not it still exists.
///
/// Used on its own by tests that let `tap-setup.sh` create the namespace, so it is
/// removed even if the script or the test fails half way.
pub struct NetNsGuard {
    name: String,
}

impl NetNsGuard {
    /// Guards a name from [`unique_name`] (the namespace need not exist yet).
    pub fn new(name: String) -> Self {
        assert!(name.starts_with(PREFIX), "only guard our own namespaces");
        Self { name }
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for NetNsGuard {
    fn drop(&mut self) {
        if PathBuf::from(NETNS_DIR).join(&self.name).exists() {
            match Command::new("ip")
                .args(["netns", "del", &self.name])
                .output()
            {
                Ok(output) if output.status.success() => {}
                Ok(output) => eprintln!(
                    "warning: ip netns del {} failed: {}",
                    self.name,
                    String::from_utf8_lossy(&output.stderr)
                ),
                Err(e) => eprintln!("warning: cannot run ip netns del {}: {e}", self.name),
            }
        }
    }
}

/// A network namespace with `tap0` in it, its Linux side at 192.168.69.100/24 and
/// fdaa::100/64 (no duplicate address detection, so usable at once) and `lo` up.
/// Deleted, with everything in it, on drop.
pub struct NetNs {
    guard: NetNsGuard,
}

impl NetNs {
    /// Creates the namespace and `tap0` with `tap-setup.sh up --netns`, so the
    /// script is exercised by every test that uses this. Panics (after cleaning up)
    /// if that fails.
    pub fn create() -> Self {
        sweep_stale_namespaces();
        let ns = Self {
            guard: NetNsGuard::new(unique_name()),
        };
        ns.setup_tap();
        ns
    }

    /// The namespace's name, for `ip -n NAME` or `ip netns exec NAME`.
    pub fn name(&self) -> &str {
        self.guard.name()
    }

    /// `ip netns exec NAME program`: a command that runs `program` inside.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", self.name()]).arg(program);
        command
    }

    /// Runs `tap-setup.sh up --netns NAME` (creating the namespace and `tap0`, or,
    /// run again, putting back whatever is missing: addresses, link state).
    pub fn setup_tap(&self) {
        run_ok(Command::new(tap_setup_script()).args(["up", "--netns", self.name()]));
    }

    /// Runs `ip -n NAME <args>` and panics with its output if it fails.
    pub fn ip(&self, args: &[&str]) -> Output {
        run_ok(Command::new("ip").arg("-n").arg(self.name()).args(args))
    }

    /// Sets `tap0` administratively up or down.
    pub fn set_link(&self, up: bool) {
        self.ip(&["link", "set", "dev", TAP, if up { "up" } else { "down" }]);
    }

    /// Waits (bounded) until the kernel has `tap0` running: a program has opened
    /// it (carrier) and the kernel has activated its queue, which it does up to a
    /// second after the carrier appears (linkwatch); frames sent before are dropped.
    pub fn wait_for_carrier(&self) {
        retry("tap0 to come up", 50, Duration::from_millis(50), || {
            let output = self.ip(&["link", "show", "dev", TAP]);
            let text = String::from_utf8_lossy(&output.stdout).into_owned();
            if text.contains("state UP") && !text.contains("qdisc noop") {
                Ok(())
            } else {
                Err(text)
            }
        });
    }

    /// Moves the calling thread into the namespace. Only this thread moves; threads
    /// it spawns afterwards start inside too.
    pub fn enter_current_thread(&self) -> io::Result<()> {
        let file = File::open(PathBuf::from(NETNS_DIR).join(self.name()))?;
        // SAFETY: `file` is an open descriptor of a network namespace and stays open
        // for the call; setns only changes the calling thread's namespace.
        let result = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        if result != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Spawns a thread that enters the namespace and then runs `f`.
    pub fn spawn<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let file = File::open(PathBuf::from(NETNS_DIR).join(self.name()))
            .unwrap_or_else(|e| panic!("cannot open namespace {}: {e}", self.name()));
        thread::Builder::new()
            .name(format!("in-{}", self.name()))
            .spawn(move || {
                // SAFETY: as in `enter_current_thread`; `file` lives until after the call.
                let result = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(result, 0, "setns failed: {}", io::Error::last_os_error());
                drop(file);
                f()
            })
            .expect("cannot spawn a thread")
    }
}

/// Calls `attempt` up to `attempts` times, `pause` apart, until it returns `Ok`;
/// panics with `what` and the last error if it never does. The bounded way to wait
/// for something on a real network.
pub fn retry<T, E: std::fmt::Debug>(
    what: &str,
    attempts: usize,
    pause: Duration,
    mut attempt: impl FnMut() -> Result<T, E>,
) -> T {
    let mut last = None;
    for i in 0..attempts {
        match attempt() {
            Ok(value) => return value,
            Err(e) => last = Some(e),
        }
        if i + 1 < attempts {
            thread::sleep(pause);
        }
    }
    panic!("{what}: still failing after {attempts} attempts, last error: {last:?}");
}

/// Makes `close` send a RST instead of a FIN (`SO_LINGER` on, 0 s): the peer
/// sees the connection killed, as when a client process dies mid-transfer.
pub fn reset_on_close(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the descriptor is open for the call, and `linger` is a valid
    // `struct linger` whose size is passed with it.
    let result = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            libc::socklen_t::try_from(std::mem::size_of::<libc::linger>()).unwrap(),
        )
    };
    assert_eq!(result, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
}
