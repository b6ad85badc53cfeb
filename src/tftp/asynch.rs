//! TFTP over any [`DatagramSocket`], async: a [`Client`] that runs gets and
//! puts, and a [`Server`] that serves one transfer at a time from a
//! [`SharedStore`], with time from an [`asynch::Clock`](crate::asynch::Clock).
//! No allocation and no runtime, as the stream adapter.
//!
//! The adapter moves datagrams and tells the session the time: it hands the
//! session what arrives from its peer, sends what it gives, and waits for the
//! next datagram racing the session's [`poll_timeout`](ServerTransfer::poll_timeout).
//! Socket errors end nothing: a send that fails is a packet lost (the session's
//! timer sends it again, or gives up), a receive that fails (a datagram longer
//! than the buffer) is counted in [`TftpStats::malformed`]. So every call ends by
//! the session's own clock, whatever the socket does.
//!
//! The server has two sockets: one on port 69 for requests, one for the
//! transfer, which it binds to a port of its own for each transfer (RFC 1350's
//! transfer ID, through [`TransferSocket`]), so that a late packet of one
//! transfer never reaches the next. A request that comes while a transfer runs
//! is answered with an ERROR saying the server is busy (a server that wants more
//! transfers at once runs more [`Server`]s, each with its own transfer socket,
//! behind one listening socket of its own making); a transfer that only repeats
//! its last ACK gives way to a new request, and so does a running one to another
//! request from its own client's port (the client has left it).

use super::Listened;
use super::packet::{DATA_HEADER_LEN, DEFAULT_BLOCK_SIZE, ErrorCode, MIN_BLOCK_SIZE};
use super::{
    ClientConfig, ClientGet, ClientPut, ClientSession, ServerConfig, ServerTransfer, TftpError,
    TftpStats, bump, emit_error, next_tid,
};
use crate::asynch::{Clock, DatagramSocket, Either, alarm, recv_from_until, select};
use crate::store::{FileName, Storage};
use crate::transfer::{FileSink, FileSource, SharedStore};
use crate::wire::crc32::crc32;

/// A TFTP client on one datagram socket, for transfers one after another.
///
/// Each transfer's request goes to `server` (port 69 as a rule); everything after
/// it goes to the port that answered, and a datagram from any other port is
/// answered ERROR 5 (an ERROR is never answered) and ignored. The buffer holds
/// one datagram and a byte more:
/// `5 +` the block size (517 bytes for RFC 1350's 512), so that a DATA longer
/// than a block, which some sockets cut to the buffer, is seen too long and
/// refused rather than stored cut. A get whose buffer is smaller asks for the
/// blocks it has room for (`blksize`), and ends with
/// [`TftpError::BlockSizeIgnored`] if the server ignores the option for a file
/// of at least that size. The buffer must also hold the request itself (the
/// name, the mode and the options asked for: about 30 bytes and the name);
/// a buffer with no room for it, or for blocks of 8 bytes, is refused at once
/// ([`TftpError::BufferTooSmall`]).
///
/// The transfers share the socket's port, so a datagram of one that comes late
/// (the server repeating a last DATA whose ACK it missed) may wait there when
/// the next begins. Before a transfer sends its request, whatever waits in the
/// socket is therefore refused: answered ERROR 5 (which also tells a server
/// still repeating itself to stop; an ERROR is not answered) and counted in
/// [`TftpStats::wrong_tid`].
/// One that arrives after the request, before the server's first answer, is
/// not told apart (a server may answer every transfer from the same port, so
/// the last transfer's port is no sign): [`with_dally`](Self::with_dally)
/// lets a server that missed the last ACK finish before the next transfer.
///
/// A transfer returns as soon as its outcome is known. With
/// [`with_dally`](Self::with_dally) a get then stays for its dally (see
/// [`ClientGet`]), acknowledging a repeated last block, so that a server that
/// missed the final ACK ends clean; the call returns when the dally is over.
#[must_use = "a client does nothing until a transfer is run on it"]
pub struct Client<'a, D: DatagramSocket + ?Sized> {
    socket: &'a mut D,
    server: D::Addr,
    buf: &'a mut [u8],
    dally: bool,
    peer: Option<D::Addr>,
    stats: TftpStats,
}

impl<D: DatagramSocket + ?Sized> core::fmt::Debug for Client<'_, D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.server)
            .field("peer", &self.peer)
            .field("dally", &self.dally)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<'a, D: DatagramSocket + ?Sized> Client<'a, D> {
    /// A client on `socket` (bound to any port), talking to `server`, with one
    /// datagram's buffer.
    pub const fn new(socket: &'a mut D, server: D::Addr, buf: &'a mut [u8]) -> Self {
        Self {
            socket,
            server,
            buf,
            dally: false,
            peer: None,
            stats: TftpStats::ZERO,
        }
    }

    /// Whether a get waits out its dally before it returns.
    pub const fn with_dally(mut self, dally: bool) -> Self {
        self.dally = dally;
        self
    }

    /// What the adapter saw outside the sessions: datagrams from a wrong port,
    /// receives that failed.
    pub const fn stats(&self) -> &TftpStats {
        &self.stats
    }

    /// The server's transfer port of the last transfer, once it answered.
    pub const fn peer(&self) -> Option<D::Addr> {
        self.peer
    }

    /// Reads `name` into `sink`; its size, or why not.
    pub async fn get<K, P, C>(
        &mut self,
        clock: &C,
        name: FileName,
        config: ClientConfig,
        sink: K,
        progress: P,
    ) -> Result<u64, TftpError>
    where
        K: FileSink,
        P: FnMut(u64, Option<u64>),
        C: Clock + ?Sized,
    {
        // Blocks that leave the buffer a byte to spare.
        let room = self.buf.len().saturating_sub(DATA_HEADER_LEN + 1);
        let room = u16::try_from(room).unwrap_or(u16::MAX);
        if room < MIN_BLOCK_SIZE {
            return Err(TftpError::BufferTooSmall);
        }
        let mut config = config;
        if config.block_size.unwrap_or(DEFAULT_BLOCK_SIZE) > room {
            config.block_size = Some(room);
        }
        let mut session = ClientGet::new(name, config, sink, progress);
        self.run(&mut session, clock).await
    }

    /// Writes `source` as `name`; its size, or why not.
    pub async fn put<F, P, C>(
        &mut self,
        clock: &C,
        name: FileName,
        config: ClientConfig,
        source: F,
        progress: P,
    ) -> Result<u64, TftpError>
    where
        F: FileSource,
        P: FnMut(u64, Option<u64>),
        C: Clock + ?Sized,
    {
        let mut session = ClientPut::new(name, config, source, progress);
        self.run(&mut session, clock).await
    }

    /// Drives `session` (a get or a put, just made) until its outcome, and with
    /// [`with_dally`](Self::with_dally) until [`is_done`](ClientSession::is_done).
    pub async fn run<S, C>(&mut self, session: &mut S, clock: &C) -> Result<u64, TftpError>
    where
        S: ClientSession + ?Sized,
        C: Clock + ?Sized,
    {
        self.peer = None;
        self.refuse_waiting(clock).await;
        let mut outcome = None;
        loop {
            let now = clock.now();
            if session.poll_timeout().is_some_and(|at| now >= at) {
                session.handle_timeout(now);
            }
            // Bounded: a session gives a window of datagrams at most, then 0.
            for _ in 0..u16::MAX {
                let n = session.transmit(self.buf, now);
                if n == 0 {
                    break;
                }
                let to = self.peer.unwrap_or(self.server);
                // A failed send is a lost packet: the session's timer copes.
                let _ = self
                    .socket
                    .send_to(self.buf.get(..n).unwrap_or_default(), to)
                    .await;
            }
            if outcome.is_none() {
                outcome = session.outcome();
            }
            if session.is_done() || (outcome.is_some() && !self.dally) {
                // A session whose outcome someone else took ends as one that
                // gave none.
                return outcome.unwrap_or(Err(TftpError::Unexpected));
            }
            let deadline = session.poll_timeout();
            let received = recv_from_until(self.socket, self.buf, clock, deadline).await;
            let (len, from) = match received {
                Ok(Some(got)) => got,
                Ok(None) => continue,
                Err(_) => {
                    bump(&mut self.stats.malformed);
                    continue;
                }
            };
            match self.peer {
                None if D::same_host(&from, &self.server) => self.peer = Some(from),
                Some(peer) if peer == from => {}
                _ => {
                    refuse_tid(self.socket, self.buf, len, from, &mut self.stats).await;
                    continue;
                }
            }
            session.receive(self.buf.get(..len).unwrap_or_default(), clock.now());
        }
    }
}

impl<D: DatagramSocket + ?Sized> Client<'_, D> {
    /// Refuses what waits in the socket before a transfer's request goes: it
    /// came from an earlier transfer (or from anyone), never from this one.
    async fn refuse_waiting<C: Clock + ?Sized>(&mut self, clock: &C) {
        // Bounded: a socket's queue holds a few datagrams, not this many.
        for _ in 0..u16::MAX {
            let waiting = recv_from_until(self.socket, self.buf, clock, Some(clock.now())).await;
            let (len, from) = match waiting {
                Ok(Some(got)) => got,
                Ok(None) => return,
                Err(_) => {
                    bump(&mut self.stats.malformed);
                    continue;
                }
            };
            refuse_tid(self.socket, self.buf, len, from, &mut self.stats).await;
        }
    }
}

/// Counts the datagram of `len` bytes in `buf` from `from`, which is not this
/// transfer's peer, in [`TftpStats::wrong_tid`], and answers it with ERROR 5
/// (written into `buf`) unless it is an ERROR itself.
async fn refuse_tid<D: DatagramSocket + ?Sized>(
    socket: &mut D,
    buf: &mut [u8],
    len: usize,
    from: D::Addr,
    stats: &mut TftpStats,
) {
    bump(&mut stats.wrong_tid);
    if super::is_error(buf.get(..len).unwrap_or_default()) {
        return;
    }
    let n = emit_error(buf, ErrorCode::UnknownTid, "unknown transfer ID");
    let _ = socket.send_to(buf.get(..n).unwrap_or_default(), from).await;
}

/// The transfer socket of a TFTP [`Server`]: a datagram socket that can move
/// to another local port. The server binds it to a port of its own for each
/// transfer (RFC 1350's transfer ID): a packet of an earlier transfer that
/// comes late (a client's DATA sent again) then finds no socket on its port,
/// where on the same port it would be taken for the next transfer's, when that
/// comes from the same client port.
///
/// Over embassy-net's `UdpSocket`: `close()`, then `bind(port)`.
pub trait TransferSocket: DatagramSocket {
    /// Binds the socket to local `port` in place of the port it had, dropping
    /// whatever waits on the old one; `false` if it cannot (the port is taken,
    /// or the socket cannot be bound).
    fn rebind(&mut self, port: u16) -> bool;
}

impl<T: TransferSocket + ?Sized> TransferSocket for &mut T {
    fn rebind(&mut self, port: u16) -> bool {
        (**self).rebind(port)
    }
}

/// Ports a request tries before it is refused for want of one.
const REBIND_TRIES: usize = 4;

/// A TFTP server with one transfer at a time over a [`SharedStore`]: requests
/// on a listening socket (port 69), each transfer on a port of its own
/// ([`TransferSocket`]).
///
/// A request from the client port of the running transfer is a repeat of it
/// (counted in [`TftpStats::duplicates`], and ignored) only if it is the same
/// request; another one means the client has left that transfer (a get whose
/// final ACK was lost, the client asking for its next file), which ends, and
/// the new one begins on a new port. A request that finds no port the
/// transfer socket can be bound to is refused with an ERROR (counted in
/// [`TftpStats::refused`]). A datagram to the transfer socket from anyone but
/// the running transfer's client, or after the transfer ended (a late one of
/// it), is counted in [`TftpStats::wrong_tid`] and answered ERROR 5, unless it
/// is an ERROR itself (which is never answered).
///
/// Two buffers: `request` for what comes to port 69 (516 bytes hold any RFC
/// request), `datagram` for the transfer: `4 +` the largest block a read is
/// granted, and `5 +` the largest an upload is (517 bytes for RFC 1350's 512),
/// a DATA and a byte to spare, so that a longer DATA is seen too long even where
/// the socket cuts it; blocks are also capped by `config.max_block_size`. A
/// request without `blksize` is refused when 512-byte blocks do not fit.
#[must_use = "a server does nothing until it is run"]
pub struct Server<'s, S, A> {
    transfer: ServerTransfer<'s, S>,
    peer: Option<A>,
    /// The CRC-32 of the request that began the transfer: a repeat of it is
    /// a duplicate.
    request: u32,
    /// The transfer socket's port: 0 before the first transfer.
    port: u16,
    stats: TftpStats,
}

impl<S, A: core::fmt::Debug> core::fmt::Debug for Server<'_, S, A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Server")
            .field("transfer", &self.transfer)
            .field("peer", &self.peer)
            .field("port", &self.port)
            .field("stats", &self.stats)
            .finish()
    }
}

impl<'s, S: Storage, A: Copy + PartialEq> Server<'s, S, A> {
    /// A server of `shared` with `config`.
    pub const fn new(shared: &'s SharedStore<S>, config: ServerConfig) -> Self {
        Self {
            transfer: ServerTransfer::new(shared, config),
            peer: None,
            request: 0,
            port: 0,
            stats: TftpStats::ZERO,
        }
    }

    /// Every counter: the listener's and the transfers'.
    pub fn stats(&self) -> TftpStats {
        let mut sum = self.stats;
        sum.accumulate(self.transfer.stats());
        sum
    }

    /// Whether a transfer is in progress (or its last ACK is still repeated).
    pub const fn is_active(&self) -> bool {
        self.transfer.is_active()
    }

    /// Serves requests from `listen` with transfers on `port`, bound to a port
    /// of its own for each transfer, for good.
    ///
    /// The future may be dropped at any await (raced against other work in a
    /// `select`, say) and `run` called again: the transfer in progress stays
    /// with the server, and the next `run` carries it on, its timers counting
    /// the time between (a datagram it was sending when dropped is a lost one,
    /// which the transfer sends again). To stop, drop the future and call
    /// [`end`](Self::end): a transfer in progress ends there, an upload leaving
    /// no file.
    pub async fn run<L, T, C>(
        &mut self,
        listen: &mut L,
        port: &mut T,
        clock: &C,
        request: &mut [u8],
        datagram: &mut [u8],
    ) -> !
    where
        L: DatagramSocket<Addr = A> + ?Sized,
        T: TransferSocket<Addr = A> + ?Sized,
        C: Clock + ?Sized,
    {
        let max_block = self
            .transfer
            .config()
            .max_block_size
            .min(ServerConfig::block_size_for(datagram.len()));
        self.transfer.set_max_block_size(max_block);
        // Uploads keep a byte to spare: a DATA longer than a block, which some
        // sockets cut to the buffer, is then seen too long and refused.
        let max_write = ServerConfig::block_size_for(datagram.len().saturating_sub(1));
        self.transfer.set_max_write_block_size(max_write);
        loop {
            let now = clock.now();
            if self.transfer.poll_timeout().is_some_and(|at| now >= at) {
                self.transfer.handle_timeout(now);
            }
            if let Some(peer) = self.peer {
                for _ in 0..u16::MAX {
                    let n = self.transfer.transmit(datagram, now);
                    if n == 0 {
                        break;
                    }
                    // A failed send is a lost packet: the transfer's timer copes.
                    let _ = port
                        .send_to(datagram.get(..n).unwrap_or_default(), peer)
                        .await;
                }
                if !self.transfer.is_active() {
                    if let Some(outcome) = self.transfer.outcome() {
                        match outcome {
                            Ok(bytes) => crate::macros::net_info!("tftp: done, {} B", bytes),
                            Err(e) => crate::macros::net_info!("tftp: failed: {}", e),
                        }
                    }
                    self.peer = None;
                }
            }
            let deadline = self.transfer.poll_timeout();
            // The transfer socket is read from its first transfer on, also
            // between transfers: a late datagram of the last one is answered
            // and counted (ERROR 5, `wrong_tid`), not left in the socket.
            let waited = if self.peer.is_some() {
                // The running transfer's datagrams first: a flood of requests
                // at port 69 cannot starve it.
                select(
                    port.recv_from(datagram),
                    select(listen.recv_from(request), alarm(clock, deadline, now)),
                )
                .await
            } else {
                // Between transfers, requests first: a flood of datagrams at
                // the old port cannot starve them.
                let bound = self.port != 0;
                let late = async {
                    if bound {
                        port.recv_from(datagram).await
                    } else {
                        core::future::pending().await
                    }
                };
                match select(
                    select(listen.recv_from(request), alarm(clock, deadline, now)),
                    late,
                )
                .await
                {
                    Either::First(either) => Either::Second(either),
                    Either::Second(late) => Either::First(late),
                }
            };
            let now = clock.now();
            match waited {
                Either::Second(Either::First(Ok((len, from)))) => {
                    self.request(listen, port, request, len, from, now).await;
                }
                Either::First(Ok((len, from))) => {
                    if Some(from) == self.peer {
                        self.transfer
                            .receive(datagram.get(..len).unwrap_or_default(), now);
                    } else {
                        refuse_tid(port, datagram, len, from, &mut self.stats).await;
                    }
                }
                Either::First(Err(_)) | Either::Second(Either::First(Err(_))) => {
                    bump(&mut self.stats.malformed);
                }
                Either::Second(Either::Second(())) => {}
            }
        }
    }

    /// A datagram to port 69.
    async fn request<L, T>(
        &mut self,
        listen: &mut L,
        port: &mut T,
        buf: &mut [u8],
        len: usize,
        from: A,
        now: crate::time::Instant,
    ) where
        L: DatagramSocket<Addr = A> + ?Sized,
        T: TransferSocket<Addr = A> + ?Sized,
    {
        // Each ERROR is written out where it is sent: one async helper for
        // them made the embassy firmware's TFTP build 552 B larger.
        if let Listened::Stray { answer } = Listened::of(buf.get(..len).unwrap_or_default()) {
            bump(&mut self.stats.malformed);
            if answer {
                let (code, message) = Listened::STRAY;
                let n = emit_error(buf, code, message);
                let _ = listen.send_to(buf.get(..n).unwrap_or_default(), from).await;
            }
            return;
        }
        let datagram = buf.get(..len).unwrap_or_default();
        let crc = crc32(datagram);
        let running = self.transfer.is_active() && !self.transfer.is_dallying();
        if running && self.peer == Some(from) && self.request == crc {
            // The client repeated its request: its transfer runs.
            bump(&mut self.stats.duplicates);
            return;
        }
        if running && self.peer != Some(from) {
            bump(&mut self.stats.pool_full);
            let n = emit_error(
                buf,
                ErrorCode::NotDefined,
                "server busy: a transfer is running, try again later",
            );
            let _ = listen.send_to(buf.get(..n).unwrap_or_default(), from).await;
            return;
        }
        // A port of its own for this transfer (the one before, if any, ends
        // here: a client asking again from its port has left it).
        self.end(now);
        let bound = (0..REBIND_TRIES).any(|_| {
            self.port = next_tid(self.port, now.total_micros());
            port.rebind(self.port)
        });
        if !bound {
            bump(&mut self.stats.refused);
            bump(&mut self.stats.failed);
            crate::macros::net_warn!("tftp: no port to bind for a transfer");
            let n = emit_error(
                buf,
                ErrorCode::NotDefined,
                "no port for the transfer, try again",
            );
            let _ = listen.send_to(buf.get(..n).unwrap_or_default(), from).await;
            return;
        }
        self.peer = Some(from);
        self.request = crc;
        self.transfer.start(datagram, now);
    }

    /// Ends the transfer in progress, if any (an upload leaves no file).
    pub fn end(&mut self, now: crate::time::Instant) {
        self.transfer.end(now);
        self.peer = None;
    }
}
