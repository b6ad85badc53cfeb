//! File transfer, the primer's "FTP" chapter: the server and the `no_std` client of
//! the protocol that `PROTOCOL.md` specifies.
//!
//! - [`TransferServer`] serves one connection of a [`TcpServer`](crate::net::TcpServer)
//!   pool: HELLO, PUT with resume, GET with resume, LIST, STAT and DELETE over any
//!   [`Storage`](crate::store::Storage). The pool's slots share one store through a
//!   [`SharedStore`], which also knows which names are being uploaded (a second
//!   upload of the same name is `Busy`) and keeps the server-wide [`TransferStats`].
//! - [`TransferClient`] is the other end, for a microcontroller that pushes a file
//!   (from any [`FileSource`]) or fetches one (into any [`FileSink`]) with a progress
//!   callback, resuming where an earlier attempt stopped and checking the CRC-32.
//!
//! Neither side ever holds more than one frame of file data: a connection costs its
//! frame receive storage plus one staging buffer of one frame body, both chosen by
//! the caller (arrays, or `static` slices on a microcontroller), plus a fixed part
//! of framing state, counters and the operation in progress: on a 32-bit
//! microcontroller 328 bytes for a server slot and 248 for the client (with slice
//! buffers; an upload operation adds 136 on the caller's stack).
//!
//! # Serving on tcp/2121
//!
//! Two connections at once over a RAM store (8 files, 64 KiB), frames up to 1 KiB
//! (each connection: 1 KiB + 4 of receive storage, as much again to stage answers):
//!
//! ```
//! use smoltcp::iface::{SocketSet, SocketStorage};
//! use smoltcp::socket::tcp;
//! use smoltcp::time::Instant;
//! use smolsock::net::{Service, TcpServer};
//! use smolsock::service::transfer::{SharedStore, TransferServer, UploadLease};
//! use smolsock::store::RamStore;
//!
//! # let mut storage: [SocketStorage; 2] = Default::default();
//! # let mut sockets = SocketSet::new(&mut storage[..]);
//! # let mut bufs = [[0u8; 2048]; 4];
//! # let [a, b, c, d] = &mut bufs;
//! # let h1 = sockets.add(tcp::Socket::new(tcp::SocketBuffer::new(&mut a[..]), tcp::SocketBuffer::new(&mut b[..])));
//! # let h2 = sockets.add(tcp::Socket::new(tcp::SocketBuffer::new(&mut c[..]), tcp::SocketBuffer::new(&mut d[..])));
//! let shared = SharedStore::new(RamStore::<8, 65_536>::new(), [UploadLease::EMPTY; 2]);
//! let slot = || TransferServer::new(&shared, [0u8; 1028], [0u8; 1028]);
//! let mut server = TcpServer::new(2121, [h1, h2], [slot()?, slot()?]);
//! server.poll(&mut sockets, Instant::ZERO); // in the main loop, after iface.poll
//! println!("{}", shared.stats());
//! # Ok::<(), smolsock::service::transfer::SetupError>(())
//! ```
//!
//! On Linux, serve a directory instead, with the protocol's default 64 KiB frames:
//! `SharedStore::new(DirStore::open(root, DirLimits::DEFAULT)?, [UploadLease::EMPTY; 4])`
//! and `TransferServer::new(&shared, vec![0; 65_540], vec![0; 65_536])`.
//!
//! The receive storage decides the largest frame body the server announces
//! (`len - 4`); the staging buffer decides the largest DATA frame it sends. The
//! server's [`ServerConfig`](crate::net::ServerConfig) idle timeout (60 s by
//! default) is the protocol's idle timeout: a connection that moves no byte for
//! that long is reset, and any upload it had stays as a partial for a resume.

mod client;
mod server;

pub use client::{
    ClientError, DeleteFile, FileSink, FileSource, GetFile, ListFiles, LocalError, ProtocolError,
    PutFile, PutOptions, SliceSink, StatFile, TransferClient,
};
pub use server::{SetupError, SharedStore, TransferServer, UploadLease};

use core::fmt;

use crate::wire::transfer::ErrorCode;

/// How many ERROR answers of each code a server sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ErrorCounts {
    /// Indexed by code - 1 (codes 0x01 to 0x0F).
    counts: [u64; 15],
}

impl ErrorCounts {
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
    /// Downloads begun (GET_READY sent).
    pub downloads: u64,
    /// Downloads whose last DATA frame was queued.
    pub downloads_done: u64,
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
    /// ERROR answers, by code.
    pub errors: ErrorCounts,
}

impl fmt::Display for TransferStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} sessions; uploads: {} begun ({} resumed), {} done, {} abandoned, {} B in; \
             downloads: {} begun, {} done, {} B out; {} listings, {} stats, {} deletes, \
             {} stray DATA; {} errors",
            self.sessions,
            self.uploads,
            self.uploads_resumed,
            self.uploads_done,
            self.uploads_abandoned,
            self.bytes_in,
            self.downloads,
            self.downloads_done,
            self.bytes_out,
            self.listings,
            self.stats,
            self.deletes,
            self.data_discarded,
            self.errors.total()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_counts_are_kept_per_code() {
        let mut counts = ErrorCounts::default();
        counts.count(ErrorCode::Busy);
        counts.count(ErrorCode::Busy);
        counts.count(ErrorCode::StorageFailure);
        counts.count(ErrorCode::BadMessage);
        assert_eq!(counts.get(ErrorCode::Busy), 2);
        assert_eq!(counts.get(ErrorCode::StorageFailure), 1);
        assert_eq!(counts.get(ErrorCode::BadMessage), 1);
        assert_eq!(counts.get(ErrorCode::Full), 0);
        assert_eq!(counts.total(), 4);
    }
}
