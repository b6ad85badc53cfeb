//! `log` records over semihosting: QEMU prints them on its standard output.

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

/// Installs the logger at `level` (once; later calls do nothing).
pub fn init(level: LevelFilter) {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}
