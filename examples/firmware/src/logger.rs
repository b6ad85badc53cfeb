//! `log` records printed to the host through semihosting.
//!
//! Semihosting stops the core for every write, which is slow on real hardware and
//! needs a debugger attached, but costs nothing to set up and is what QEMU's
//! `-semihosting-config enable=on,target=native` prints on its standard output.
//! The tests read that output to know when the firmware is up.

use cortex_m_semihosting::hprintln;
use log::{LevelFilter, Log, Metadata, Record};

struct SemihostingLogger;

impl Log for SemihostingLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            hprintln!("[{:<5}] {}", record.level(), record.args());
        }
    }

    fn flush(&self) {}
}

static LOGGER: SemihostingLogger = SemihostingLogger;

/// Sends `log` records at `level` and above to the host.
pub fn init(level: LevelFilter) {
    // Fails only if a logger is already set, and then that one keeps working.
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}
