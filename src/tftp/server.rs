//! One client's transfer on the server: an RRQ served from the store, or a WRQ
//! written to a partial upload and committed when its last block is in.

use super::flow::{Acked, Received, Receiver, Sender, Timer, data_block, wire_block};
use super::packet::{
    DATA_HEADER_LEN, DEFAULT_BLOCK_SIZE, MIN_BLOCK_SIZE, Mode, Options, Packet, RequestKind,
};
use super::{DEFAULT_MAX_TRIES, DEFAULT_TIMEOUT, TftpError, TftpStats, add, bump, emit_error};
use crate::store::{FileName, Storage, StoreError, Upload};
use crate::time::{Duration, Instant, at_rate, sooner};
use crate::transfer::SharedStore;
use crate::wire::crc32::Crc32;

/// How much an upload of unknown size reserves at least each time it grows: the
/// store is asked for room in steps that double, never one block at a time.
const GROW_AT_LEAST: u64 = 64 * 1024;

/// What the server allows a transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ServerConfig {
    /// The largest `blksize` granted: the adapter's datagram buffer less 4.
    /// A client asking for more is granted this. A request without the option
    /// gets RFC 1350's 512-byte blocks, and is refused when this is below 512.
    pub max_block_size: u16,
    /// The largest `windowsize` granted.
    pub max_window: u16,
    /// The retransmission timeout when the client asks for none.
    pub timeout: Duration,
    /// Retransmissions before a silent peer's transfer ends.
    pub max_tries: u8,
    /// The longest `timeout` option granted: a client asking for more is not
    /// acknowledged it and gets [`timeout`](Self::timeout), so no client holds a
    /// slot for long.
    pub max_timeout: Duration,
    /// The slowest average rate a transfer may keep, bytes per second (0 is
    /// taken as 1). A transfer has the time a silent peer is given (the
    /// timeout, once per try) from its request, and a second more for every
    /// `min_rate` bytes acknowledged or received; past that it ends with an
    /// ERROR. However slowly a client answers each block, it cannot hold its
    /// slot for longer than the file's size allows at this rate.
    pub min_rate: u32,
}

impl ServerConfig {
    /// 512-byte blocks at most (buffers of 516 bytes), windows up to 16, a 1 s
    /// timeout (up to 10 s if asked), 5 retransmissions and 500 B/s at least.
    pub const DEFAULT: Self = Self {
        max_block_size: DEFAULT_BLOCK_SIZE,
        max_window: 16,
        timeout: DEFAULT_TIMEOUT,
        max_tries: DEFAULT_MAX_TRIES,
        max_timeout: Duration::from_secs(10),
        min_rate: 500,
    };

    /// The largest block a buffer of `len` bytes carries in a DATA, within
    /// RFC 2348's range (0 when it cannot hold the smallest).
    pub fn block_size_for(len: usize) -> u16 {
        let block = len.saturating_sub(DATA_HEADER_LEN);
        u16::try_from(block)
            .unwrap_or(super::packet::MAX_BLOCK_SIZE)
            .min(super::packet::MAX_BLOCK_SIZE)
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What a datagram to the listening port (69) is: only a request may take a
/// transfer slot, so no stray packet can displace a transfer (a dallying upload's
/// slot is taken over by the next request, never by an ACK).
#[cfg(any(feature = "smoltcp", feature = "embedded-io-async"))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Listened {
    /// An RRQ or a WRQ (its fields are the transfer's to check).
    Request,
    /// Anything else: answered with an ERROR, unless it is one.
    Stray {
        /// Whether to answer it.
        answer: bool,
    },
}

#[cfg(any(feature = "smoltcp", feature = "embedded-io-async"))]
impl Listened {
    /// Tells `datagram` apart by its opcode.
    pub(crate) fn of(datagram: &[u8]) -> Self {
        match datagram {
            [0, 1 | 2, ..] => Self::Request,
            [0, 5, ..] => Self::Stray { answer: false },
            _ => Self::Stray { answer: true },
        }
    }

    /// The ERROR a stray datagram is answered with.
    pub(crate) const STRAY: (super::ErrorCode, &'static str) = (
        super::ErrorCode::IllegalOperation,
        "only read and write requests go to this port",
    );
}

/// Which way a transfer goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TransferKind {
    /// The client reads (RRQ).
    Read,
    /// The client writes (WRQ).
    Write,
}

#[derive(Clone, Copy, Debug)]
enum State {
    Idle,
    Reading {
        name: FileName,
        version: u64,
        sender: Sender,
        /// What position 0 sends, when options were granted.
        oack: Options,
    },
    Writing {
        upload: Upload,
        lease: usize,
        receiver: Receiver,
        crc: Crc32,
        /// Whether ACK 0 is an OACK of these options.
        oack: Option<Options>,
    },
    /// The upload is committed and its last ACK sent: a repeat of the last DATA
    /// (our ACK was lost) is answered again, until `until`. Each of the first
    /// `repeats_left` repeats puts `until` off by a dally, so that a client
    /// slower than us is answered to its last try, and one that repeats for
    /// ever does not hold the slot.
    Dallying {
        last: u16,
        until: Instant,
        ack_due: bool,
        repeats_left: u8,
    },
    /// An ERROR goes out, then the transfer is over.
    Failing {
        error: TftpError,
    },
    Done,
}

/// One client's transfer: an RRQ or a WRQ, from request to last ACK.
///
/// A server keeps one per transfer slot and reuses it:
/// [`start`](Self::start) with the request datagram, then datagrams from that
/// client in [`receive`](Self::receive), datagrams out of
/// [`transmit`](Self::transmit) until it returns 0, and
/// [`handle_timeout`](Self::handle_timeout) when [`poll_timeout`](Self::poll_timeout)
/// has passed, until [`is_active`](Self::is_active) is `false`.
#[must_use = "a transfer does nothing unless driven"]
pub struct ServerTransfer<'s, S> {
    shared: &'s SharedStore<S>,
    config: ServerConfig,
    state: State,
    timer: Timer,
    /// When the request came: the minimum rate counts from there.
    began: Instant,
    kind: Option<TransferKind>,
    outcome: Option<Result<u64, TftpError>>,
    stats: TftpStats,
    /// The largest block an upload is granted: the adapter's receive buffer
    /// less a DATA header and a byte to spare, where its socket may cut a
    /// longer datagram to the buffer (a read only receives ACKs).
    max_write_block: u16,
}

/// A slot dropped mid-upload (never ended: its task cancelled, say) gives its
/// lease back, or the file's name would stay busy and the lease taken for as
/// long as the store is shared.
impl<S> Drop for ServerTransfer<'_, S> {
    fn drop(&mut self) {
        if let State::Writing { lease, .. } = self.state {
            self.shared.release(lease);
        }
    }
}

impl<S> core::fmt::Debug for ServerTransfer<'_, S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ServerTransfer")
            .field("config", &self.config)
            .field("state", &self.state)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<'s, S: Storage> ServerTransfer<'s, S> {
    /// An idle transfer slot over `shared`.
    pub const fn new(shared: &'s SharedStore<S>, config: ServerConfig) -> Self {
        Self {
            shared,
            config,
            state: State::Idle,
            timer: Timer::new(config.timeout, config.max_tries),
            began: Instant::ZERO,
            kind: None,
            outcome: None,
            stats: TftpStats::ZERO,
            max_write_block: u16::MAX,
        }
    }

    /// The counters of every transfer this slot ran.
    pub const fn stats(&self) -> &TftpStats {
        &self.stats
    }

    /// The configuration.
    pub const fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The retransmission timeout in force: the one granted to the client
    /// (RFC 2349's `timeout` option), else the configuration's.
    pub const fn timeout(&self) -> Duration {
        self.timer.timeout
    }

    /// Changes the largest `blksize` granted from the next request on (an
    /// adapter lowers it for a peer whose path carries less, such as IPv6 on
    /// the same MTU).
    pub fn set_max_block_size(&mut self, max: u16) {
        self.config.max_block_size = max;
    }

    /// Caps the blocks of uploads (WRQ) at `max`, below the reads' limit: for
    /// an adapter whose socket cuts a datagram to its buffer, so that the byte
    /// to spare shows a DATA longer than a block.
    #[cfg(feature = "embedded-io-async")]
    pub(crate) fn set_max_write_block_size(&mut self, max: u16) {
        self.max_write_block = max;
    }

    /// Whether a transfer is in progress (or its last packets still go out).
    pub const fn is_active(&self) -> bool {
        !matches!(self.state, State::Idle | State::Done)
    }

    /// Whether the transfer only repeats its last ACK for a client that may have
    /// missed it: a server short of slots may take this one for a new request.
    pub const fn is_dallying(&self) -> bool {
        matches!(self.state, State::Dallying { .. })
    }

    /// Which way the current (or last) transfer goes.
    pub const fn kind(&self) -> Option<TransferKind> {
        self.kind
    }

    /// How the last transfer ended, once it has: the bytes moved, or why not.
    /// Taken once.
    pub fn outcome(&mut self) -> Option<Result<u64, TftpError>> {
        self.outcome.take()
    }

    /// A new transfer begins with the request `datagram` (an RRQ or a WRQ sent
    /// to port 69). Anything else is answered with an ERROR, but an ERROR
    /// (even one that does not parse), which is only counted in `malformed`:
    /// no transfer begins.
    pub fn start(&mut self, datagram: &[u8], now: Instant) {
        self.end(now);
        self.outcome = None;
        self.kind = None;
        if super::is_error(datagram) {
            bump(&mut self.stats.malformed);
            return;
        }
        self.timer = Timer::new(self.config.timeout, self.config.max_tries);
        self.began = now;
        self.state = match Packet::parse(datagram) {
            Ok(Packet::Request {
                kind,
                filename,
                mode,
                options,
            }) => self.request(kind, filename, mode, options),
            Ok(_) => {
                bump(&mut self.stats.malformed);
                State::Failing {
                    error: TftpError::Unexpected,
                }
            }
            Err(e) => {
                bump(&mut self.stats.malformed);
                State::Failing {
                    error: TftpError::Malformed(e),
                }
            }
        };
        // Armed from the request on: even a first answer that never leaves is
        // timed.
        self.timer.arm(now);
        if let State::Failing { error } = self.state {
            // A transfer that ends before it began: failed, with its outcome.
            bump(&mut self.stats.refused);
            bump(&mut self.stats.failed);
            self.outcome = Some(Err(error));
            crate::macros::net_debug!("tftp: request refused: {}", error);
        }
    }

    fn request(
        &mut self,
        kind: RequestKind,
        filename: &[u8],
        mode: Mode,
        options: Options,
    ) -> State {
        let failing = |error| State::Failing { error };
        match kind {
            RequestKind::Read => bump(&mut self.stats.reads),
            RequestKind::Write => bump(&mut self.stats.writes),
        }
        self.kind = Some(match kind {
            RequestKind::Read => TransferKind::Read,
            RequestKind::Write => TransferKind::Write,
        });
        if mode != Mode::Octet {
            return failing(TftpError::Mode);
        }
        // Clients often send "/name": one plain name below the root, nothing more.
        let bare = filename
            .iter()
            .position(|&b| b != b'/')
            .and_then(|at| filename.get(at..))
            .unwrap_or(filename);
        let name = match FileName::from_bytes(bare) {
            Ok(name) => name,
            Err(e) => return failing(TftpError::BadName(e)),
        };
        let mut granted = Options::NONE;
        let max_block = match kind {
            RequestKind::Read => self.config.max_block_size,
            RequestKind::Write => self.config.max_block_size.min(self.max_write_block),
        }
        .max(MIN_BLOCK_SIZE);
        granted.block_size = options.block_size.map(|b| b.min(max_block));
        granted.window_size = options
            .window_size
            .map(|w| w.min(self.config.max_window.max(1)));
        if let Some(secs) = options.timeout_secs {
            let asked = Duration::from_secs(u64::from(secs));
            if asked <= self.config.max_timeout {
                granted.timeout_secs = Some(secs);
                self.timer.timeout = asked;
            }
        }
        // Without the option, RFC 1350's 512 bytes: any shorter block would be
        // read as the last. A server that cannot send or take 512 (a small
        // buffer or MTU) refuses the request, rather than end a file early.
        let block_size = match granted.block_size {
            Some(granted) => granted,
            None if max_block >= DEFAULT_BLOCK_SIZE => DEFAULT_BLOCK_SIZE,
            None => return failing(TftpError::NeedsBlockSize { max: max_block }),
        };
        let window = granted.window_size.unwrap_or(1);
        let result = match kind {
            RequestKind::Read => self.start_read(name, options, granted, block_size, window),
            RequestKind::Write => self.start_write(name, options, granted, block_size, window),
        };
        result.unwrap_or_else(failing)
    }

    fn start_read(
        &mut self,
        name: FileName,
        asked: Options,
        mut granted: Options,
        block_size: u16,
        window: u16,
    ) -> Result<State, TftpError> {
        let (stat, version) = self
            .shared
            .store(|s| Ok::<_, StoreError>((s.stat(&name)?, s.version(&name)?)))?;
        // curl refuses an OACK with `tsize 0` ("invalid tsize"), so an empty
        // file's size goes unsaid: the option is the server's to leave out.
        if asked.transfer_size.is_some() && stat.size > 0 {
            granted.transfer_size = Some(stat.size);
        }
        crate::macros::net_debug!(
            "tftp: RRQ {}: {} B in blocks of {}, window {}",
            name,
            stat.size,
            block_size,
            window
        );
        Ok(State::Reading {
            name,
            version,
            sender: Sender::new(stat.size, block_size, window, !granted.is_empty()),
            oack: granted,
        })
    }

    fn start_write(
        &mut self,
        name: FileName,
        asked: Options,
        mut granted: Options,
        block_size: u16,
        window: u16,
    ) -> Result<State, TftpError> {
        if self.shared.uploading(&name) {
            return Err(TftpError::Busy);
        }
        let lease = self.shared.claim(&name).ok_or(TftpError::Busy)?;
        // With `tsize` the store reserves the whole file now, so an upload that
        // cannot fit is refused before its first block; without, it grows.
        let size = asked.transfer_size.unwrap_or(0);
        let shared = self.shared;
        let upload = match shared.store(|s| shared.begin_upload_in(s, &name, size, false)) {
            Ok(upload) => upload,
            Err(e) => {
                self.shared.release(lease);
                return Err(e.into());
            }
        };
        granted.transfer_size = asked.transfer_size;
        crate::macros::net_debug!(
            "tftp: WRQ {}: blocks of {}, window {}",
            name,
            block_size,
            window
        );
        let mut receiver = Receiver::new(block_size, window);
        receiver.ack_due = true;
        Ok(State::Writing {
            upload,
            lease,
            receiver,
            crc: Crc32::new(),
            oack: (!granted.is_empty()).then_some(granted),
        })
    }

    /// A datagram from this transfer's client.
    pub fn receive(&mut self, datagram: &[u8], now: Instant) {
        let running = matches!(self.state, State::Reading { .. } | State::Writing { .. });
        let packet = match Packet::parse(datagram) {
            Ok(packet) => packet,
            Err(e) => {
                bump(&mut self.stats.malformed);
                if running {
                    // An ERROR, even one that does not parse, is never answered.
                    self.fail(TftpError::Malformed(e), !super::is_error(datagram), now);
                }
                return;
            }
        };
        if let Packet::Error { code, .. } = packet {
            // The client gave up: no answer to an ERROR.
            if running {
                self.fail(TftpError::Peer(code), false, now);
            } else if matches!(self.state, State::Dallying { .. }) {
                self.state = State::Done;
            }
            return;
        }
        let dally = self.dally();
        match (&mut self.state, packet) {
            (State::Reading { sender, .. }, Packet::Ack { block }) => {
                let size = sender.size;
                match sender.on_ack(block) {
                    Acked::Progress => self.timer.progress(),
                    Acked::Complete => self.finish(Ok(size)),
                    Acked::Ignored => bump(&mut self.stats.duplicates),
                }
            }
            (State::Writing { .. }, Packet::Data { block, data }) => self.on_data(block, data, now),
            (
                State::Dallying {
                    last,
                    until,
                    ack_due,
                    repeats_left,
                },
                Packet::Data { block, .. },
            ) => {
                bump(&mut self.stats.duplicates);
                if block == *last {
                    *ack_due = true;
                    if let Some(left) = repeats_left.checked_sub(1) {
                        *repeats_left = left;
                        *until = now.saturating_add(dally);
                    }
                }
            }
            (State::Idle | State::Done | State::Failing { .. } | State::Dallying { .. }, _) => {
                bump(&mut self.stats.malformed);
            }
            _ => {
                bump(&mut self.stats.malformed);
                self.fail(TftpError::Unexpected, true, now);
            }
        }
    }

    fn on_data(&mut self, block: u16, data: &[u8], now: Instant) {
        let State::Writing {
            upload,
            receiver,
            crc,
            ..
        } = &mut self.state
        else {
            return;
        };
        match receiver.classify(block, data.len()) {
            Received::TooLong => {
                bump(&mut self.stats.malformed);
                let block_size = receiver.block_size;
                self.fail(
                    TftpError::BlockTooLong {
                        len: data.len(),
                        block_size,
                    },
                    true,
                    now,
                );
            }
            Received::InOrder { last } => {
                crc.update(data);
                let shared = self.shared;
                let stored = shared.store(|s| {
                    make_room(shared, s, upload, data.len())?;
                    s.append(upload, data)?;
                    if last {
                        // Exactly the bytes that came: the reservation shrinks to them.
                        if upload.size() != upload.written() {
                            *upload = s.begin_upload(upload.name(), upload.written(), true)?;
                        }
                        s.commit(upload, crc.finish())?;
                    }
                    Ok::<_, StoreError>(())
                });
                if let Err(e) = stored {
                    self.fail(e.into(), true, now);
                    return;
                }
                receiver.accept(data.len(), last);
                add(&mut self.stats.bytes_received, data.len());
                self.timer.progress();
                self.timer.arm(now);
                if last {
                    let bytes = receiver.bytes;
                    let last_block = block;
                    self.finish(Ok(bytes));
                    // The last ACK goes out from the dally, and again for every
                    // repeat of the last DATA (our ACK was lost).
                    self.state = State::Dallying {
                        last: last_block,
                        until: now.saturating_add(self.dally()),
                        ack_due: true,
                        repeats_left: self.timer.max_tries.saturating_add(1),
                    };
                }
            }
            Received::Duplicate => {
                bump(&mut self.stats.duplicates);
                // The sender missed our ACK: say again where we are. Its tries
                // for the next block begin when it has it, and so do ours.
                if block == wire_block(receiver.received) {
                    receiver.ack_due = true;
                    self.timer.repeated(now);
                }
            }
            // RFC 7440: a block was lost; ACK the last one in order at once.
            // Ahead of a block that was lost: dropped (counted), and the ACK
            // of the last block in order asks for the rest again.
            Received::Gap => {
                bump(&mut self.stats.malformed);
                receiver.ack_due = true;
            }
        }
    }

    /// Writes the next datagram to send into `buf`; returns its length, 0 when
    /// there is nothing to send now.
    pub fn transmit(&mut self, buf: &mut [u8], now: Instant) -> usize {
        match &mut self.state {
            State::Idle | State::Done => 0,
            State::Failing { error } => {
                let (code, message) = error.to_packet();
                let n = emit_error(buf, code, message);
                self.state = State::Done;
                n
            }
            State::Dallying { last, ack_due, .. } => {
                if !core::mem::take(ack_due) {
                    return 0;
                }
                Packet::Ack { block: *last }.emit(buf).unwrap_or(0)
            }
            State::Writing { receiver, oack, .. } => {
                if !receiver.ack_due {
                    return 0;
                }
                let packet = match oack {
                    Some(options) if receiver.received == 0 => Packet::Oack { options: *options },
                    _ => Packet::Ack {
                        block: wire_block(receiver.received),
                    },
                };
                let Ok(n) = packet.emit(buf) else {
                    self.fail(TftpError::BufferTooSmall, false, now);
                    return 0;
                };
                receiver.acked();
                self.timer.arm_unless_armed(now);
                if self.timer.resent() {
                    bump(&mut self.stats.retransmits);
                }
                n
            }
            State::Reading {
                name,
                version,
                sender,
                oack,
            } => {
                let Some(position) = sender.next_position() else {
                    return 0;
                };
                let sent = if position == 0 {
                    Packet::Oack { options: *oack }
                        .emit(buf)
                        .map_err(|_| TftpError::BufferTooSmall)
                } else {
                    let (name, version) = (*name, *version);
                    let (offset, len) = sender.block(position);
                    read_block(self.shared, &name, version, position, offset, len, buf)
                };
                match sent {
                    Ok(n) => {
                        // Sent before: after a timeout, or after an ACK inside
                        // the window (RFC 7440), every one of them is counted.
                        let again = position < sender.sent_top;
                        sender.sent();
                        if self.timer.resent() | again {
                            bump(&mut self.stats.retransmits);
                        }
                        if position != 0 {
                            add(
                                &mut self.stats.bytes_sent,
                                n.saturating_sub(DATA_HEADER_LEN),
                            );
                        }
                        self.timer.arm(now);
                        n
                    }
                    Err(e) => {
                        self.fail(e, true, now);
                        self.transmit(buf, now)
                    }
                }
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Reading { .. } | State::Writing { .. } => {
                sooner(self.timer.deadline, self.rate_deadline())
            }
            State::Dallying { until, .. } => Some(until),
            State::Failing { .. } => self.timer.deadline,
            State::Idle | State::Done => None,
        }
    }

    /// When the transfer under way must be done by, at the minimum rate: the
    /// time a silent peer is given, from the request, and a second more for
    /// every `min_rate` bytes acknowledged (a read) or received (a write).
    /// None while a packet of ours waits for its answer past a timeout.
    fn rate_deadline(&self) -> Option<Instant> {
        // A peer gone silent is the retransmission timer's to time out.
        if self.timer.tries > 0 {
            return None;
        }
        let moved = match &self.state {
            State::Reading { sender, .. } => sender.done_bytes(),
            State::Writing { receiver, .. } => receiver.bytes,
            _ => return None,
        };
        Some(
            self.began
                .saturating_add(self.dally())
                .saturating_add(at_rate(moved, self.config.min_rate)),
        )
    }

    /// Time has passed: retransmit what went unanswered, or give up.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.retry_or_give_up(now);
        // A silent peer is timed out first; one that answers, too slowly, here.
        if self.rate_deadline().is_some_and(|deadline| now >= deadline) {
            bump(&mut self.stats.too_slow);
            crate::macros::net_info!("tftp: the transfer fell below the minimum rate");
            let rate = self.config.min_rate.max(1);
            self.fail(TftpError::TooSlow { rate }, true, now);
        }
    }

    fn retry_or_give_up(&mut self, now: Instant) {
        match &mut self.state {
            State::Dallying { until, .. } if now >= *until => self.state = State::Done,
            State::Reading { sender, .. } if self.timer.is_due(now) => {
                if self.timer.retry(now) {
                    sender.rewind();
                } else {
                    self.timed_out(now);
                }
            }
            State::Writing { receiver, .. } if self.timer.is_due(now) => {
                if self.timer.retry(now) {
                    receiver.ack_due = true;
                } else {
                    self.timed_out(now);
                }
            }
            // The ERROR could not go out within a timeout: the transfer ends
            // without it (its outcome is in already).
            State::Failing { .. } if self.timer.is_due(now) => self.state = State::Done,
            _ => {}
        }
    }

    /// How long the final ACK is repeated for: as long as the client may resend
    /// its last DATA.
    const fn dally(&self) -> Duration {
        self.timer
            .timeout
            .saturating_mul(self.timer.max_tries.saturating_add(1) as u32)
    }

    fn timed_out(&mut self, now: Instant) {
        bump(&mut self.stats.timeouts);
        crate::macros::net_debug!("tftp: the client stopped answering");
        self.fail(TftpError::TimedOut, true, now);
    }

    /// The transfer is dropped (the server stops, or reuses the slot): an upload
    /// in progress is discarded, leaving no file.
    pub fn end(&mut self, now: Instant) {
        if self.is_active() && !matches!(self.state, State::Dallying { .. } | State::Failing { .. })
        {
            self.fail(TftpError::TimedOut, false, now);
        }
        self.state = State::Done;
    }

    fn finish(&mut self, outcome: Result<u64, TftpError>) {
        if let State::Writing { lease, .. } = self.state {
            self.shared.release(lease);
        }
        match &outcome {
            Ok(bytes) => {
                bump(&mut self.stats.completed);
                crate::macros::net_debug!("tftp: transfer complete, {} B", bytes);
            }
            Err(e) => {
                bump(&mut self.stats.failed);
                crate::macros::net_debug!("tftp: transfer failed: {}", e);
            }
        }
        self.outcome = Some(outcome);
        self.state = State::Done;
    }

    /// Ends the transfer with `error` at `now`; `tell` sends the client an
    /// ERROR, if the adapter takes it within a timeout.
    fn fail(&mut self, error: TftpError, tell: bool, now: Instant) {
        if let State::Writing { upload, .. } = self.state {
            // No file from a failed upload: its partial goes too.
            let _ = self.shared.store(|s| s.discard_upload(upload.name()));
        }
        self.finish(Err(error));
        if tell && !matches!(error, TftpError::Peer(_)) {
            self.state = State::Failing { error };
            self.timer.arm(now);
        }
    }
}

/// Grows an upload of unknown size so that `more` bytes fit, doubling the
/// reservation (a store that cannot grow that much is asked for just enough).
/// Partials no upload holds give way if the store has no room (as for a
/// transfer's PUT: [`SharedStore`]'s uploads).
fn make_room<S: Storage>(
    shared: &SharedStore<S>,
    store: &mut S,
    upload: &mut Upload,
    more: usize,
) -> Result<(), StoreError> {
    let needed = upload
        .written()
        .saturating_add(u64::try_from(more).unwrap_or(u64::MAX));
    if needed <= upload.size() {
        return Ok(());
    }
    let generous = needed
        .max(upload.written().saturating_mul(2))
        .max(GROW_AT_LEAST);
    let grown = store
        .begin_upload(upload.name(), generous, true)
        .or_else(|_| shared.begin_upload_in(store, upload.name(), needed, true))?;
    if grown.written() != upload.written() {
        return Err(StoreError::Inconsistent);
    }
    *upload = grown;
    Ok(())
}

/// Reads block `position` of `name` into a DATA datagram in `buf`.
fn read_block<S: Storage>(
    shared: &SharedStore<S>,
    name: &FileName,
    version: u64,
    position: u64,
    offset: u64,
    len: usize,
    buf: &mut [u8],
) -> Result<usize, TftpError> {
    let (end, read) = data_block(buf, position, len, |body| {
        shared.store(|s| {
            // The file a client reads is one version, whole.
            if s.version(name)? != version {
                return Err(TftpError::FileChanged);
            }
            s.read(name, offset, body).map_err(TftpError::from)
        })
    })?;
    if read != len {
        return Err(TftpError::FileChanged);
    }
    Ok(end)
}
