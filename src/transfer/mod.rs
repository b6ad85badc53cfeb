//! File transfer, the primer's "FTP" chapter: the server and the `no_std` client of
//! the protocol that `PROTOCOL.md` specifies, as sans-IO sessions.
//!
//! - [`TransferServer`] is one connection's server: a [`Session`](crate::session::Session)
//!   that serves HELLO, PUT with resume, GET with resume, LIST, STAT and DELETE over
//!   any [`Storage`](crate::store::Storage). The connections of a pool share one
//!   store through a [`SharedStore`], which also knows which names are being
//!   uploaded (a second upload of the same name is `Busy`) and keeps the
//!   server-wide [`TransferStats`].
//! - [`TransferClient`] is the other end, for a microcontroller that pushes a file
//!   (from any [`FileSource`]) or fetches one (into any [`FileSink`]) with a progress
//!   callback, resuming where an earlier attempt stopped and checking the CRC-32.
//!   Each request is an operation ([`PutFile`], [`GetFile`], [`ListFiles`],
//!   [`StatFile`], [`DeleteFile`]) that is a [`Request`](crate::session::Request).
//!
//! Neither side touches a socket or reads a clock: bytes go in through `receive`,
//! out through `transmit`, and time is passed in. An adapter (smoltcp's poll loop,
//! an `embedded-io-async` stream, a blocking `std` stream) moves the bytes. So the
//! protocol builds without smoltcp, for an embassy-net firmware or a host tool.
//!
//! Neither side ever holds more than one frame of file data: a connection costs its
//! frame receive storage plus one staging buffer of one frame, both chosen by the
//! caller (arrays, or `static` slices on a microcontroller), plus a fixed part of
//! framing state, counters and the operation in progress: on a 32-bit
//! microcontroller 392 bytes for a server connection and 256 for the client (with
//! slice buffers; an upload operation adds 192 where the caller keeps it), as
//! the repository's `MEMORY.md` lists (a test checks its figures).
//!
//! # Serving
//!
//! Two connections over a RAM store (8 files, 64 KiB), frames up to 1 KiB: each
//! connection has 1 KiB + 4 of receive storage and as much again to stage frames.
//! Here a client on the same thread is joined to the server by hand:
//!
//! ```
//! use smolsock::session::{Request, Session};
//! use smolsock::store::{FileName, RamStore};
//! use smolsock::time::Instant;
//! use smolsock::transfer::{PutOptions, SharedStore, TransferClient, TransferServer, UploadLease};
//!
//! let shared = SharedStore::new(RamStore::<8, 65_536>::new(), [UploadLease::EMPTY; 2]);
//! let slot = || TransferServer::new(&shared, [0u8; 1028], [0u8; 1028]);
//! let (mut server, _spare) = (slot()?, slot()?);
//! let mut client = TransferClient::new([0u8; 1028], [0u8; 1028])?;
//! let now = Instant::ZERO;
//! server.start(now);
//! let log = b"boot ok\n".repeat(500);
//! let mut put = client.put(FileName::new("boot.log")?, &log[..], PutOptions::RESUME, |done, total| {
//!     println!("{}%", done * 100 / total.max(1));
//! });
//! let (mut up, mut down, mut space) = (Vec::new(), Vec::new(), [0u8; 512]);
//! let stored = loop {
//!     // An adapter does this with a socket: what one end sends, the other takes,
//!     // and what it does not take yet waits (back-pressure).
//!     let n = put.transmit(&mut space, now);
//!     up.extend_from_slice(&space[..n]);
//!     let took = server.receive(&up, now);
//!     up.drain(..took);
//!     let n = server.transmit(&mut space, now);
//!     down.extend_from_slice(&space[..n]);
//!     let took = put.receive(&down, now);
//!     down.drain(..took);
//!     if let Some(outcome) = put.outcome() {
//!         break outcome?;
//!     }
//! };
//! assert_eq!(stored.size, 4000);
//! println!("{}", shared.stats());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! On Linux, serve a directory instead, with the protocol's default 64 KiB frames:
//! `SharedStore::new(DirStore::open(root, DirLimits::DEFAULT)?, [UploadLease::EMPTY; 4])`
//! and `TransferServer::new(&shared, vec![0; 65_540], vec![0; 65_540])`.
//!
//! The receive storage decides the largest frame body a side announces (`len - 4`);
//! the staging buffer decides the largest DATA frame it sends (`len - 4` body
//! bytes, or less if the peer accepts less).
//!
//! # Deadlines
//!
//! A server connection gives every message but the DATA of an upload
//! [`DEFAULT_REQUEST_TIMEOUT`] (10 s, [`TransferServer::with_request_timeout`])
//! from its first byte to arrive whole; past that it answers `ERROR
//! RequestTimeout` and closes, however steadily a trickle of bytes keeps the
//! connection busy. An upload or a download must keep an average of
//! [`DEFAULT_MIN_TRANSFER_RATE`] (500 B/s,
//! [`TransferServer::with_min_transfer_rate`]): it has the request deadline from
//! its start plus a second per 500 bytes of the file reached, and past that it
//! is answered `ERROR TooSlow` and the connection closes, an upload's partial
//! kept for a resume. A download lasts until its last byte has gone out, however
//! slowly the client reads its last DATA frame. Between requests, a connection
//! that moves no byte at all is the pool's business: its idle timeout resets it.
//! The client holds the server to the same rules from its side: it gives up on
//! a server that moves no byte for its own timeout (60 s,
//! [`TransferClient::with_timeout`]), and every operation, a listing as much as
//! a transfer, must keep an average of 500 B/s
//! ([`TransferClient::with_min_rate`]): it has the timeout from its start plus
//! a second per 500 bytes moved, and past that it ends with
//! [`ClientError::TooSlow`], so a server trickling bytes or entries, each in
//! time, cannot hold it either. A listing also takes at most 65,536 ENTRY
//! frames ([`TransferClient::with_max_entries`]): one more ends it with
//! [`ClientError::TooManyEntries`].

mod client;
mod common;
mod files;
mod server;
#[cfg(test)]
mod tests;

pub use client::{
    ClientError, DeleteFile, GetFile, ListFiles, ProtocolError, PutFile, PutOptions, StatFile,
    TransferClient,
};
pub use common::{DEFAULT_MIN_TRANSFER_RATE, SetupError};
pub use files::{FileSink, FileSource, LocalError, SliceSink};
pub use server::{DEFAULT_REQUEST_TIMEOUT, SharedStore, TransferServer, UploadLease};

use core::fmt;

use crate::wire::transfer::ErrorCode;

/// How many codes [`ErrorCounts`] keeps: 0x01 to 0x12.
const CODES: usize = 0x12;

/// How many ERROR answers of each code a server sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ErrorCounts {
    /// Indexed by code - 1.
    counts: [u64; CODES],
}

impl Default for ErrorCounts {
    fn default() -> Self {
        Self::ZERO
    }
}

impl ErrorCounts {
    /// No ERROR sent yet.
    pub const ZERO: Self = Self { counts: [0; CODES] };

    /// ERRORs sent with `code`.
    pub fn get(&self, code: ErrorCode) -> u64 {
        usize::from(code as u8)
            .checked_sub(1)
            .and_then(|i| self.counts.get(i))
            .copied()
            .unwrap_or(0)
    }

    /// ERRORs sent in all.
    pub fn total(&self) -> u64 {
        self.counts
            .iter()
            .fold(0u64, |sum, n| sum.saturating_add(*n))
    }

    /// Counts one ERROR.
    fn count(&mut self, code: ErrorCode) {
        let slot = usize::from(code as u8)
            .checked_sub(1)
            .and_then(|i| self.counts.get_mut(i));
        if let Some(n) = slot {
            *n = n.saturating_add(1);
        }
    }
}

/// Counters of a transfer server, over all its connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TransferStats {
    /// HELLO exchanges completed (HELLO_OK sent).
    pub sessions: u64,
    /// Uploads begun (PUT_READY sent).
    pub uploads: u64,
    /// Of those, uploads that resumed a partial (PUT_READY offset above 0).
    pub uploads_resumed: u64,
    /// Uploads committed (PUT_DONE sent).
    pub uploads_done: u64,
    /// Uploads that ended without a commit; their partial stays unless the error
    /// deleted it.
    pub uploads_abandoned: u64,
    /// Partials no upload held (left by clients that went away), discarded to
    /// make room for an upload that found none (`PROTOCOL.md` section 7).
    pub partials_discarded: u64,
    /// Downloads begun (GET_READY sent).
    pub downloads: u64,
    /// Downloads whose last DATA frame (or, at the file's end, GET_READY) went
    /// out whole to the connection.
    pub downloads_done: u64,
    /// Downloads stopped because the file was replaced or deleted meanwhile.
    pub downloads_changed: u64,
    /// File bytes received in DATA frames and stored.
    pub bytes_in: u64,
    /// File bytes sent in DATA frames.
    pub bytes_out: u64,
    /// Listings answered (LIST_END sent).
    pub listings: u64,
    /// STAT requests answered with STAT_OK.
    pub stats: u64,
    /// Files deleted (DELETE_OK sent).
    pub deletes: u64,
    /// DATA frames that arrived with no upload in progress and were dropped.
    pub data_discarded: u64,
    /// Messages that missed the request deadline.
    pub request_timeouts: u64,
    /// Uploads, downloads and listings ended for falling below the minimum rate.
    pub slow_transfers: u64,
    /// ERROR answers, by code.
    pub errors: ErrorCounts,
}

impl TransferStats {
    /// Nothing counted yet: `Default`, usable in a `const fn`.
    pub const ZERO: Self = Self {
        sessions: 0,
        uploads: 0,
        uploads_resumed: 0,
        uploads_done: 0,
        uploads_abandoned: 0,
        partials_discarded: 0,
        downloads: 0,
        downloads_done: 0,
        downloads_changed: 0,
        bytes_in: 0,
        bytes_out: 0,
        listings: 0,
        stats: 0,
        deletes: 0,
        data_discarded: 0,
        request_timeouts: 0,
        slow_transfers: 0,
        errors: ErrorCounts::ZERO,
    };
}

impl fmt::Display for TransferStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sessions: {}; uploads: {} begun ({} resumed), {} done, {} abandoned, {} B in, \
             {} partials discarded; \
             downloads: {} begun, {} done, {} changed, {} B out; listings: {}, stats: {}, \
             deletes: {}, stray DATA: {}, request timeouts: {}, too slow: {}; errors: {}",
            self.sessions,
            self.uploads,
            self.uploads_resumed,
            self.uploads_done,
            self.uploads_abandoned,
            self.bytes_in,
            self.partials_discarded,
            self.downloads,
            self.downloads_done,
            self.downloads_changed,
            self.bytes_out,
            self.listings,
            self.stats,
            self.deletes,
            self.data_discarded,
            self.request_timeouts,
            self.slow_transfers,
            self.errors.total()
        )
    }
}

#[cfg(test)]
mod stats_tests {
    use super::*;

    #[test]
    fn error_counts_are_kept_per_code_the_new_ones_too() {
        let mut counts = ErrorCounts::default();
        counts.count(ErrorCode::Busy);
        counts.count(ErrorCode::Busy);
        counts.count(ErrorCode::StorageFailure);
        counts.count(ErrorCode::BadMessage);
        counts.count(ErrorCode::RequestTimeout);
        counts.count(ErrorCode::TooSlow);
        assert_eq!(counts.get(ErrorCode::Busy), 2);
        assert_eq!(counts.get(ErrorCode::StorageFailure), 1);
        assert_eq!(counts.get(ErrorCode::BadMessage), 1);
        assert_eq!(counts.get(ErrorCode::RequestTimeout), 1);
        assert_eq!(counts.get(ErrorCode::TooSlow), 1);
        assert_eq!(counts.get(ErrorCode::Full), 0);
        assert_eq!(counts.total(), 6);
        for byte in 1..=u8::MAX {
            if let Some(code) = ErrorCode::from_u8(byte) {
                assert!(usize::from(byte) <= CODES, "{code} has no counter");
            }
        }
    }
}
