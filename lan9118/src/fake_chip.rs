//! A software model of the LAN9118, just enough to test the driver on the host.
//!
//! It follows the datasheet's behaviour for the registers the driver touches: the
//! soft reset, the indirect MAC and PHY registers, the RX status/data FIFOs (frame
//! bytes packed little-endian, the CRC after them) and the TX command words. Like
//! QEMU's model, it panics on a register the driver has no business touching, so a
//! test fails loudly if the driver strays.

use std::collections::VecDeque;

use crate::bus::Bus;
use crate::regs::{self, mac, mac_csr_cmd, mii_acc};

/// A frame the fake chip saw go out, with the command words that carried it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentFrame {
    pub command_a: u32,
    pub command_b: u32,
    pub data_words: Vec<u32>,
    pub bytes: Vec<u8>,
}

#[derive(Debug)]
pub struct FakeChip {
    pub byte_test: u32,
    pub id_rev: u32,
    /// How many `HW_CFG` reads the soft reset takes; `None`: it never ends.
    pub reset_reads: Option<u32>,
    resetting: u32,
    pub resets: u32,
    /// `MAC_CSR_CMD` stays busy forever.
    pub mac_stuck: bool,
    pub mac_regs: [u32; 16],
    mac_cmd: u32,
    mac_data: u32,
    pub phy_regs: [u16; 32],
    pub phy_reads: Vec<u32>,
    pub int_sts: u32,
    pub int_en: u32,
    pub irq_cfg: u32,
    pub rx_cfg: u32,
    pub tx_cfg: u32,
    pub afc_cfg: u32,
    pub rx_drop: u32,
    pub free_run: u32,
    pub rx_status: VecDeque<u32>,
    pub rx_data: VecDeque<u32>,
    /// Reads of the RX data port with nothing in it (a driver bug on real chips).
    pub rx_underruns: u32,
    /// Fast-forwards asked for through `RX_DP_CTRL`.
    pub rx_fast_forwards: u32,
    /// What `TX_FIFO_INF` reports as free data bytes.
    pub tx_free: u32,
    pub tx_status: VecDeque<u32>,
    /// Status word error bits to put in the next TX statuses.
    pub tx_status_error: u32,
    tx_words: Vec<u32>,
    pub sent: Vec<SentFrame>,
}

impl FakeChip {
    pub fn new() -> Self {
        Self {
            byte_test: regs::BYTE_TEST_VALUE,
            id_rev: 0x0118_0001,
            reset_reads: Some(3),
            resetting: 0,
            resets: 0,
            mac_stuck: false,
            // The datasheet's reset value of MAC_CR: promiscuous.
            mac_regs: [
                0,
                regs::mac_cr::PRMS,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
            ],
            mac_cmd: 0,
            mac_data: 0,
            phy_regs: [0; 32],
            phy_reads: Vec::new(),
            int_sts: 0,
            int_en: 0,
            irq_cfg: 0,
            rx_cfg: 0,
            tx_cfg: 0,
            afc_cfg: 0,
            rx_drop: 0,
            free_run: 0x1234_5678,
            rx_status: VecDeque::new(),
            rx_data: VecDeque::new(),
            rx_underruns: 0,
            rx_fast_forwards: 0,
            tx_free: 4608,
            tx_status: VecDeque::new(),
            tx_status_error: 0,
            tx_words: Vec::new(),
            sent: Vec::new(),
        }
    }

    /// Queues a received frame as the chip would: status word with the length
    /// (CRC included), then the bytes and a CRC, packed little-endian into words.
    pub fn queue_frame(&mut self, frame: &[u8]) {
        let wire_len = frame.len() + 4;
        self.queue_raw((wire_len as u32) << 16, frame);
    }

    /// Queues `bytes` (plus a fake CRC) behind an arbitrary status word, with as
    /// many words as the status word's length field says.
    pub fn queue_raw(&mut self, status: u32, bytes: &[u8]) {
        let wire_len = ((status >> 16) & 0x3FFF) as usize;
        let mut wire = bytes.to_vec();
        wire.extend_from_slice(&[0xC1, 0xC2, 0xC3, 0xC4]);
        wire.resize(wire_len.div_ceil(4) * 4, 0);
        self.rx_status.push_back(status);
        for word in wire.chunks(4) {
            self.rx_data
                .push_back(u32::from_le_bytes(word.try_into().unwrap()));
        }
        self.int_sts |= regs::int::RSFL;
    }

    /// `RX_DP_CTRL.RX_FFWD`: the chip knows where each frame's data ends, whatever
    /// its status word says, and skips the rest of the frame whose status was
    /// popped last. Here that is every word ahead of the data of the frames whose
    /// status words still wait (each as long as its status says). It completes
    /// at once.
    fn fast_forward(&mut self) {
        self.rx_fast_forwards += 1;
        let behind: usize = self
            .rx_status
            .iter()
            .map(|status| (((status >> 16) & 0x3FFF) as usize).div_ceil(4))
            .sum();
        let skip = self.rx_data.len().saturating_sub(behind);
        self.rx_data.drain(..skip);
    }

    pub fn mac_address(&self) -> [u8; 6] {
        let low = self.mac_regs[mac::ADDRL as usize].to_le_bytes();
        let high = self.mac_regs[mac::ADDRH as usize].to_le_bytes();
        [low[0], low[1], low[2], low[3], high[0], high[1]]
    }

    fn soft_reset(&mut self) {
        let keep_tx_free = self.tx_free;
        let keep_reset = self.reset_reads;
        let keep_stuck = self.mac_stuck;
        let resets = self.resets + 1;
        let (byte_test, id_rev) = (self.byte_test, self.id_rev);
        *self = Self::new();
        self.tx_free = keep_tx_free;
        self.reset_reads = keep_reset;
        self.mac_stuck = keep_stuck;
        self.byte_test = byte_test;
        self.id_rev = id_rev;
        self.resets = resets;
        self.resetting = keep_reset.unwrap_or(u32::MAX);
    }

    fn mac_access(&mut self, command: u32) {
        let index = (command & mac_csr_cmd::INDEX_MASK) as usize;
        assert!(
            (1..=8).contains(&index),
            "MAC register {index} not modelled"
        );
        if command & mac_csr_cmd::READ != 0 {
            self.mac_data = self.mac_regs[index];
            return;
        }
        self.mac_regs[index] = self.mac_data;
        if index == mac::MII_ACC as usize {
            let phy_register = ((self.mac_data >> mii_acc::INDEX_SHIFT) & 0x1F) as usize;
            let phy_address = (self.mac_data >> mii_acc::PHY_ADDR_SHIFT) & 0x1F;
            assert_eq!(phy_address, mii_acc::INTERNAL_PHY, "wrong PHY address");
            if self.mac_data & mii_acc::MIIWNR != 0 {
                self.phy_regs[phy_register] = self.mac_regs[mac::MII_DATA as usize] as u16;
            } else {
                self.phy_reads.push(phy_register as u32);
                self.mac_regs[mac::MII_DATA as usize] = u32::from(self.phy_regs[phy_register]);
            }
            // The access completes at once.
            self.mac_regs[mac::MII_ACC as usize] &= !mii_acc::MIIBZY;
        }
    }

    fn push_tx_word(&mut self, word: u32) {
        self.tx_words.push(word);
        let [command_a, command_b, data @ ..] = self.tx_words.as_slice() else {
            return;
        };
        let len = (command_a & regs::tx_cmd_a::BUFFER_SIZE_MASK) as usize;
        if data.len() < len.div_ceil(4) {
            return;
        }
        let mut bytes: Vec<u8> = data.iter().flat_map(|w| w.to_le_bytes()).collect();
        bytes.truncate(len);
        self.sent.push(SentFrame {
            command_a: *command_a,
            command_b: *command_b,
            data_words: data.to_vec(),
            bytes,
        });
        let tag = command_b & 0xFFFF_0000;
        self.tx_status.push_back(tag | self.tx_status_error);
        self.tx_words.clear();
    }
}

impl Bus for FakeChip {
    fn read(&mut self, offset: u32) -> u32 {
        match offset {
            0x00..0x20 => self.rx_data.pop_front().unwrap_or_else(|| {
                self.rx_underruns += 1;
                0
            }),
            regs::RX_STATUS_FIFO => self.rx_status.pop_front().unwrap_or(0),
            regs::TX_STATUS_FIFO => self.tx_status.pop_front().unwrap_or(0),
            regs::ID_REV => self.id_rev,
            regs::BYTE_TEST => self.byte_test,
            regs::IRQ_CFG => self.irq_cfg,
            regs::INT_STS => self.int_sts,
            regs::INT_EN => self.int_en,
            regs::RX_CFG => self.rx_cfg,
            regs::TX_CFG => self.tx_cfg,
            regs::HW_CFG => {
                if self.resetting > 0 {
                    self.resetting = self.resetting.saturating_sub(1);
                    regs::hw_cfg::SRST
                } else {
                    0
                }
            }
            regs::RX_DP_CTRL => 0,
            regs::RX_FIFO_INF => {
                ((self.rx_status.len() as u32) << 16) | (self.rx_data.len() as u32 * 4)
            }
            regs::TX_FIFO_INF => ((self.tx_status.len() as u32) << 16) | self.tx_free,
            regs::PMT_CTRL => regs::pmt_ctrl::READY,
            regs::E2P_CMD => 0,
            regs::FREE_RUN => self.free_run,
            regs::RX_DROP => std::mem::take(&mut self.rx_drop),
            regs::MAC_CSR_CMD => {
                if self.mac_stuck {
                    self.mac_cmd | mac_csr_cmd::BUSY
                } else {
                    self.mac_cmd
                }
            }
            regs::MAC_CSR_DATA => self.mac_data,
            regs::AFC_CFG => self.afc_cfg,
            other => panic!("driver read unmodelled register {other:#x}"),
        }
    }

    fn write(&mut self, offset: u32, value: u32) {
        match offset {
            0x20..0x40 => self.push_tx_word(value),
            regs::IRQ_CFG => self.irq_cfg = value,
            regs::INT_STS => self.int_sts &= !value,
            regs::INT_EN => self.int_en = value,
            regs::RX_CFG => self.rx_cfg = value,
            regs::RX_DP_CTRL => {
                if value & regs::rx_dp_ctrl::RX_FFWD != 0 {
                    self.fast_forward();
                }
            }
            regs::TX_CFG => self.tx_cfg = value,
            regs::AFC_CFG => self.afc_cfg = value,
            regs::HW_CFG => {
                assert!(value & regs::hw_cfg::MBO != 0, "HW_CFG written without MBO");
                if value & regs::hw_cfg::SRST != 0 {
                    self.soft_reset();
                }
            }
            regs::MAC_CSR_DATA => self.mac_data = value,
            regs::MAC_CSR_CMD => {
                self.mac_cmd = value & !mac_csr_cmd::BUSY;
                if value & mac_csr_cmd::BUSY != 0 && !self.mac_stuck {
                    self.mac_access(value);
                }
            }
            other => panic!("driver wrote {value:#x} to unmodelled register {other:#x}"),
        }
    }
}
