//! Checks that need no network, run under QEMU with `--features selftest`.
//!
//! Each check prints one line; the firmware then leaves QEMU through semihosting
//! with success only if every check passed, so a script or a test can use QEMU's
//! exit status. More checks (for example two stacks over smolsock's in-process
//! link) go in [`CHECKS`].

use lan9118::{Lan9118, Mmio};

use crate::clock::Clock;

/// What a check may use.
pub struct Board<'a> {
    /// The initialised Ethernet controller.
    pub device: &'a mut Lan9118<Mmio>,
    /// The running millisecond clock.
    pub clock: &'a mut Clock,
    /// The MAC address the firmware configured.
    pub mac_address: [u8; 6],
}

type Check = fn(&mut Board<'_>) -> Result<(), &'static str>;

/// Every check, by name.
const CHECKS: &[(&str, Check)] = &[
    ("lan9118: ID_REV names a LAN9118", chip_id),
    ("lan9118: BYTE_TEST reads 0x87654321", byte_test),
    ("lan9118: MAC address reads back", mac_readback),
    ("lan9118: free-running counter advances", free_run_advances),
    ("clock: SysTick milliseconds advance", clock_advances),
];

/// Runs every check and says whether all passed.
pub fn run(board: &mut Board<'_>) -> bool {
    let mut failures = 0u32;
    for (name, check) in CHECKS {
        match check(board) {
            Ok(()) => log::info!("selftest ok   {name}"),
            Err(why) => {
                failures = failures.saturating_add(1);
                log::error!("selftest FAIL {name}: {why}");
            }
        }
    }
    log::info!(
        "selftest: {} passed, {} failed",
        CHECKS.len().saturating_sub(failures as usize),
        failures
    );
    failures == 0
}

fn chip_id(board: &mut Board<'_>) -> Result<(), &'static str> {
    let chip = board.device.chip_id();
    log::info!("ID_REV: chip {:#06x} revision {}", chip.id, chip.revision);
    if chip.id == 0x0118 {
        Ok(())
    } else {
        Err("not 0x0118")
    }
}

fn byte_test(board: &mut Board<'_>) -> Result<(), &'static str> {
    if board.device.byte_test() == lan9118::regs::BYTE_TEST_VALUE {
        Ok(())
    } else {
        Err("wrong value: bus width or byte order")
    }
}

fn mac_readback(board: &mut Board<'_>) -> Result<(), &'static str> {
    match board.device.read_mac_address() {
        Ok(mac) if mac == board.mac_address => Ok(()),
        Ok(_) => Err("ADDRL/ADDRH hold another address"),
        Err(_) => Err("MAC CSR access timed out"),
    }
}

fn free_run_advances(board: &mut Board<'_>) -> Result<(), &'static str> {
    let first = board.device.free_running_counter();
    let advanced = (0..100_000).any(|_| board.device.free_running_counter() != first);
    if advanced {
        Ok(())
    } else {
        Err("FREE_RUN is stuck")
    }
}

fn clock_advances(board: &mut Board<'_>) -> Result<(), &'static str> {
    let start = board.clock.now();
    // A bounded wait: sleep until SysTick wakes us, at most a few hundred times.
    for _ in 0..500 {
        cortex_m::asm::wfi();
        if (board.clock.now() - start).total_millis() >= 3 {
            return Ok(());
        }
    }
    Err("SysTick never advanced 3 ms")
}
