//! TFTP, the file transfer every bootloader speaks (RFC 1350, with option
//! negotiation, `blksize`, `timeout`, `tsize` and `windowsize`: RFC 2347, 2348,
//! 2349 and 7440), served from the same fixed memory and the same
//! [`Storage`](crate::store::Storage) as the transfer service.
//!
//! - [`packet`]: the codec, zero-copy over `&[u8]`, encoding into caller slices.
//! - [`ServerTransfer`]: one client's transfer on the server (an RRQ or a WRQ), a
//!   sans-IO session over a [`SharedStore`](crate::transfer::SharedStore).
//! - [`ClientGet`] and [`ClientPut`]: the client's side, from a
//!   [`FileSource`](crate::transfer::FileSource) or into a
//!   [`FileSink`](crate::transfer::FileSink), with a progress callback; over
//!   `std::net::UdpSocket` in `std_net` (feature `std`).
//! - `asynch` (feature `embedded-io-async`): an async client and a server of one
//!   transfer at a time over any
//!   [`asynch::DatagramSocket`][datagram-socket], such as
//!   embassy-net's `UdpSocket`.
//! - `net::TftpServer` and `net::TftpClient` (feature `smoltcp`): the server on
//!   udp/69 and a client transfer over smoltcp's poll loop.
//!
//! TFTP is datagrams, not a stream, so these sessions take and give whole
//! datagrams: [`receive`](ServerTransfer::receive) one, then
//! [`transmit`](ServerTransfer::transmit) into a buffer until it returns 0; call
//! [`handle_timeout`](ServerTransfer::handle_timeout) once
//! [`poll_timeout`](ServerTransfer::poll_timeout) has passed. The adapter keeps
//! the peer's address and port (its transfer ID) and hands a session only the
//! datagrams from it. Time is passed in, as everywhere in smolsock.
//!
//! A session holds no block of the file: a DATA is read from the store (or the
//! source) straight into the datagram being sent, and read again for a
//! retransmission; a received DATA is appended straight from the datagram. So a
//! transfer costs its datagram buffer (`4 + blksize`, the adapter's) and the
//! session's fixed state: on a 64-bit host at most 408 bytes for a
//! [`ServerTransfer`] and 416 for a [`ClientGet`] or [`ClientPut`] with slice
//! sinks and sources (a test pins both); a file name of up to 255 bytes is most
//! of it.
//!
//! # A get, joined by hand
//!
//! A server slot over a RAM store and a client that fetches a file, their
//! datagrams passed across directly (an adapter does this with UDP sockets and
//! the server's port 69):
//!
//! ```
//! use smolsock::store::{FileName, RamStore, Storage};
//! use smolsock::tftp::{ClientConfig, ClientGet, ServerConfig, ServerTransfer};
//! use smolsock::time::Instant;
//! use smolsock::transfer::{SharedStore, SliceSink, UploadLease};
//! use smolsock::wire::crc32::crc32;
//!
//! let shared = SharedStore::new(RamStore::<4, 8192>::new(), [UploadLease::EMPTY; 1]);
//! let boot = b"kernel image".repeat(100);
//! shared.with_store(|s| -> Result<(), smolsock::store::StoreError> {
//!     let name = FileName::new("boot.img").expect("a plain name");
//!     let mut upload = s.begin_upload(&name, boot.len() as u64, false)?;
//!     s.append(&mut upload, &boot)?;
//!     s.commit(&upload, crc32(&boot)).map(drop)
//! }).expect("the store is free")?;
//!
//! let mut server = ServerTransfer::new(&shared, ServerConfig::DEFAULT);
//! let mut into = [0u8; 2048];
//! let mut client = ClientGet::new(
//!     FileName::new("boot.img")?,
//!     ClientConfig::DEFAULT,
//!     SliceSink::new(&mut into),
//!     |done, total| println!("{done} of {total:?}"),
//! );
//! let (now, mut buf) = (Instant::ZERO, [0u8; 516]);
//! let n = client.transmit(&mut buf, now); // the RRQ, to port 69
//! server.start(&buf[..n], now);
//! let size = loop {
//!     let n = server.transmit(&mut buf, now);
//!     client.receive(&buf[..n], now);
//!     let n = client.transmit(&mut buf, now);
//!     server.receive(&buf[..n], now);
//!     if let Some(outcome) = client.outcome() {
//!         break outcome?;
//!     }
//! };
//! assert_eq!(size, 1200);
//! assert_eq!(client.sink().data(), &boot[..]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Only `octet` mode is served: a `netascii` request is answered with an ERROR
//! saying so (tftp-hpa's client asks for netascii unless told `-m binary`).
//!
//! A WRQ may create a file or replace one: the old file stays readable, whole,
//! until the new one's last block is in. A name being written (by TFTP or the
//! transfer service) is busy for a second writer. A file name may start with `/`
//! (bootloaders send `/pxelinux.0`); past that, it is one plain name, checked
//! as the transfer service checks its names.
//!
//! Nothing is lost silently: a transfer whose peer stops answering retransmits on
//! the negotiated timeout a bounded number of times, then ends with an ERROR and
//! is counted in [`TftpStats::timeouts`] (a receiver whose ACKs are lost
//! starts its tries again when the sender repeats its last block, as the
//! sender's tries for the next one begin only with the ACK; up to `max_tries`
//! times a block, so a peer repeating itself still ends); an upload that fails or stops early
//! leaves no file, because it is written to the store's hidden partial and
//! committed only when its last block is in. A get dallies after its last ACK
//! (RFC 1350's advice): it acknowledges a repeated last block again for a
//! while, so that a server whose final ACK was lost ends clean; its outcome is
//! given at once, and [`ClientSession::is_done`] says when the dally is over.
//!
#![cfg_attr(
    feature = "embedded-io-async",
    doc = "[datagram-socket]: crate::asynch::DatagramSocket"
)]
#![cfg_attr(
    not(feature = "embedded-io-async"),
    doc = "[datagram-socket]: crate#features"
)]

#[cfg(feature = "embedded-io-async")]
pub mod asynch;
mod client;
mod flow;
pub mod packet;
mod server;
#[cfg(feature = "std")]
pub mod std_net;
#[cfg(test)]
mod tests;

pub use client::{ClientConfig, ClientGet, ClientPut, ClientSession};
#[cfg(any(feature = "smoltcp", feature = "embedded-io-async"))]
pub(crate) use server::Listened;
pub use server::{ServerConfig, ServerTransfer, TransferKind};

use core::fmt;

use crate::name::NameError;
use crate::store::StoreError;
use crate::time::Duration;
use crate::transfer::LocalError;
use packet::{ErrorCode, ParseError};

/// The well-known port of TFTP requests.
pub const PORT: u16 = 69;

/// The retransmission timeout when none was negotiated.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// How many times a packet is sent again before a transfer gives up.
pub const DEFAULT_MAX_TRIES: u8 = 5;

/// Why a transfer ended without its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum TftpError {
    /// The peer sent an ERROR with this code.
    Peer(ErrorCode),
    /// The peer stopped answering: every retransmission went unanswered.
    TimedOut,
    /// A datagram that is not a TFTP packet.
    Malformed(ParseError),
    /// A packet that has no place in the transfer now (a DATA to a reader, an
    /// OACK to a server).
    Unexpected,
    /// The request named a file smolsock will not serve (a path, `..`).
    BadName(NameError),
    /// The request asked for a mode other than `octet`.
    Mode,
    /// Another transfer is writing this file now.
    Busy,
    /// The file changed or went away while it was being read.
    FileChanged,
    /// The adapter's buffer cannot hold a packet of the transfer (or a
    /// poll-loop client's socket cannot send one).
    BufferTooSmall,
    /// A poll-loop client's socket could not be bound to the port it was
    /// given (port 0).
    Unbound,
    /// A poll-loop client's socket is not in the socket set it was polled
    /// with (a handle of another set, or of a socket removed from it).
    SocketMissing,
    /// The store refused.
    Store(StoreError),
    /// The local file (a client's source or sink) failed.
    Local(LocalError),
    /// The peer acknowledged options that were not asked for, or values other
    /// than those asked (a larger block or window, another timeout).
    BadOptions,
    /// A DATA longer than the transfer's block size.
    BlockTooLong {
        /// The bytes of data it carried.
        len: usize,
        /// The block size of the transfer.
        block_size: u16,
    },
    /// A request without the `blksize` option to a server whose blocks are
    /// smaller than RFC 1350's 512 bytes (a small buffer or MTU): it could not
    /// tell a short block from the last one.
    NeedsBlockSize {
        /// The largest block the server sends or takes.
        max: u16,
    },
    /// The client asked for blocks smaller than RFC 1350's 512 bytes (its
    /// buffer may hold no more) and the server ignored the `blksize` option (a
    /// plain DATA or ACK 0, or an OACK without it) for a file of at least the
    /// size asked: a 512-byte block cut to the buffer would be taken for the
    /// last, ending the file early, so the transfer is refused (ERROR 8). A get
    /// refuses a DATA of at least the size asked, or a `tsize` that large; a
    /// put, a file that large. A shorter file goes in one block, the last to
    /// either side, and is taken.
    BlockSizeIgnored {
        /// The block size asked for.
        asked: u16,
    },
    /// The transfer fell below the server's minimum rate (bytes per second).
    TooSlow {
        /// The rate.
        rate: u32,
    },
    /// The file received is not as long as the `tsize` the server announced.
    SizeMismatch {
        /// The size announced.
        announced: u64,
        /// The bytes received (so far, if more than announced).
        received: u64,
    },
}

impl fmt::Display for TftpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Peer(code) => write!(f, "the peer sent ERROR: {code}"),
            Self::TimedOut => f.write_str("the peer stopped answering"),
            Self::Malformed(e) => write!(f, "malformed packet: {e}"),
            Self::Unexpected => f.write_str("unexpected packet"),
            Self::BadName(e) => write!(f, "file name refused: {e}"),
            Self::Mode => f.write_str("only octet mode is served"),
            Self::Busy => f.write_str("the file is being written by another transfer"),
            Self::FileChanged => f.write_str("the file changed while it was read"),
            Self::BufferTooSmall => f.write_str("buffer too small for a packet"),
            Self::Unbound => f.write_str("the socket could not be bound to its port"),
            Self::SocketMissing => f.write_str("the socket is not in the set polled"),
            Self::Store(e) => write!(f, "store: {e}"),
            Self::Local(e) => write!(f, "local file: {e}"),
            Self::BadOptions => f.write_str("the peer acknowledged options not asked for"),
            Self::BlockTooLong { len, block_size } => {
                write!(f, "a DATA of {len} B in blocks of {block_size} B")
            }
            Self::NeedsBlockSize { max } => write!(
                f,
                "blocks of 512 B do not fit (at most {max} B): the blksize option is needed"
            ),
            Self::BlockSizeIgnored { asked } => write!(
                f,
                "the server ignored blksize {asked}: blocks of 512 B do not fit"
            ),
            Self::SizeMismatch {
                announced,
                received,
            } => write!(f, "{received} B received, {announced} B announced"),
            Self::TooSlow { rate } => write!(f, "the transfer fell below {rate} B/s"),
        }
    }
}

impl core::error::Error for TftpError {}

impl From<StoreError> for TftpError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl TftpError {
    /// The ERROR a peer is sent for this failure, with its message.
    pub const fn to_packet(&self) -> (ErrorCode, &'static str) {
        match self {
            Self::Peer(_) => (ErrorCode::NotDefined, "error received"),
            Self::TimedOut => (ErrorCode::NotDefined, "timed out"),
            Self::Malformed(_) => (ErrorCode::IllegalOperation, "malformed packet"),
            Self::Unexpected => (ErrorCode::IllegalOperation, "unexpected packet"),
            Self::BadName(_) => (ErrorCode::AccessViolation, "file name refused"),
            Self::Mode => (
                ErrorCode::NotDefined,
                "only octet mode is served: use binary mode",
            ),
            Self::Busy => (ErrorCode::AccessViolation, "file busy: being written"),
            Self::FileChanged => (ErrorCode::NotDefined, "file changed during transfer"),
            Self::BufferTooSmall => (ErrorCode::NotDefined, "buffer too small"),
            Self::Unbound => (ErrorCode::NotDefined, "socket not bound"),
            Self::SocketMissing => (ErrorCode::NotDefined, "no socket"),
            Self::Store(StoreError::NotFound) => (ErrorCode::FileNotFound, "file not found"),
            Self::Store(
                StoreError::Full { .. }
                | StoreError::TooManyFiles { .. }
                | StoreError::FileTooLarge { .. },
            ) => (ErrorCode::DiskFull, "disk full or file too large"),
            Self::Store(StoreError::InvalidName) => {
                (ErrorCode::AccessViolation, "file name refused")
            }
            Self::Store(_) => (ErrorCode::NotDefined, "storage error"),
            Self::Local(_) => (ErrorCode::NotDefined, "local file error"),
            Self::BadOptions => (ErrorCode::OptionRefused, "options refused"),
            Self::BlockTooLong { .. } => (
                ErrorCode::IllegalOperation,
                "DATA longer than the block size",
            ),
            Self::NeedsBlockSize { .. } => (
                ErrorCode::NotDefined,
                "blocks of 512 do not fit here: ask a smaller blksize",
            ),
            Self::BlockSizeIgnored { .. } => (
                ErrorCode::OptionRefused,
                "blksize ignored: blocks of 512 do not fit",
            ),
            Self::SizeMismatch { .. } => (ErrorCode::NotDefined, "file size differs from tsize"),
            Self::TooSlow { .. } => (ErrorCode::NotDefined, "transfer below the minimum rate"),
        }
    }
}

/// Counters of TFTP transfers: a session's own, or a server's sum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TftpStats {
    /// Read requests taken.
    pub reads: u64,
    /// Write requests taken.
    pub writes: u64,
    /// Transfers that ended with the whole file.
    pub completed: u64,
    /// Transfers that ended without it (every cause below, and refusals).
    pub failed: u64,
    /// Transfers ended because the peer stopped answering.
    pub timeouts: u64,
    /// Transfers ended for falling below the server's minimum rate.
    pub too_slow: u64,
    /// Packets sent again: after a timeout, or (a window's) after an ACK
    /// inside the window asked for its later blocks again (RFC 7440).
    pub retransmits: u64,
    /// Duplicate DATA or ACK packets received (ignored, or answered by a
    /// repeated ACK), and requests repeated while their transfer runs.
    pub duplicates: u64,
    /// Datagrams that were not TFTP packets, or had no place in a transfer (a
    /// DATA ahead of a block that was lost among them, dropped).
    pub malformed: u64,
    /// Requests refused (bad name, mode, store error, busy).
    pub refused: u64,
    /// Datagrams from a port that is not the transfer's peer, answered ERROR 5
    /// (an ERROR excepted: it is never answered, RFC 1350).
    pub wrong_tid: u64,
    /// Requests that found every transfer slot taken, answered with an ERROR.
    pub pool_full: u64,
    /// File bytes sent in DATA (retransmissions included).
    pub bytes_sent: u64,
    /// File bytes stored or delivered from DATA received.
    pub bytes_received: u64,
}

impl TftpStats {
    /// Every counter at zero (`Default`, usable in a `const fn`).
    pub const ZERO: Self = Self {
        reads: 0,
        writes: 0,
        completed: 0,
        failed: 0,
        timeouts: 0,
        too_slow: 0,
        retransmits: 0,
        duplicates: 0,
        malformed: 0,
        refused: 0,
        wrong_tid: 0,
        pool_full: 0,
        bytes_sent: 0,
        bytes_received: 0,
    };

    /// Adds `other`'s counts to these (summing a pool's sessions).
    pub fn accumulate(&mut self, other: &Self) {
        let Self {
            reads,
            writes,
            completed,
            failed,
            timeouts,
            too_slow,
            retransmits,
            duplicates,
            malformed,
            refused,
            wrong_tid,
            pool_full,
            bytes_sent,
            bytes_received,
        } = other;
        for (total, count) in [
            (&mut self.reads, reads),
            (&mut self.writes, writes),
            (&mut self.completed, completed),
            (&mut self.failed, failed),
            (&mut self.timeouts, timeouts),
            (&mut self.too_slow, too_slow),
            (&mut self.retransmits, retransmits),
            (&mut self.duplicates, duplicates),
            (&mut self.malformed, malformed),
            (&mut self.refused, refused),
            (&mut self.wrong_tid, wrong_tid),
            (&mut self.pool_full, pool_full),
            (&mut self.bytes_sent, bytes_sent),
            (&mut self.bytes_received, bytes_received),
        ] {
            *total = total.saturating_add(*count);
        }
    }
}

impl fmt::Display for TftpStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "reads: {}, writes: {}, completed: {}, failed: {}, timeouts: {}, too slow: {}, \
             retransmits: {}, duplicates: {}, malformed: {}, refused: {}, wrong TID: {}, \
             pool full: {}, bytes sent: {}, bytes received: {}",
            self.reads,
            self.writes,
            self.completed,
            self.failed,
            self.timeouts,
            self.too_slow,
            self.retransmits,
            self.duplicates,
            self.malformed,
            self.refused,
            self.wrong_tid,
            self.pool_full,
            self.bytes_sent,
            self.bytes_received
        )
    }
}

/// The first port a server's transfer may be given: the dynamic range.
#[cfg(any(feature = "smoltcp", feature = "embedded-io-async"))]
pub(crate) const FIRST_TID: u16 = 49152;

/// `port`, or for a port below the dynamic range, one in it.
#[cfg(any(feature = "smoltcp", feature = "embedded-io-async"))]
pub(crate) const fn in_tid_range(port: u16) -> u16 {
    if port < FIRST_TID {
        FIRST_TID | (port & 0x3fff)
    } else {
        port
    }
}

/// The port for a server's next transfer after one on `previous` (0 for none),
/// at `micros` on its clock: in the dynamic range, never `previous` itself, and
/// not predictable from one transfer to the next, the clock mixed in (RFC 1350
/// asks for transfer IDs chosen at random).
#[cfg(any(feature = "smoltcp", feature = "embedded-io-async"))]
pub(crate) const fn next_tid(previous: u16, micros: u64) -> u16 {
    let mixed = micros.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // 1 to 64: a step of less than the range's 16,384 ports never comes back
    // to `previous`.
    let step = ((mixed >> 58) as u16).wrapping_add(1);
    in_tid_range(previous.wrapping_add(step))
}

fn add(counter: &mut u64, n: usize) {
    *counter = counter.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
}

fn bump(counter: &mut u64) {
    *counter = counter.saturating_add(1);
}

/// Whether `datagram` is an ERROR (its opcode, however the rest reads), which
/// is never answered (RFC 1350): not from a wrong transfer ID with ERROR 5 (two
/// ends refusing each other's refusals would never stop), nor, when it does not
/// parse, with ERROR 4.
pub(crate) fn is_error(datagram: &[u8]) -> bool {
    datagram.get(..2) == Some(&[0, 5])
}

/// Encodes an ERROR packet into `buf`; 0 if it does not fit.
pub(crate) fn emit_error(buf: &mut [u8], code: ErrorCode, message: &str) -> usize {
    packet::Packet::Error {
        code,
        message: message.as_bytes(),
    }
    .emit(buf)
    .unwrap_or(0)
}
