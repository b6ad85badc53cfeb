//! The driver proper: reset and init, then frames in and out through the PIO FIFOs.
//!
//! ## Receiving
//! The chip keeps one status word per received frame in the RX status FIFO and the
//! frame's bytes (plus its 4-byte CRC) in the RX data FIFO. [`Lan9118::receive`]
//! pops a status word, checks its error bits and length, and either copies the frame
//! into the driver's RX buffer or discards its words, counting why. The data FIFO is
//! always read to the end of the frame, so one bad frame can never shift the next.
//! A status word that claims more data than the data FIFO holds is wrong: that
//! frame is dropped with the chip's fast-forward, which knows where the frame's
//! data really ends, so the frames behind it are still read whole.
//!
//! ## Transmitting
//! A frame goes out as command A (first and last segment, buffer size), command B
//! (tag, frame length) and the bytes packed little-endian into words, the last word
//! padded. The driver sends only when the TX data FIFO has room for the whole frame,
//! and drains the TX status FIFO as it goes to count transmit errors. It never
//! waits for room: the TX token that comes with a received frame is handed out
//! whatever the FIFO's state, and a reply made on it while the FIFO is full is
//! dropped and counted.
//!
//! Every wait on the chip is a bounded loop: on a dead bus the driver gives up with
//! an error or a counted drop, it never hangs and never panics.

use core::fmt;

#[cfg(feature = "smoltcp")]
use smoltcp::phy::{self, DeviceCapabilities, Medium};
#[cfg(feature = "smoltcp")]
use smoltcp::time::Instant;

use crate::bus::Bus;
use crate::regs::{self, fifo_inf, mac, mac_cr, mac_csr_cmd, mii_acc, phy as phy_reg};

/// The largest Ethernet frame the driver moves, without the CRC: a 1500-byte
/// payload and the 14-byte header. This is also smoltcp's MTU for the device.
pub const MAX_FRAME_LEN: usize = 1514;

/// The shortest frame worth handing up: an Ethernet header.
const MIN_FRAME_LEN: usize = 14;

/// The CRC the chip leaves at the end of every received frame.
const CRC_LEN: usize = 4;

/// How many register reads a wait may take before the driver gives up. On real
/// hardware a read takes well over 40 ns, so this is at least tens of milliseconds,
/// longer than a soft reset (under 1 ms) or an EEPROM load.
const WAIT_LIMIT: u32 = 1_000_000;

/// How many status words a single call handles before returning, so that a chip
/// reporting garbage cannot keep the caller in the driver.
const STATUS_LIMIT: u32 = 256;

/// What the driver is told to be at [`Lan9118::init`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Config {
    /// The station's MAC address, written into `ADDRL`/`ADDRH`.
    pub mac_address: [u8; 6],
    /// Accept every multicast frame. IPv6 needs its solicited-node and all-nodes
    /// groups; passing all multicast is the simple way (the hash filter is the
    /// precise one).
    pub pass_all_multicast: bool,
    /// Accept every frame, whatever its destination.
    pub promiscuous: bool,
    /// Run the MAC in full duplex. Must match what the PHY negotiated; QEMU's model
    /// does not care.
    pub full_duplex: bool,
}

impl Config {
    /// `mac_address`, all multicast passed (for IPv6), not promiscuous, full duplex.
    pub const fn new(mac_address: [u8; 6]) -> Self {
        Self {
            mac_address,
            pass_all_multicast: true,
            promiscuous: false,
            full_duplex: true,
        }
    }
}

/// Counters of what went through the driver and what it dropped, and why.
///
/// Plain integers that wrap; read them with [`Lan9118::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Stats {
    /// Frames handed to smoltcp.
    pub rx_frames: u32,
    /// Frames pushed into the TX FIFO.
    pub tx_frames: u32,
    /// Received frames dropped for an error in their status word (CRC, runt,
    /// too long on the wire, collision, MII error), shorter than a header, or
    /// whose status word claims more data than the RX data FIFO holds.
    pub rx_errors: u32,
    /// Received frames longer than [`MAX_FRAME_LEN`], dropped.
    pub rx_too_long: u32,
    /// Received frames dropped for other reasons: the address filter failed, or the
    /// chip dropped them itself for a full RX FIFO (its `RX_DROP` counter, added in
    /// by [`Lan9118::collect_chip_drops`]).
    pub rx_dropped: u32,
    /// Transmitted frames whose TX status reported an error.
    pub tx_errors: u32,
    /// Frames that could not be sent: longer than [`MAX_FRAME_LEN`], or a reply
    /// to a received frame made while the TX FIFO had no room for it.
    pub tx_dropped: u32,
}

/// The chip's identity, from `ID_REV`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ChipId {
    /// The chip number, `0x0118` for a LAN9118.
    pub id: u16,
    /// The revision.
    pub revision: u16,
}

impl ChipId {
    /// Splits a raw `ID_REV` value.
    pub const fn from_register(value: u32) -> Self {
        Self {
            id: (value >> 16) as u16,
            revision: (value & 0xFFFF) as u16,
        }
    }

    /// Whether this driver knows the chip: the LAN9115/9116/9117/9118 and their
    /// LAN921x "A" successors, which share the register map.
    pub const fn is_supported(&self) -> bool {
        matches!(
            self.id,
            0x0115 | 0x0116 | 0x0117 | 0x0118 | 0x115A | 0x116A | 0x117A | 0x118A
        )
    }
}

/// Why [`Lan9118::init`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum InitError {
    /// `BYTE_TEST` did not read `0x8765_4321`: nothing there, or the bus is wired
    /// with the wrong width or byte order.
    ByteTest {
        /// What it read.
        read: u32,
    },
    /// `ID_REV` names a chip this driver does not know.
    UnknownChip(ChipId),
    /// The soft reset bit did not clear.
    ResetTimeout,
    /// The chip never said it was ready after the reset.
    NotReady,
    /// The EEPROM load after the reset never finished.
    EepromTimeout,
    /// A MAC or PHY register access never finished.
    Csr(CsrError),
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ByteTest { read } => write!(
                f,
                "BYTE_TEST read {read:#010x}, expected {:#010x}: check the bus",
                regs::BYTE_TEST_VALUE
            ),
            Self::UnknownChip(chip) => write!(f, "unknown chip id {:#06x}", chip.id),
            Self::ResetTimeout => f.write_str("soft reset did not complete"),
            Self::NotReady => f.write_str("chip not ready after reset"),
            Self::EepromTimeout => f.write_str("EEPROM load did not complete"),
            Self::Csr(error) => write!(f, "{error}"),
        }
    }
}

impl core::error::Error for InitError {}

impl From<CsrError> for InitError {
    fn from(error: CsrError) -> Self {
        Self::Csr(error)
    }
}

/// Why an access to an indirect (MAC or PHY) register failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum CsrError {
    /// `MAC_CSR_CMD` stayed busy.
    MacBusy,
    /// `MII_ACC` stayed busy.
    PhyBusy,
}

impl fmt::Display for CsrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MacBusy => f.write_str("MAC CSR access did not complete"),
            Self::PhyBusy => f.write_str("PHY (MII) access did not complete"),
        }
    }
}

impl core::error::Error for CsrError {}

/// A LAN9118 driven through a [`Bus`]: a smoltcp `phy::Device` (feature `smoltcp`),
/// and behind `embassy::Device` an embassy-net driver
/// (feature `embassy`).
///
/// Holds one RX and one TX frame buffer (about 3 KiB in all), so it is meant to
/// live in a `static`: [`Lan9118::new`] is `const` and touches no hardware; call
/// [`Lan9118::init`] before use. Until `init` succeeds, the device neither
/// receives nor transmits.
#[derive(Debug)]
pub struct Lan9118<B: Bus> {
    bus: B,
    config: Config,
    ready: bool,
    next_tag: u16,
    stats: Stats,
    rx_buffer: [u8; MAX_FRAME_LEN],
    tx_buffer: [u8; MAX_FRAME_LEN],
}

impl<B: Bus> Lan9118<B> {
    /// A driver for the chip behind `bus`, not yet initialised.
    pub const fn new(bus: B, config: Config) -> Self {
        Self {
            bus,
            config,
            ready: false,
            next_tag: 0,
            stats: Stats {
                rx_frames: 0,
                tx_frames: 0,
                rx_errors: 0,
                rx_too_long: 0,
                rx_dropped: 0,
                tx_errors: 0,
                tx_dropped: 0,
            },
            rx_buffer: [0; MAX_FRAME_LEN],
            tx_buffer: [0; MAX_FRAME_LEN],
        }
    }

    /// Checks the chip, soft-resets it and brings it up: MAC address, address
    /// filter, PHY auto-negotiation, transmitter and receiver on. Interrupts stay
    /// off; see [`Lan9118::enable_rx_interrupt`].
    ///
    /// May be called again to reset the chip; frames in its FIFOs are lost.
    pub fn init(&mut self) -> Result<(), InitError> {
        self.ready = false;
        let read = self.bus.read(regs::BYTE_TEST);
        if read != regs::BYTE_TEST_VALUE {
            return Err(InitError::ByteTest { read });
        }
        let chip = self.chip_id();
        if !chip.is_supported() {
            return Err(InitError::UnknownChip(chip));
        }

        self.bus
            .write(regs::HW_CFG, regs::hw_cfg::MBO | regs::hw_cfg::SRST);
        if !self.wait_until(regs::HW_CFG, regs::hw_cfg::SRST, 0) {
            return Err(InitError::ResetTimeout);
        }
        if !self.wait_until(regs::PMT_CTRL, regs::pmt_ctrl::READY, regs::pmt_ctrl::READY) {
            return Err(InitError::NotReady);
        }
        if !self.wait_until(regs::E2P_CMD, regs::e2p_cmd::BUSY, 0) {
            return Err(InitError::EepromTimeout);
        }

        // Polled operation: no interrupt sources until the user asks for them.
        self.bus.write(regs::INT_EN, 0);
        self.bus.write(regs::INT_STS, regs::int::ALL);
        // The datasheet's recommended flow-control thresholds.
        self.bus.write(regs::AFC_CFG, 0x006E_3740);

        self.phy_write(
            phy_reg::BCR,
            phy_reg::BCR_AN_ENABLE | phy_reg::BCR_AN_RESTART,
        )?;

        let [a0, a1, a2, a3, a4, a5] = self.config.mac_address;
        self.mac_write(mac::ADDRL, u32::from_le_bytes([a0, a1, a2, a3]))?;
        self.mac_write(mac::ADDRH, u32::from_le_bytes([a4, a5, 0, 0]))?;

        let mut control = mac_cr::TXEN | mac_cr::RXEN;
        if self.config.full_duplex {
            control |= mac_cr::FDPX;
        }
        if self.config.pass_all_multicast {
            control |= mac_cr::MCPAS;
        }
        if self.config.promiscuous {
            control |= mac_cr::PRMS;
        }
        self.mac_write(mac::MAC_CR, control)?;

        // Frames start at offset 0 and end on a 4-byte boundary in the RX FIFO.
        self.bus.write(regs::RX_CFG, 0);
        self.bus.write(regs::TX_CFG, regs::tx_cfg::TX_ON);
        self.ready = true;
        Ok(())
    }

    /// Whether [`Lan9118::init`] has succeeded.
    pub const fn is_ready(&self) -> bool {
        self.ready
    }

    /// The configuration given at [`Lan9118::new`].
    pub const fn config(&self) -> &Config {
        &self.config
    }

    /// The counters so far.
    pub const fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Reads `ID_REV`.
    pub fn chip_id(&mut self) -> ChipId {
        ChipId::from_register(self.bus.read(regs::ID_REV))
    }

    /// Reads `BYTE_TEST`, which is `0x8765_4321` on a healthy bus.
    pub fn byte_test(&mut self) -> u32 {
        self.bus.read(regs::BYTE_TEST)
    }

    /// Reads the 25 MHz free-running counter (it counts from the chip's last reset).
    ///
    /// Its low bits depend on exactly when the program reads it, which makes it a
    /// cheap source of per-boot variation (not of secrets) for a random seed.
    pub fn free_running_counter(&mut self) -> u32 {
        self.bus.read(regs::FREE_RUN)
    }

    /// Reads back the MAC address the chip filters on (`ADDRL`/`ADDRH`).
    pub fn read_mac_address(&mut self) -> Result<[u8; 6], CsrError> {
        let [a0, a1, a2, a3] = self.mac_read(mac::ADDRL)?.to_le_bytes();
        let [a4, a5, _, _] = self.mac_read(mac::ADDRH)?.to_le_bytes();
        Ok([a0, a1, a2, a3, a4, a5])
    }

    /// Asks the PHY whether the link is up.
    pub fn link_up(&mut self) -> Result<bool, CsrError> {
        // The link bit latches low: the first read reports a past loss, the
        // second the present state.
        self.phy_read(phy_reg::BSR)?;
        Ok(self.phy_read(phy_reg::BSR)? & phy_reg::BSR_LINK_UP != 0)
    }

    /// Adds the chip's own count of frames it dropped for a full RX FIFO (`RX_DROP`,
    /// which clears on read) to [`Stats::rx_dropped`].
    ///
    /// One register read: call it wherever the counters are read or published
    /// (the embassy driver does, at every refresh of its `State`).
    pub fn collect_chip_drops(&mut self) {
        let dropped = self.bus.read(regs::RX_DROP);
        self.stats.rx_dropped = self.stats.rx_dropped.wrapping_add(dropped);
    }

    /// Drives the IRQ pin (active high, push-pull) whenever a received frame waits.
    ///
    /// The event latches in `INT_STS`; clear it with
    /// [`Lan9118::acknowledge_interrupts`] before polling, so a frame that arrives
    /// during the poll raises the pin again.
    pub fn enable_rx_interrupt(&mut self) {
        use regs::irq_cfg::{IRQ_EN, IRQ_POL, IRQ_TYPE};
        self.bus.write(regs::INT_STS, regs::int::ALL);
        self.bus.write(regs::INT_EN, regs::int::RSFL);
        self.bus.write(regs::IRQ_CFG, IRQ_EN | IRQ_POL | IRQ_TYPE);
    }

    /// Clears every pending interrupt status bit and returns the bits that were set.
    pub fn acknowledge_interrupts(&mut self) -> u32 {
        let pending = self.bus.read(regs::INT_STS);
        self.bus.write(regs::INT_STS, pending);
        pending
    }

    /// The bus, for tests that look at the fake chip behind it.
    #[cfg(test)]
    pub(crate) fn bus_mut(&mut self) -> &mut B {
        &mut self.bus
    }

    /// Gives the bus back, for example to reuse it after a failed init.
    pub fn release(self) -> B {
        self.bus
    }

    fn wait_until(&mut self, offset: u32, mask: u32, value: u32) -> bool {
        (0..WAIT_LIMIT).any(|_| self.bus.read(offset) & mask == value)
    }

    fn mac_wait(&mut self) -> Result<(), CsrError> {
        if self.wait_until(regs::MAC_CSR_CMD, mac_csr_cmd::BUSY, 0) {
            Ok(())
        } else {
            Err(CsrError::MacBusy)
        }
    }

    fn mac_read(&mut self, index: u32) -> Result<u32, CsrError> {
        self.mac_wait()?;
        let command = mac_csr_cmd::BUSY | mac_csr_cmd::READ | (index & mac_csr_cmd::INDEX_MASK);
        self.bus.write(regs::MAC_CSR_CMD, command);
        self.mac_wait()?;
        Ok(self.bus.read(regs::MAC_CSR_DATA))
    }

    fn mac_write(&mut self, index: u32, value: u32) -> Result<(), CsrError> {
        self.mac_wait()?;
        self.bus.write(regs::MAC_CSR_DATA, value);
        self.bus.write(
            regs::MAC_CSR_CMD,
            mac_csr_cmd::BUSY | (index & mac_csr_cmd::INDEX_MASK),
        );
        self.mac_wait()
    }

    fn phy_wait(&mut self) -> Result<(), CsrError> {
        for _ in 0..WAIT_LIMIT {
            if self.mac_read(mac::MII_ACC)? & mii_acc::MIIBZY == 0 {
                return Ok(());
            }
        }
        Err(CsrError::PhyBusy)
    }

    fn phy_command(register: u32) -> u32 {
        (mii_acc::INTERNAL_PHY << mii_acc::PHY_ADDR_SHIFT)
            | ((register & 0x1F) << mii_acc::INDEX_SHIFT)
            | mii_acc::MIIBZY
    }

    fn phy_read(&mut self, register: u32) -> Result<u32, CsrError> {
        self.phy_wait()?;
        self.mac_write(mac::MII_ACC, Self::phy_command(register))?;
        self.phy_wait()?;
        Ok(self.mac_read(mac::MII_DATA)? & 0xFFFF)
    }

    fn phy_write(&mut self, register: u32, value: u32) -> Result<(), CsrError> {
        self.phy_wait()?;
        self.mac_write(mac::MII_DATA, value & 0xFFFF)?;
        self.mac_write(mac::MII_ACC, Self::phy_command(register) | mii_acc::MIIWNR)?;
        self.phy_wait()
    }

    /// Pops TX status words and counts the errors they report.
    fn drain_tx_status(&mut self) {
        let info = self.bus.read(regs::TX_FIFO_INF);
        let used = (info >> fifo_inf::STATUS_USED_SHIFT) & fifo_inf::STATUS_USED_MASK;
        for _ in 0..used {
            let status = self.bus.read(regs::TX_STATUS_FIFO);
            if status & regs::tx_status::ES != 0 {
                self.stats.tx_errors = self.stats.tx_errors.wrapping_add(1);
            }
        }
    }

    /// Pops RX data words and throws them away.
    // Out of line: called from every drop path, where each inlined copy costs flash.
    #[inline(never)]
    fn discard_words(&mut self, words: usize) {
        for _ in 0..words {
            self.bus.read(regs::RX_DATA_FIFO);
        }
    }

    /// The words in the RX data FIFO, from `RX_FIFO_INF` (bytes used).
    fn rx_data_words(info: u32) -> usize {
        (info & fifo_inf::DATA_MASK).div_ceil(4) as usize
    }

    /// Skips the rest of the frame whose status word was popped last, when that
    /// word's length cannot be trusted: the chip itself knows where the frame's
    /// data ends. Its fast-forward is only for frames of four words or more; with
    /// fewer words than that in the whole FIFO, they are read and thrown away.
    /// False if the fast-forward never finished.
    #[cold]
    fn skip_frame(&mut self, available: usize) -> bool {
        if available < 4 {
            self.discard_words(available);
            return true;
        }
        self.bus.write(regs::RX_DP_CTRL, regs::rx_dp_ctrl::RX_FFWD);
        // The data FIFO must not be read until the fast-forward is done.
        self.wait_until(regs::RX_DP_CTRL, regs::rx_dp_ctrl::RX_FFWD, 0)
    }

    /// Takes the next good frame out of the chip into the RX buffer and returns its
    /// length, dropping (and counting) bad ones on the way.
    fn read_frame(&mut self) -> Option<usize> {
        let info = self.bus.read(regs::RX_FIFO_INF);
        let waiting = (info >> fifo_inf::STATUS_USED_SHIFT) & fifo_inf::STATUS_USED_MASK;
        let mut available = Self::rx_data_words(info);
        for _ in 0..waiting.min(STATUS_LIMIT) {
            let status = self.bus.read(regs::RX_STATUS_FIFO);
            let wire_len =
                ((status >> regs::rx_status::LENGTH_SHIFT) & regs::rx_status::LENGTH_MASK) as usize;
            // With RX_CFG at 0 a frame takes whole words from offset 0, CRC included.
            let words = wire_len.div_ceil(4);
            // A frame's data is all in the FIFO before its status word is. A
            // status that claims more is wrong, and reading that many words would
            // run into the next frame.
            let Some(left) = available.checked_sub(words) else {
                self.stats.rx_errors = self.stats.rx_errors.wrapping_add(1);
                if !self.skip_frame(available) {
                    return None;
                }
                available = Self::rx_data_words(self.bus.read(regs::RX_FIFO_INF));
                continue;
            };
            available = left;
            let bad = regs::rx_status::ES | regs::rx_status::MII_ERROR;
            let Some(frame_len) = wire_len.checked_sub(CRC_LEN) else {
                self.stats.rx_errors = self.stats.rx_errors.wrapping_add(1);
                self.discard_words(words);
                continue;
            };
            if status & bad != 0 || frame_len < MIN_FRAME_LEN {
                self.stats.rx_errors = self.stats.rx_errors.wrapping_add(1);
                self.discard_words(words);
                continue;
            }
            if status & regs::rx_status::FILTERING_FAIL != 0 {
                self.stats.rx_dropped = self.stats.rx_dropped.wrapping_add(1);
                self.discard_words(words);
                continue;
            }
            let Some(frame) = self.rx_buffer.get_mut(..frame_len) else {
                self.stats.rx_too_long = self.stats.rx_too_long.wrapping_add(1);
                self.discard_words(words);
                continue;
            };
            let mut taken = 0usize;
            for chunk in frame.chunks_mut(4) {
                let word = self.bus.read(regs::RX_DATA_FIFO).to_le_bytes();
                for (byte, value) in chunk.iter_mut().zip(word) {
                    *byte = value;
                }
                taken = taken.wrapping_add(1);
            }
            // The words that hold only CRC bytes.
            self.discard_words(words.saturating_sub(taken));
            self.stats.rx_frames = self.stats.rx_frames.wrapping_add(1);
            return Some(frame_len);
        }
        None
    }

    fn tx_free(&mut self) -> usize {
        (self.bus.read(regs::TX_FIFO_INF) & fifo_inf::DATA_MASK) as usize
    }

    /// The next good frame, read into the RX buffer, and the right to send one
    /// reply: what both stacks' `receive` hand out. `None` before `init` or when
    /// no good frame waits.
    pub(crate) fn next_frame(&mut self) -> Option<(&mut [u8], Transmitter<'_, B>)> {
        if !self.ready {
            return None;
        }
        self.drain_tx_status();
        let len = self.read_frame()?;
        let frame = self.rx_buffer.get_mut(..len)?;
        Some((
            frame,
            Transmitter {
                bus: &mut self.bus,
                buffer: &mut self.tx_buffer,
                stats: &mut self.stats,
                next_tag: &mut self.next_tag,
            },
        ))
    }

    /// The right to send one frame, when the TX FIFO has room for any frame (so
    /// the stack keeps its packets queued instead of losing one to a full FIFO).
    /// `None` before `init` or while the FIFO is that full.
    pub(crate) fn transmitter(&mut self) -> Option<Transmitter<'_, B>> {
        if !self.ready {
            return None;
        }
        self.drain_tx_status();
        if self.tx_free() < tx_space(MAX_FRAME_LEN) {
            return None;
        }
        Some(Transmitter {
            bus: &mut self.bus,
            buffer: &mut self.tx_buffer,
            stats: &mut self.stats,
            next_tag: &mut self.next_tag,
        })
    }
}

/// The TX FIFO space one frame needs: two command words and the padded data.
fn tx_space(len: usize) -> usize {
    len.div_ceil(4).saturating_mul(4).saturating_add(8)
}

/// The right to send one frame, whichever stack asked: the TX buffer to build it
/// in, and the bus to push it through.
pub(crate) struct Transmitter<'a, B: Bus> {
    bus: &'a mut B,
    buffer: &'a mut [u8; MAX_FRAME_LEN],
    stats: &'a mut Stats,
    next_tag: &'a mut u16,
}

impl<B: Bus> fmt::Debug for Transmitter<'_, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transmitter")
            .field("next_tag", &self.next_tag)
            .finish_non_exhaustive()
    }
}

impl<B: Bus> Transmitter<'_, B> {
    /// Lets `f` write a frame of `len` bytes into the TX buffer, then pushes it
    /// into the TX FIFO, or drops and counts it: longer than [`MAX_FRAME_LEN`], or
    /// no room for it in the FIFO.
    ///
    /// The FIFO's room is read once, never waited for. A token from
    /// [`Lan9118::transmitter`] was handed out with room for any frame, so it
    /// always finds room; the token that comes with a received frame was not
    /// checked, and a reply made on it while the FIFO is full (an ARP reply, an
    /// ACK) is dropped, as smoltcp and embassy-net allow a token to do, rather
    /// than hold up the receive path; the peer sends again.
    pub(crate) fn send<R>(self, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
        let Some(frame) = self.buffer.get_mut(..len) else {
            // A stack never asks for more than the MTU we advertise; if one does,
            // it gets the whole buffer to write into and the frame is dropped.
            self.stats.tx_dropped = self.stats.tx_dropped.wrapping_add(1);
            return f(self.buffer.as_mut_slice());
        };
        let result = f(frame);
        if len == 0 {
            return result;
        }
        // Looked at once, not waited for: see `send`'s docs.
        let free = (self.bus.read(regs::TX_FIFO_INF) & fifo_inf::DATA_MASK) as usize;
        if free < tx_space(len) {
            self.stats.tx_dropped = self.stats.tx_dropped.wrapping_add(1);
            return result;
        }

        // `len` is at most MAX_FRAME_LEN, which fits the 11-bit fields.
        let len_field = (len as u32) & regs::tx_cmd_a::BUFFER_SIZE_MASK;
        let tag = u32::from(*self.next_tag);
        *self.next_tag = self.next_tag.wrapping_add(1);
        self.bus.write(
            regs::TX_DATA_FIFO,
            regs::tx_cmd_a::FIRST_SEGMENT | regs::tx_cmd_a::LAST_SEGMENT | len_field,
        );
        self.bus.write(
            regs::TX_DATA_FIFO,
            (tag << regs::tx_cmd_b::TAG_SHIFT) | len_field,
        );
        for chunk in frame.chunks(4) {
            let mut word = [0u8; 4];
            for (slot, byte) in word.iter_mut().zip(chunk) {
                *slot = *byte;
            }
            self.bus.write(regs::TX_DATA_FIFO, u32::from_le_bytes(word));
        }
        self.stats.tx_frames = self.stats.tx_frames.wrapping_add(1);
        result
    }
}

/// A received frame, borrowed from the driver's RX buffer.
#[cfg(feature = "smoltcp")]
#[derive(Debug)]
pub struct RxToken<'a> {
    frame: &'a [u8],
}

#[cfg(feature = "smoltcp")]
impl phy::RxToken for RxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(self.frame)
    }
}

/// The right to send one frame.
#[cfg(feature = "smoltcp")]
#[derive(Debug)]
pub struct TxToken<'a, B: Bus> {
    transmitter: Transmitter<'a, B>,
}

#[cfg(feature = "smoltcp")]
impl<B: Bus> phy::TxToken for TxToken<'_, B> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        self.transmitter.send(len, f)
    }
}

#[cfg(feature = "smoltcp")]
impl<B: Bus> phy::Device for Lan9118<B> {
    type RxToken<'a>
        = RxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a, B>
    where
        Self: 'a;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let (frame, transmitter) = self.next_frame()?;
        Some((RxToken { frame }, TxToken { transmitter }))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        self.transmitter()
            .map(|transmitter| TxToken { transmitter })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut capabilities = DeviceCapabilities::default();
        capabilities.medium = Medium::Ethernet;
        capabilities.max_transmission_unit = MAX_FRAME_LEN;
        capabilities
    }
}

// The driver's tests run it as smoltcp's device; the embassy-net side has its
// own in `embassy.rs`.
#[cfg(all(test, feature = "smoltcp"))]
mod tests {
    use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet};
    use smoltcp::phy::{Device, RxToken as _, TxToken as _};
    use smoltcp::wire::{
        ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
        EthernetRepr, HardwareAddress, Icmpv4Packet, Icmpv4Repr, IpAddress, IpCidr, IpProtocol,
        Ipv4Address, Ipv4Packet, Ipv4Repr,
    };

    use super::*;
    use crate::fake_chip::FakeChip;

    const MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
    const NOW: Instant = Instant::ZERO;

    fn ready_driver() -> Lan9118<FakeChip> {
        let mut driver = Lan9118::new(FakeChip::new(), Config::new(MAC));
        driver.init().unwrap();
        driver
    }

    fn chip(driver: &mut Lan9118<FakeChip>) -> &mut FakeChip {
        &mut driver.bus
    }

    fn sample_frame(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + 3) as u8).collect()
    }

    fn receive_bytes(driver: &mut Lan9118<FakeChip>) -> Option<Vec<u8>> {
        let (rx, _tx) = driver.receive(NOW)?;
        Some(rx.consume(|frame| frame.to_vec()))
    }

    #[test]
    fn init_soft_resets_then_programs_mac_address_filter_and_enables_tx_rx() {
        let mut driver = ready_driver();
        let chip = chip(&mut driver);
        assert_eq!(chip.resets, 1);
        assert_eq!(chip.mac_address(), MAC);
        let control = chip.mac_regs[mac::MAC_CR as usize];
        assert_eq!(
            control & (mac_cr::TXEN | mac_cr::RXEN),
            mac_cr::TXEN | mac_cr::RXEN
        );
        assert_ne!(control & mac_cr::MCPAS, 0, "IPv6 needs multicast");
        assert_eq!(
            control & mac_cr::PRMS,
            0,
            "the reset default promiscuity is cleared"
        );
        assert_eq!(chip.tx_cfg & regs::tx_cfg::TX_ON, regs::tx_cfg::TX_ON);
        assert_eq!(chip.int_en, 0);
        assert_eq!(
            chip.phy_regs[phy_reg::BCR as usize] as u32,
            phy_reg::BCR_AN_ENABLE | phy_reg::BCR_AN_RESTART
        );
        assert!(driver.is_ready());
    }

    #[test]
    fn config_flags_reach_mac_cr() {
        let mut config = Config::new(MAC);
        config.promiscuous = true;
        config.pass_all_multicast = false;
        config.full_duplex = false;
        let mut driver = Lan9118::new(FakeChip::new(), config);
        driver.init().unwrap();
        let control = chip(&mut driver).mac_regs[mac::MAC_CR as usize];
        assert_ne!(control & mac_cr::PRMS, 0);
        assert_eq!(control & (mac_cr::MCPAS | mac_cr::FDPX), 0);
    }

    #[test]
    fn init_rejects_a_bus_that_fails_the_byte_test() {
        let mut fake = FakeChip::new();
        fake.byte_test = 0x4321_8765;
        let mut driver = Lan9118::new(fake, Config::new(MAC));
        assert_eq!(
            driver.init(),
            Err(InitError::ByteTest { read: 0x4321_8765 })
        );
        assert!(!driver.is_ready());
    }

    #[test]
    fn init_rejects_an_unknown_chip() {
        let mut fake = FakeChip::new();
        fake.id_rev = 0x9999_0001;
        let mut driver = Lan9118::new(fake, Config::new(MAC));
        let Err(InitError::UnknownChip(chip)) = driver.init() else {
            panic!("an unknown chip was accepted");
        };
        assert_eq!(
            chip,
            ChipId {
                id: 0x9999,
                revision: 1
            }
        );
    }

    #[test]
    fn init_gives_up_when_the_soft_reset_never_ends() {
        let mut fake = FakeChip::new();
        fake.reset_reads = None;
        let mut driver = Lan9118::new(fake, Config::new(MAC));
        assert_eq!(driver.init(), Err(InitError::ResetTimeout));
    }

    #[test]
    fn init_gives_up_when_the_mac_csr_stays_busy() {
        let mut fake = FakeChip::new();
        fake.mac_stuck = true;
        let mut driver = Lan9118::new(fake, Config::new(MAC));
        assert_eq!(driver.init(), Err(InitError::Csr(CsrError::MacBusy)));
    }

    #[test]
    fn device_neither_receives_nor_transmits_before_init() {
        let mut driver = Lan9118::new(FakeChip::new(), Config::new(MAC));
        chip(&mut driver).queue_frame(&sample_frame(60));
        assert!(driver.receive(NOW).is_none());
        assert!(driver.transmit(NOW).is_none());
    }

    #[test]
    fn self_check_registers_read_back() {
        let mut driver = ready_driver();
        assert_eq!(
            driver.chip_id(),
            ChipId {
                id: 0x0118,
                revision: 1
            }
        );
        assert!(driver.chip_id().is_supported());
        assert_eq!(driver.byte_test(), regs::BYTE_TEST_VALUE);
        assert_eq!(driver.read_mac_address(), Ok(MAC));
        assert_eq!(driver.free_running_counter(), 0x1234_5678);
    }

    #[test]
    fn link_up_reads_the_phy_status_twice_because_the_bit_latches() {
        let mut driver = ready_driver();
        chip(&mut driver).phy_regs[phy_reg::BSR as usize] = phy_reg::BSR_LINK_UP as u16;
        chip(&mut driver).phy_reads.clear();
        assert_eq!(driver.link_up(), Ok(true));
        assert_eq!(chip(&mut driver).phy_reads, [phy_reg::BSR, phy_reg::BSR]);
        chip(&mut driver).phy_regs[phy_reg::BSR as usize] = 0;
        assert_eq!(driver.link_up(), Ok(false));
    }

    #[test]
    fn transmit_pushes_command_a_command_b_and_little_endian_data() {
        let mut driver = ready_driver();
        let frame = sample_frame(61);
        let tx = driver.transmit(NOW).unwrap();
        tx.consume(frame.len(), |buffer| buffer.copy_from_slice(&frame));

        let sent = &chip(&mut driver).sent;
        assert_eq!(sent.len(), 1);
        let expected_a = regs::tx_cmd_a::FIRST_SEGMENT | regs::tx_cmd_a::LAST_SEGMENT | 61;
        assert_eq!(sent[0].command_a, expected_a);
        assert_eq!(sent[0].command_b, 61, "tag 0, length 61");
        assert_eq!(sent[0].bytes, frame);
        assert_eq!(driver.stats().tx_frames, 1);
    }

    #[test]
    fn transmit_pads_the_last_word_with_zeros() {
        let mut driver = ready_driver();
        let tx = driver.transmit(NOW).unwrap();
        tx.consume(5, |buffer| buffer.copy_from_slice(&[1, 2, 3, 4, 5]));
        let words = &chip(&mut driver).sent[0].data_words;
        assert_eq!(words, &[0x0403_0201, 0x0000_0005]);
    }

    #[test]
    fn each_frame_gets_the_next_tag_in_command_b() {
        let mut driver = ready_driver();
        for _ in 0..3 {
            let tx = driver.transmit(NOW).unwrap();
            tx.consume(60, |buffer| buffer.fill(0xAA));
        }
        let tags: Vec<u32> = chip(&mut driver)
            .sent
            .iter()
            .map(|frame| frame.command_b >> 16)
            .collect();
        assert_eq!(tags, [0, 1, 2]);
    }

    #[test]
    fn transmit_holds_back_when_the_fifo_has_no_room_for_a_full_frame() {
        let mut driver = ready_driver();
        chip(&mut driver).tx_free = 1000;
        assert!(driver.transmit(NOW).is_none());
        chip(&mut driver).tx_free = 1524;
        assert!(driver.transmit(NOW).is_some());
    }

    #[test]
    fn a_reply_that_never_finds_fifo_room_is_dropped_and_counted() {
        let mut driver = ready_driver();
        chip(&mut driver).queue_frame(&sample_frame(60));
        chip(&mut driver).tx_free = 8;
        let (rx, tx) = driver.receive(NOW).unwrap();
        rx.consume(|_| ());
        tx.consume(60, |buffer| buffer.fill(1));
        assert!(chip(&mut driver).sent.is_empty());
        assert_eq!(driver.stats().tx_dropped, 1);
    }

    /// The fake chip behind a bus that counts register reads.
    struct Counting {
        chip: FakeChip,
        reads: u32,
    }

    impl Bus for Counting {
        fn read(&mut self, offset: u32) -> u32 {
            self.reads += 1;
            self.chip.read(offset)
        }

        fn write(&mut self, offset: u32, value: u32) {
            self.chip.write(offset, value);
        }
    }

    #[test]
    fn a_reply_with_a_full_tx_fifo_does_not_spin() {
        let mut driver = Lan9118::new(
            Counting {
                chip: FakeChip::new(),
                reads: 0,
            },
            Config::new(MAC),
        );
        driver.init().unwrap();
        driver.bus.chip.queue_frame(&sample_frame(60));
        driver.bus.chip.tx_free = 8;
        driver.bus.reads = 0;
        let (rx, tx) = driver.receive(NOW).unwrap();
        rx.consume(|_| ());
        tx.consume(60, |b| b.fill(1));
        assert!(
            driver.bus.reads < 1_000,
            "one received frame cost {} register reads",
            driver.bus.reads
        );
        assert!(driver.bus.chip.sent.is_empty());
        assert_eq!(driver.stats().tx_dropped, 1);
        assert_eq!(driver.stats().rx_frames, 1);
    }

    #[test]
    fn a_frame_longer_than_the_buffer_is_dropped_without_panic() {
        let mut driver = ready_driver();
        let tx = driver.transmit(NOW).unwrap();
        let seen = tx.consume(MAX_FRAME_LEN + 1, |buffer| buffer.len());
        assert_eq!(seen, MAX_FRAME_LEN);
        assert!(chip(&mut driver).sent.is_empty());
        assert_eq!(driver.stats().tx_dropped, 1);
    }

    #[test]
    fn tx_status_errors_are_counted() {
        let mut driver = ready_driver();
        chip(&mut driver).tx_status_error = regs::tx_status::ES;
        let tx = driver.transmit(NOW).unwrap();
        tx.consume(60, |buffer| buffer.fill(0));
        assert_eq!(chip(&mut driver).tx_status.len(), 1);
        let _ = driver.transmit(NOW);
        assert_eq!(driver.stats().tx_errors, 1);
        assert!(chip(&mut driver).tx_status.is_empty());
    }

    #[test]
    fn receive_yields_the_exact_bytes_without_the_crc_for_every_tail_length() {
        let mut driver = ready_driver();
        for len in [14, 59, 60, 61, 62, 63, 64, 1513, MAX_FRAME_LEN] {
            let frame = sample_frame(len);
            chip(&mut driver).queue_frame(&frame);
            assert_eq!(receive_bytes(&mut driver), Some(frame), "length {len}");
            assert!(
                chip(&mut driver).rx_data.is_empty(),
                "CRC words left at {len}"
            );
        }
        assert_eq!(chip(&mut driver).rx_underruns, 0);
        assert_eq!(driver.stats().rx_frames, 9);
    }

    #[test]
    fn receive_returns_none_when_nothing_waits() {
        let mut driver = ready_driver();
        assert!(driver.receive(NOW).is_none());
        assert_eq!(chip(&mut driver).rx_underruns, 0);
    }

    #[test]
    fn a_frame_with_an_error_status_is_dropped_counted_and_skipped_whole() {
        let mut driver = ready_driver();
        let bad = sample_frame(100);
        let good = sample_frame(70);
        for error in [
            regs::rx_status::ES | regs::rx_status::CRC_ERROR,
            regs::rx_status::MII_ERROR,
        ] {
            chip(&mut driver).queue_raw((104 << 16) | error, &bad);
        }
        chip(&mut driver).queue_frame(&good);
        assert_eq!(receive_bytes(&mut driver), Some(good));
        assert_eq!(driver.stats().rx_errors, 2);
        assert_eq!(driver.stats().rx_frames, 1);
        assert!(chip(&mut driver).rx_data.is_empty());
        assert_eq!(chip(&mut driver).rx_underruns, 0);
    }

    #[test]
    fn a_frame_that_failed_the_address_filter_is_dropped() {
        let mut driver = ready_driver();
        chip(&mut driver).queue_raw((64 << 16) | regs::rx_status::FILTERING_FAIL, &[0; 60]);
        assert_eq!(receive_bytes(&mut driver), None);
        assert_eq!(driver.stats().rx_dropped, 1);
        assert!(chip(&mut driver).rx_data.is_empty());
    }

    #[test]
    fn a_too_long_length_is_dropped_and_counted_without_panic() {
        let mut driver = ready_driver();
        let max = regs::rx_status::LENGTH_MASK;
        chip(&mut driver).queue_raw(max << 16, &sample_frame(max as usize - 4));
        chip(&mut driver).queue_raw((MAX_FRAME_LEN as u32 + 5) << 16, &sample_frame(1515));
        let good = sample_frame(60);
        chip(&mut driver).queue_frame(&good);
        assert_eq!(receive_bytes(&mut driver), Some(good));
        assert_eq!(driver.stats().rx_too_long, 2);
        assert!(chip(&mut driver).rx_data.is_empty());
    }

    #[test]
    fn runts_shorter_than_a_header_are_errors() {
        let mut driver = ready_driver();
        for wire_len in [0u32, 1, 3, 4, 17] {
            let bytes = sample_frame((wire_len as usize).saturating_sub(4));
            chip(&mut driver).queue_raw(wire_len << 16, &bytes);
        }
        assert_eq!(receive_bytes(&mut driver), None);
        assert_eq!(driver.stats().rx_errors, 5);
        assert!(chip(&mut driver).rx_data.is_empty());
    }

    #[test]
    fn garbage_status_words_never_panic_or_overread_the_data_fifo() {
        let mut driver = ready_driver();
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..200 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let status = seed as u32 & !(0x3FFF << 16) | ((seed >> 32) as u32 % 1600) << 16;
            let len = ((status >> 16) & 0x3FFF) as usize;
            chip(&mut driver).queue_raw(status, &sample_frame(len.saturating_sub(4)));
            // One frame queued: handed up at most once, then nothing.
            let _ = driver.receive(NOW);
            assert!(
                driver.receive(NOW).is_none(),
                "the same status handed up again"
            );
            assert!(chip(&mut driver).rx_data.is_empty());
        }
        assert_eq!(chip(&mut driver).rx_underruns, 0);
        let stats = driver.stats();
        let handled = stats.rx_frames + stats.rx_errors + stats.rx_too_long + stats.rx_dropped;
        assert_eq!(handled, 200);
    }

    #[test]
    fn a_status_longer_than_the_data_fifo_is_not_overread() {
        let mut driver = Lan9118::new(FakeChip::new(), Config::new(MAC));
        driver.init().unwrap();
        let chip = driver.bus_mut();
        chip.rx_status.push_back(100 << 16); // says 100 bytes
        for word in 0..5u32 {
            chip.rx_data.push_back(0xDEAD_0000 | word); // the FIFO holds 20
        }
        let good = sample_frame(60);
        chip.queue_frame(&good);
        let mut delivered = Vec::new();
        // Bounded: two statuses queued, so at most two frames come up.
        for _ in 0..3 {
            let Some((rx, _tx)) = driver.receive(NOW) else {
                break;
            };
            delivered.push(rx.consume(|f| f.to_vec()));
        }
        assert_eq!(driver.bus_mut().rx_underruns, 0);
        assert!(delivered.iter().all(|f| *f == good));
        assert_eq!(delivered, [good], "the frame behind is still delivered");
        assert_eq!(driver.stats().rx_errors, 1);
        assert_eq!(driver.stats().rx_frames, 1);
        let chip = driver.bus_mut();
        assert_eq!(chip.rx_fast_forwards, 1);
        assert!(chip.rx_data.is_empty());
    }

    #[test]
    fn a_status_longer_than_a_nearly_empty_data_fifo_reads_only_what_is_there() {
        let mut driver = ready_driver();
        chip(&mut driver).rx_status.push_back(100 << 16);
        chip(&mut driver).rx_data.extend([1, 2]);
        assert_eq!(receive_bytes(&mut driver), None);
        let chip = chip(&mut driver);
        assert_eq!(chip.rx_underruns, 0);
        assert_eq!(chip.rx_fast_forwards, 0, "not for fewer than four words");
        assert!(chip.rx_data.is_empty());
        assert_eq!(driver.stats().rx_errors, 1);
    }

    #[test]
    fn chip_drops_are_added_to_rx_dropped() {
        let mut driver = ready_driver();
        chip(&mut driver).rx_drop = 3;
        driver.collect_chip_drops();
        driver.collect_chip_drops();
        assert_eq!(driver.stats().rx_dropped, 3);
    }

    #[test]
    fn rx_interrupt_is_enabled_and_acknowledged() {
        let mut driver = ready_driver();
        driver.enable_rx_interrupt();
        assert_eq!(chip(&mut driver).int_en, regs::int::RSFL);
        assert_ne!(chip(&mut driver).irq_cfg & regs::irq_cfg::IRQ_EN, 0);
        chip(&mut driver).queue_frame(&sample_frame(60));
        assert_eq!(driver.acknowledge_interrupts(), regs::int::RSFL);
        assert_eq!(chip(&mut driver).int_sts, 0);
    }

    /// The driver under a real smoltcp interface: an ARP request and a ping from
    /// a peer get their replies through the chip's TX FIFO.
    #[test]
    fn smoltcp_answers_arp_and_ping_through_the_driver() {
        let mut driver = ready_driver();
        let ours = Ipv4Address::new(192, 168, 69, 1);
        let peer_ip = Ipv4Address::new(192, 168, 69, 100);
        let peer_mac = EthernetAddress([0x02, 0, 0, 0, 0, 0x64]);
        let our_mac = EthernetAddress(MAC);

        let config = IfaceConfig::new(HardwareAddress::Ethernet(our_mac));
        let mut iface = Interface::new(config, &mut driver, NOW);
        iface.update_ip_addrs(|addrs| {
            addrs.push(IpCidr::new(IpAddress::Ipv4(ours), 24)).unwrap();
        });
        let mut storage: [smoltcp::iface::SocketStorage; 1] = Default::default();
        let mut sockets = SocketSet::new(&mut storage[..]);

        let arp = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: peer_mac,
            source_protocol_addr: peer_ip,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: ours,
        };
        let mut frame = vec![0u8; 14 + arp.buffer_len()];
        let eth = EthernetRepr {
            src_addr: peer_mac,
            dst_addr: EthernetAddress::BROADCAST,
            ethertype: EthernetProtocol::Arp,
        };
        let mut eth_frame = EthernetFrame::new_unchecked(&mut frame[..]);
        eth.emit(&mut eth_frame);
        arp.emit(&mut ArpPacket::new_unchecked(eth_frame.payload_mut()));
        chip(&mut driver).queue_frame(&frame);

        let payload = sample_frame(1000);
        let icmp = Icmpv4Repr::EchoRequest {
            ident: 7,
            seq_no: 1,
            data: &payload,
        };
        let ip = Ipv4Repr {
            src_addr: peer_ip,
            dst_addr: ours,
            next_header: IpProtocol::Icmp,
            payload_len: icmp.buffer_len(),
            hop_limit: 64,
        };
        let mut frame = vec![0u8; 14 + ip.buffer_len() + icmp.buffer_len()];
        let eth = EthernetRepr {
            src_addr: peer_mac,
            dst_addr: our_mac,
            ethertype: EthernetProtocol::Ipv4,
        };
        let mut eth_frame = EthernetFrame::new_unchecked(&mut frame[..]);
        eth.emit(&mut eth_frame);
        let mut ip_packet = Ipv4Packet::new_unchecked(eth_frame.payload_mut());
        ip.emit(&mut ip_packet, &Default::default());
        icmp.emit(
            &mut Icmpv4Packet::new_unchecked(ip_packet.payload_mut()),
            &Default::default(),
        );
        chip(&mut driver).queue_frame(&frame);

        for _ in 0..4 {
            iface.poll(NOW, &mut driver, &mut sockets);
        }

        let sent = chip(&mut driver).sent.clone();
        assert_eq!(sent.len(), 2, "{sent:?}");
        let arp_reply = EthernetFrame::new_checked(&sent[0].bytes[..]).unwrap();
        assert_eq!(arp_reply.dst_addr(), peer_mac);
        let arp_reply =
            ArpRepr::parse(&ArpPacket::new_checked(arp_reply.payload()).unwrap()).unwrap();
        let ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            ..
        } = arp_reply
        else {
            panic!("not an Ethernet/IPv4 ARP reply");
        };
        assert_eq!(operation, ArpOperation::Reply);
        assert_eq!(source_hardware_addr, our_mac);
        assert_eq!(source_protocol_addr, ours);

        let echo = EthernetFrame::new_checked(&sent[1].bytes[..]).unwrap();
        let echo_ip = Ipv4Packet::new_checked(echo.payload()).unwrap();
        assert_eq!(echo_ip.dst_addr(), peer_ip);
        let reply = Icmpv4Packet::new_checked(echo_ip.payload()).unwrap();
        let reply = Icmpv4Repr::parse(&reply, &Default::default()).unwrap();
        assert_eq!(
            reply,
            Icmpv4Repr::EchoReply {
                ident: 7,
                seq_no: 1,
                data: &payload
            }
        );
        assert_eq!(driver.stats().rx_frames, 2);
        assert_eq!(driver.stats().tx_frames, 2);
    }
}
