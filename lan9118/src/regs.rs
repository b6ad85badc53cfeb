//! The LAN9118 register map, as byte offsets from the chip's base address.
//!
//! The chip has two kinds of registers. The *system control and status registers*
//! (CSRs) and the four FIFO ports are memory-mapped, 32 bits wide, at the offsets
//! below. The *MAC registers* are not: they sit behind [`MAC_CSR_CMD`] and
//! [`MAC_CSR_DATA`] and are named by the small indices in [`mac`]. The PHY registers
//! are one step further, behind the MAC's [`mac::MII_ACC`] and [`mac::MII_DATA`].
//!
//! Names follow the datasheet ("LAN9118 High Performance single-chip 10/100
//! Non-PCI Ethernet Controller", section 5, "Register Description") so that a reader
//! can hold the two side by side. Bits that the driver does not use are left out.

/// RX data FIFO port: each read pops one 32-bit word of the frame being read.
///
/// The port is aliased over `0x00..0x20`; any of those offsets reads the same FIFO.
pub const RX_DATA_FIFO: u32 = 0x00;
/// TX data FIFO port: each write pushes one 32-bit word (command A, command B, data).
///
/// Aliased over `0x20..0x40`.
pub const TX_DATA_FIFO: u32 = 0x20;
/// RX status FIFO port: each read pops the status word of the next received frame.
pub const RX_STATUS_FIFO: u32 = 0x40;
/// RX status FIFO peek: reads the next status word without popping it.
pub const RX_STATUS_FIFO_PEEK: u32 = 0x44;
/// TX status FIFO port: each read pops the status word of a transmitted frame.
pub const TX_STATUS_FIFO: u32 = 0x48;
/// TX status FIFO peek: reads the next TX status word without popping it.
pub const TX_STATUS_FIFO_PEEK: u32 = 0x4C;

/// Chip identification (bits 31:16) and revision (bits 15:0). Reads `0x0118_0001`
/// on the LAN9118 that QEMU models.
pub const ID_REV: u32 = 0x50;
/// Interrupt pin configuration (enable, polarity, push-pull or open drain).
pub const IRQ_CFG: u32 = 0x54;
/// Interrupt status: a bit is set when its event happened; write 1 to clear it.
pub const INT_STS: u32 = 0x58;
/// Interrupt enable: which [`INT_STS`] bits drive the IRQ pin.
pub const INT_EN: u32 = 0x5C;
/// Byte order test: always reads [`BYTE_TEST_VALUE`] when the bus is wired right.
pub const BYTE_TEST: u32 = 0x64;
/// FIFO level interrupt thresholds.
pub const FIFO_INT: u32 = 0x68;
/// Receive configuration: end alignment, DMA count, RX dump, data offset.
pub const RX_CFG: u32 = 0x6C;
/// Transmit configuration: TX on, stop, dumps, status overrun.
pub const TX_CFG: u32 = 0x70;
/// Hardware configuration: soft reset, TX FIFO size.
pub const HW_CFG: u32 = 0x74;
/// RX datapath control: fast-forward over the current frame.
pub const RX_DP_CTRL: u32 = 0x78;
/// RX FIFO information: status words used (23:16) and data bytes used (15:0).
pub const RX_FIFO_INF: u32 = 0x7C;
/// TX FIFO information: status words used (23:16) and data bytes free (15:0).
pub const TX_FIFO_INF: u32 = 0x80;
/// Power management control; bit 0 says the chip is ready after a reset.
pub const PMT_CTRL: u32 = 0x84;
/// General purpose I/O and LED configuration.
pub const GPIO_CFG: u32 = 0x88;
/// General purpose timer configuration.
pub const GPT_CFG: u32 = 0x8C;
/// General purpose timer count.
pub const GPT_CNT: u32 = 0x90;
/// Word swap control (for 16-bit buses and big-endian hosts).
pub const WORD_SWAP: u32 = 0x98;
/// Free-running counter at 25 MHz, counting since the chip's last reset. Read-only.
pub const FREE_RUN: u32 = 0x9C;
/// Frames dropped by the receiver because the RX FIFO was full. Cleared on read.
pub const RX_DROP: u32 = 0xA0;
/// MAC CSR command: busy flag, read/write direction and the MAC register index.
pub const MAC_CSR_CMD: u32 = 0xA4;
/// MAC CSR data: the value to write, or the value read, through [`MAC_CSR_CMD`].
pub const MAC_CSR_DATA: u32 = 0xA8;
/// Automatic flow control configuration.
pub const AFC_CFG: u32 = 0xAC;
/// EEPROM command: busy flag while the MAC address loads after a reset.
pub const E2P_CMD: u32 = 0xB0;
/// EEPROM data.
pub const E2P_DATA: u32 = 0xB4;

/// What [`BYTE_TEST`] reads on a correctly wired 32-bit little-endian bus.
pub const BYTE_TEST_VALUE: u32 = 0x8765_4321;

/// [`HW_CFG`] bits.
pub mod hw_cfg {
    /// Soft reset; self-clearing when the reset is over.
    pub const SRST: u32 = 1 << 0;
    /// Soft reset timed out (set by the chip).
    pub const SRST_TO: u32 = 1 << 1;
    /// Must be written as one whenever `HW_CFG` is written.
    pub const MBO: u32 = 1 << 20;
}

/// [`PMT_CTRL`] bits.
pub mod pmt_ctrl {
    /// The chip finished its reset and may be accessed.
    pub const READY: u32 = 1 << 0;
}

/// [`E2P_CMD`] bits.
pub mod e2p_cmd {
    /// An EEPROM operation (the MAC address load after reset) is in progress.
    pub const BUSY: u32 = 1 << 31;
}

/// [`IRQ_CFG`] bits.
pub mod irq_cfg {
    /// Drive the IRQ pin.
    pub const IRQ_EN: u32 = 1 << 8;
    /// IRQ active high (with [`IRQ_TYPE`] push-pull).
    pub const IRQ_POL: u32 = 1 << 4;
    /// IRQ pin is push-pull rather than open drain.
    pub const IRQ_TYPE: u32 = 1 << 0;
}

/// [`INT_STS`] / [`INT_EN`] bits.
pub mod int {
    /// RX status FIFO level reached: a received frame waits.
    pub const RSFL: u32 = 1 << 3;
    /// RX error (for example an RX FIFO underrun by the host).
    pub const RXE: u32 = 1 << 14;
    /// TX error.
    pub const TXE: u32 = 1 << 13;
    /// All status bits, to clear them at once.
    pub const ALL: u32 = 0xFFFF_FFFF;
}

/// [`RX_CFG`] bits.
pub mod rx_cfg {
    /// Empty the RX data and status FIFOs (self-clearing).
    pub const RX_DUMP: u32 = 1 << 15;
}

/// [`TX_CFG`] bits.
pub mod tx_cfg {
    /// Transmitter on.
    pub const TX_ON: u32 = 1 << 1;
    /// Let the TX status FIFO overrun instead of stopping the transmitter.
    pub const TXSAO: u32 = 1 << 2;
    /// Empty the TX status FIFO (self-clearing).
    pub const TXS_DUMP: u32 = 1 << 15;
    /// Empty the TX data FIFO (self-clearing).
    pub const TXD_DUMP: u32 = 1 << 14;
}

/// [`RX_DP_CTRL`] bits.
pub mod rx_dp_ctrl {
    /// Skip the rest of the current frame (datasheet: only for frames of at least
    /// four words; self-clearing).
    pub const RX_FFWD: u32 = 1 << 31;
}

/// [`RX_FIFO_INF`] and [`TX_FIFO_INF`] fields.
pub mod fifo_inf {
    /// Shift of the status-words-used field.
    pub const STATUS_USED_SHIFT: u32 = 16;
    /// Mask of the status-words-used field (after the shift).
    pub const STATUS_USED_MASK: u32 = 0xFF;
    /// Mask of the data field: RX bytes used, or TX bytes free.
    pub const DATA_MASK: u32 = 0xFFFF;
}

/// [`MAC_CSR_CMD`] bits.
pub mod mac_csr_cmd {
    /// Start the access; the chip clears it when the access is done.
    pub const BUSY: u32 = 1 << 31;
    /// Read (set) or write (clear).
    pub const READ: u32 = 1 << 30;
    /// Mask of the MAC register index.
    pub const INDEX_MASK: u32 = 0xFF;
}

/// The indirect MAC registers, by index through [`MAC_CSR_CMD`].
pub mod mac {
    /// MAC control: TX/RX enable, duplex, address filtering.
    pub const MAC_CR: u32 = 1;
    /// MAC address high: bytes 4 and 5 in bits 15:0.
    pub const ADDRH: u32 = 2;
    /// MAC address low: bytes 0 to 3, byte 0 in bits 7:0.
    pub const ADDRL: u32 = 3;
    /// Multicast hash table, high word.
    pub const HASHH: u32 = 4;
    /// Multicast hash table, low word.
    pub const HASHL: u32 = 5;
    /// MII (PHY) access: PHY address, register index, direction, busy.
    pub const MII_ACC: u32 = 6;
    /// MII (PHY) data.
    pub const MII_DATA: u32 = 7;
    /// Flow control.
    pub const FLOW: u32 = 8;
}

/// [`mac::MAC_CR`] bits.
pub mod mac_cr {
    /// Receiver enable.
    pub const RXEN: u32 = 1 << 2;
    /// Transmitter enable.
    pub const TXEN: u32 = 1 << 3;
    /// Disable broadcast frames.
    pub const BCAST: u32 = 1 << 11;
    /// Hash-perfect multicast filtering.
    pub const HPFILT: u32 = 1 << 13;
    /// Promiscuous: receive every frame.
    pub const PRMS: u32 = 1 << 18;
    /// Pass all multicast frames (needed by IPv6 neighbour discovery unless the
    /// hash table is programmed).
    pub const MCPAS: u32 = 1 << 19;
    /// Full duplex.
    pub const FDPX: u32 = 1 << 20;
}

/// [`mac::MII_ACC`] bits.
pub mod mii_acc {
    /// The access is in progress.
    pub const MIIBZY: u32 = 1 << 0;
    /// Write (set) or read (clear).
    pub const MIIWNR: u32 = 1 << 1;
    /// Shift of the PHY register index.
    pub const INDEX_SHIFT: u32 = 6;
    /// Shift of the PHY address.
    pub const PHY_ADDR_SHIFT: u32 = 11;
    /// The address of the LAN9118's internal PHY.
    pub const INTERNAL_PHY: u32 = 1;
}

/// Registers of the internal PHY (IEEE 802.3 clause 22), through [`mac::MII_ACC`].
pub mod phy {
    /// Basic control.
    pub const BCR: u32 = 0;
    /// Basic status.
    pub const BSR: u32 = 1;
    /// [`BCR`]: enable auto-negotiation.
    pub const BCR_AN_ENABLE: u32 = 1 << 12;
    /// [`BCR`]: restart auto-negotiation.
    pub const BCR_AN_RESTART: u32 = 1 << 9;
    /// [`BSR`]: the link is up.
    pub const BSR_LINK_UP: u32 = 1 << 2;
}

/// TX command A, the first word pushed for every buffer.
pub mod tx_cmd_a {
    /// Interrupt on completion.
    pub const IOC: u32 = 1 << 31;
    /// First segment of a frame.
    pub const FIRST_SEGMENT: u32 = 1 << 13;
    /// Last segment of a frame.
    pub const LAST_SEGMENT: u32 = 1 << 12;
    /// Mask of the buffer size in bytes (bits 10:0).
    pub const BUFFER_SIZE_MASK: u32 = 0x7FF;
}

/// TX command B, the second word pushed for every buffer.
pub mod tx_cmd_b {
    /// Shift of the packet tag, echoed in the TX status word.
    pub const TAG_SHIFT: u32 = 16;
    /// Do not append the CRC.
    pub const ADD_CRC_DISABLE: u32 = 1 << 13;
    /// Do not pad short frames to 64 bytes.
    pub const DISABLE_PADDING: u32 = 1 << 12;
    /// Mask of the frame length in bytes (bits 10:0).
    pub const PACKET_LENGTH_MASK: u32 = 0x7FF;
}

/// The TX status word, one per transmitted frame.
pub mod tx_status {
    /// Error summary: loss of carrier, no carrier, late or excessive collisions,
    /// excessive deferral, underrun.
    pub const ES: u32 = 1 << 15;
}

/// The RX status word, one per received frame.
pub mod rx_status {
    /// The frame failed the address filter (only delivered with `RXALL`).
    pub const FILTERING_FAIL: u32 = 1 << 30;
    /// Shift of the frame length (which counts the 4-byte CRC).
    pub const LENGTH_SHIFT: u32 = 16;
    /// Mask of the frame length, after the shift (14 bits).
    pub const LENGTH_MASK: u32 = 0x3FFF;
    /// Error summary: runt, frame too long, late collision, CRC error.
    pub const ES: u32 = 1 << 15;
    /// Length error: the length/type field did not match the frame.
    pub const LENGTH_ERROR: u32 = 1 << 12;
    /// Runt frame (shorter than 64 bytes on the wire).
    pub const RUNT: u32 = 1 << 11;
    /// Frame too long (over 1518 bytes).
    pub const FRAME_TOO_LONG: u32 = 1 << 7;
    /// MII error during reception.
    pub const MII_ERROR: u32 = 1 << 3;
    /// CRC error.
    pub const CRC_ERROR: u32 = 1 << 1;
}
