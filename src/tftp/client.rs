//! The client's side of a transfer: [`ClientGet`] reads a file into a
//! [`FileSink`], [`ClientPut`] writes one from a [`FileSource`], each reporting
//! progress through a callback.
//!
//! The request goes to the server's port 69; the server answers from a port of
//! its own (its transfer ID). The adapter sends every later packet there and hands
//! the session only datagrams from that port.

use super::flow::{Acked, Received, Receiver, Sender, Timer, data_block, wire_block};
use super::packet::{DEFAULT_BLOCK_SIZE, Mode, Options, Packet, RequestKind, oack_has_invalid};
use super::{DEFAULT_MAX_TRIES, DEFAULT_TIMEOUT, TftpError, TftpStats, add, bump, emit_error};
use crate::store::{FileName, FileStat};
use crate::time::{Duration, Instant};
use crate::transfer::{FileSink, FileSource};
use crate::wire::crc32::Crc32;

/// What a client asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ClientConfig {
    /// `blksize` to ask for; `None` for RFC 1350's 512 bytes with no option. The
    /// adapter's buffer must hold `4 +` this. Below 512, a server that ignores
    /// the option is taken only for a file shorter than this, which goes in
    /// one block that is the last for either size; a longer one is refused
    /// ([`TftpError::BlockSizeIgnored`]): its 512-byte blocks would not fit.
    pub block_size: Option<u16>,
    /// `windowsize` to ask for; `None` for one block per ACK.
    pub window: Option<u16>,
    /// Whether to send `tsize` (the size of a put; 0 in a get, asking for it).
    pub transfer_size: bool,
    /// The retransmission timeout; sent as the `timeout` option when it is a
    /// whole number of seconds from 1 to 255 and `send_timeout` is set.
    pub timeout: Duration,
    /// Whether to send the `timeout` option.
    pub send_timeout: bool,
    /// Retransmissions before the client gives up.
    pub max_tries: u8,
}

impl ClientConfig {
    /// RFC 1350 with `tsize` only: 512-byte blocks, one per ACK, 1 s timeout.
    pub const DEFAULT: Self = Self {
        block_size: None,
        window: None,
        transfer_size: true,
        timeout: DEFAULT_TIMEOUT,
        send_timeout: false,
        max_tries: DEFAULT_MAX_TRIES,
    };

    fn options(&self, size: u64) -> Options {
        let micros = self.timeout.total_micros();
        let whole = micros.is_multiple_of(1_000_000);
        Options {
            block_size: self.block_size,
            window_size: self.window,
            transfer_size: self.transfer_size.then_some(size),
            timeout_secs: u8::try_from(micros / 1_000_000)
                .ok()
                .filter(|&s| self.send_timeout && whole && s >= 1),
        }
    }

    /// What the server granted in the OACK `datagram`, checked against what was
    /// asked; `size` is the file's, if known (see [`plain_block_size`]).
    fn granted(
        &self,
        asked: &Options,
        oack: &Options,
        datagram: &[u8],
        size: Option<u64>,
    ) -> Result<(u16, u16), TftpError> {
        if oack_has_invalid(datagram, oack) {
            return Err(TftpError::BadOptions);
        }
        // RFC 2347: only options asked; RFC 2349: `timeout` as asked.
        if (oack.transfer_size.is_some() && asked.transfer_size.is_none())
            || (oack.timeout_secs.is_some() && oack.timeout_secs != asked.timeout_secs)
        {
            return Err(TftpError::BadOptions);
        }
        let block = match (asked.block_size, oack.block_size) {
            (_, None) => plain_block_size(asked, size)?,
            (Some(asked), Some(granted)) if granted <= asked => granted,
            _ => return Err(TftpError::BadOptions),
        };
        let window = match (asked.window_size, oack.window_size) {
            (_, None) => 1,
            (Some(asked), Some(granted)) if granted <= asked => granted,
            _ => return Err(TftpError::BadOptions),
        };
        Ok((block, window))
    }
}

/// The block size of a transfer whose server took no `blksize`: RFC 1350's
/// 512 bytes. A client that asked for smaller blocks may have a buffer of no
/// more than `4 +` its `asked`: a 512-byte block would be cut to it, at least
/// `asked` bytes long, and taken for a short last block. Such a transfer is
/// taken only for a file shorter than `asked`, whose one block is the last for
/// either size: refused here if its `size` is known and not shorter, else
/// (a get not told the size) at its first DATA, in `ClientGet::on_data`.
fn plain_block_size(asked: &Options, size: Option<u64>) -> Result<u16, TftpError> {
    match asked.block_size {
        Some(asked)
            if asked < DEFAULT_BLOCK_SIZE && size.is_some_and(|s| s >= u64::from(asked)) =>
        {
            Err(TftpError::BlockSizeIgnored { asked })
        }
        _ => Ok(DEFAULT_BLOCK_SIZE),
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Where a client transfer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The request goes out (again after a timeout) until the server answers.
    Request,
    Running,
    /// An ERROR goes out, then the outcome is given.
    Failing(TftpError),
    /// A get's last ACK went out and its outcome is given; a repeat of the last
    /// DATA (the ACK was lost) is acknowledged again, until `until`. Each of
    /// the first `repeats_left` repeats puts `until` off by a dally, so that a
    /// server slower than us is answered to its last try, and one that repeats
    /// for ever is not.
    Dallying {
        until: Instant,
        repeats_left: u8,
    },
    Done,
}

impl Phase {
    /// Whether the transfer is still under way: asked for, or running.
    const fn is_live(self) -> bool {
        matches!(self, Phase::Request | Phase::Running)
    }
}

/// What both client sessions share: the request, the timer, the outcome.
#[derive(Debug)]
struct Common {
    name: FileName,
    config: ClientConfig,
    asked: Options,
    phase: Phase,
    request_due: bool,
    timer: Timer,
    outcome: Option<Result<u64, TftpError>>,
    stats: TftpStats,
}

impl Common {
    fn new(name: FileName, config: ClientConfig, asked: Options) -> Self {
        Self {
            name,
            config,
            asked,
            phase: Phase::Request,
            request_due: true,
            timer: Timer::new(config.timeout, config.max_tries),
            outcome: None,
            stats: TftpStats::default(),
        }
    }

    fn emit_request(&mut self, kind: RequestKind, buf: &mut [u8], now: Instant) -> usize {
        if !core::mem::take(&mut self.request_due) {
            return 0;
        }
        let request = Packet::Request {
            kind,
            filename: self.name.as_bytes(),
            mode: Mode::Octet,
            options: self.asked,
        };
        match request.emit(buf) {
            Ok(n) => {
                self.timer.arm(now);
                self.count_resend(false);
                n
            }
            Err(_) => {
                self.finish(Err(TftpError::BufferTooSmall));
                0
            }
        }
    }

    /// Ends with `error` at `now`; `tell` sends the server an ERROR first, if
    /// the adapter takes it within a timeout.
    fn fail(&mut self, error: TftpError, tell: bool, now: Instant) {
        if tell && !matches!(error, TftpError::Peer(_)) {
            self.phase = Phase::Failing(error);
            self.timer.arm(now);
        } else {
            self.finish(Err(error));
        }
    }

    fn finish(&mut self, outcome: Result<u64, TftpError>) {
        match outcome {
            Ok(_) => bump(&mut self.stats.completed),
            Err(TftpError::TimedOut) => {
                bump(&mut self.stats.timeouts);
                bump(&mut self.stats.failed);
            }
            Err(_) => bump(&mut self.stats.failed),
        }
        self.outcome = Some(outcome);
        self.phase = Phase::Done;
    }

    /// Sends the pending ERROR, if failing.
    fn emit_failure(&mut self, buf: &mut [u8]) -> Option<usize> {
        let Phase::Failing(error) = self.phase else {
            return None;
        };
        let (code, message) = error.to_packet();
        let n = emit_error(buf, code, message);
        self.finish(Err(error));
        Some(n)
    }

    /// The deadline of the request or of a pending ERROR passed: `true` if it
    /// was one of them. The request goes again, or the transfer has timed out;
    /// an ERROR that the adapter could not send within a timeout is given up,
    /// and the outcome given.
    fn request_or_error_timeout(&mut self, now: Instant) -> bool {
        if !self.timer.is_due(now) {
            return false;
        }
        match self.phase {
            Phase::Request => {
                if self.timer.retry(now) {
                    self.request_due = true;
                } else {
                    self.finish(Err(TftpError::TimedOut));
                }
                true
            }
            Phase::Failing(error) => {
                self.finish(Err(error));
                true
            }
            _ => false,
        }
    }

    /// A packet goes out: counts it if it is sent again, after a timeout or
    /// (`again`) for another reason the caller knows.
    fn count_resend(&mut self, again: bool) {
        if self.timer.resent() | again {
            bump(&mut self.stats.retransmits);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Request | Phase::Running | Phase::Failing(_) => self.timer.deadline,
            Phase::Dallying { until, .. } => Some(until),
            Phase::Done => None,
        }
    }

    /// How long a get repeats its last ACK: as long as a server with the same
    /// timeout and tries may resend its last DATA.
    fn dally(&self) -> Duration {
        self.config
            .timeout
            .saturating_mul(u32::from(self.config.max_tries).saturating_add(1))
    }
}

/// Reads a file from a server into a [`FileSink`]: a [`FileSink::restart`], then
/// every block in order through [`FileSink::write`], then
/// [`FileSink::complete`] with its size and CRC-32 once the last block is in.
///
/// `progress(done, total)` is called after every block stored; `total` is the
/// size the server announced (`tsize`), if it did.
///
/// After its last ACK the get dallies, as RFC 1350 advises: if that ACK is lost
/// the server sends its last DATA again, and the get acknowledges it again, for
/// the client's `timeout × (max_tries + 1)`, so the server ends its transfer
/// cleanly instead of counting a timeout. The outcome is given at once, when the
/// last ACK goes out; an adapter that keeps the socket until
/// [`is_done`](Self::is_done) (while [`poll_timeout`](Self::poll_timeout) gives
/// the dally's end) lets the server finish clean, and a caller may also stop
/// polling as soon as it has the outcome, at the cost of that courtesy.
#[must_use = "a transfer does nothing unless driven"]
pub struct ClientGet<K, P> {
    common: Common,
    sink: K,
    progress: P,
    receiver: Receiver,
    total: Option<u64>,
    crc: Crc32,
    /// ACK 0 accepted an OACK's options, and this is the timeout it granted:
    /// an OACK granting the same ones (a repeat, in whatever order) is
    /// acknowledged again.
    oack: Option<Option<u8>>,
}

impl<K, P> core::fmt::Debug for ClientGet<K, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ClientGet")
            .field("common", &self.common)
            .field("receiver", &self.receiver)
            .finish_non_exhaustive()
    }
}

impl<K: FileSink, P: FnMut(u64, Option<u64>)> ClientGet<K, P> {
    /// A get of `name` into `sink`.
    pub fn new(name: FileName, config: ClientConfig, sink: K, progress: P) -> Self {
        let asked = config.options(0);
        Self {
            common: Common::new(name, config, asked),
            sink,
            progress,
            receiver: Receiver::new(DEFAULT_BLOCK_SIZE, 1),
            total: None,
            crc: Crc32::new(),
            oack: None,
        }
    }

    /// The bytes received, the bytes announced.
    pub const fn progress(&self) -> (u64, Option<u64>) {
        (self.receiver.bytes, self.total)
    }

    /// The sink.
    pub const fn sink(&self) -> &K {
        &self.sink
    }

    /// This transfer's counters.
    pub const fn stats(&self) -> &TftpStats {
        &self.common.stats
    }

    /// The bytes received, or why not, once the transfer is over. Taken once.
    pub fn outcome(&mut self) -> Option<Result<u64, TftpError>> {
        self.common.outcome.take()
    }

    /// Whether the session is over: its outcome given (it may have been taken)
    /// and its dally, if any, ended.
    pub fn is_done(&self) -> bool {
        self.common.phase == Phase::Done
    }

    /// Whether the file is in and the get only repeats its last ACK for a
    /// server that may have missed it.
    pub fn is_dallying(&self) -> bool {
        matches!(self.common.phase, Phase::Dallying { .. })
    }

    /// A datagram from the server.
    pub fn receive(&mut self, datagram: &[u8], now: Instant) {
        let dally = self.common.dally();
        if let Phase::Dallying {
            until,
            repeats_left,
        } = &mut self.common.phase
        {
            match Packet::parse(datagram) {
                Ok(Packet::Data { block, .. }) => {
                    bump(&mut self.common.stats.duplicates);
                    // Answered; the dally's end is put off only so many times:
                    // a server repeating its last block for ever must not hold
                    // the get.
                    if block == wire_block(self.receiver.received) {
                        self.receiver.ack_due = true;
                        if let Some(left) = repeats_left.checked_sub(1) {
                            *repeats_left = left;
                            *until = now.saturating_add(dally);
                        }
                    }
                }
                // The server gave up on our ACK: nothing left to repeat.
                Ok(Packet::Error { .. }) => self.common.phase = Phase::Done,
                _ => bump(&mut self.common.stats.malformed),
            }
            return;
        }
        let packet = match Packet::parse(datagram) {
            Ok(packet) => packet,
            Err(e) => {
                bump(&mut self.common.stats.malformed);
                // Once the transfer is over, a datagram that does not parse is
                // only counted; an ERROR, even one that does not parse, is
                // never answered.
                if self.common.phase.is_live() {
                    let tell = !super::is_error(datagram);
                    self.common.fail(TftpError::Malformed(e), tell, now);
                }
                return;
            }
        };
        match (self.common.phase, packet) {
            (Phase::Done | Phase::Failing(_) | Phase::Dallying { .. }, _) => {
                bump(&mut self.common.stats.malformed);
            }
            (_, Packet::Error { code, .. }) => self.common.fail(TftpError::Peer(code), false, now),
            (Phase::Request, Packet::Oack { options }) => {
                match self.common.config.granted(
                    &self.common.asked,
                    &options,
                    datagram,
                    options.transfer_size,
                ) {
                    Ok((block, window)) => {
                        self.begin(block, window, options.transfer_size, now);
                        // ACK 0 accepts the options.
                        self.receiver.ack_due = true;
                        self.oack = Some(options.timeout_secs);
                    }
                    Err(e) => self.common.fail(e, true, now),
                }
            }
            (Phase::Request, Packet::Data { block, data }) => {
                // No OACK: the server took no option, RFC 1350 it is.
                self.begin(DEFAULT_BLOCK_SIZE, 1, None, now);
                self.on_data(block, data, now);
            }
            (Phase::Running, Packet::Data { block, data }) => self.on_data(block, data, now),
            // The network repeated the OACK, or the server did, not having had
            // our ACK 0: before the first block, it is acknowledged again, as
            // a repeated DATA is.
            (Phase::Running, Packet::Oack { options })
                if self.grants_the_same(&options, datagram) =>
            {
                bump(&mut self.common.stats.duplicates);
                if self.receiver.received == 0 {
                    self.receiver.ack_due = true;
                    self.common.timer.repeated(now);
                }
            }
            // An OACK of other options once the first was accepted: which
            // ones the server now uses is not known.
            (Phase::Running, Packet::Oack { .. }) => {
                bump(&mut self.common.stats.malformed);
                self.common.fail(TftpError::BadOptions, true, now);
            }
            _ => {
                bump(&mut self.common.stats.malformed);
                self.common.fail(TftpError::Unexpected, true, now);
            }
        }
    }

    /// Whether an OACK grants the options of the one accepted: the block size
    /// and window the get runs with, its transfer size and its timeout.
    fn grants_the_same(&self, options: &Options, datagram: &[u8]) -> bool {
        if self.oack != Some(options.timeout_secs) {
            return false;
        }
        let granted = self.common.config.granted(
            &self.common.asked,
            options,
            datagram,
            options.transfer_size,
        );
        granted == Ok((self.receiver.block_size, self.receiver.window))
            && options.transfer_size == self.total
    }

    fn begin(&mut self, block: u16, window: u16, total: Option<u64>, now: Instant) {
        self.common.phase = Phase::Running;
        self.common.timer.progress();
        // The request was answered: what comes next (DATA 1, after our ACK 0)
        // gets a whole timeout from now, not what was left of the request's.
        self.common.timer.arm(now);
        self.receiver = Receiver::new(block, window);
        self.total = total;
        self.crc = Crc32::new();
        if let Err(e) = self.sink.restart() {
            self.common.fail(TftpError::Local(e), true, now);
        }
    }

    fn on_data(&mut self, block: u16, data: &[u8], now: Instant) {
        if self.common.phase != Phase::Running {
            return;
        }
        // Blocks larger than asked (granted ones are not): the server ignored
        // a blksize under 512, and a DATA as long as the asked size may have
        // been cut to the buffer (see `plain_block_size`).
        if let Some(asked) = self.common.asked.block_size
            && asked < self.receiver.block_size
            && data.len() >= usize::from(asked)
        {
            return self
                .common
                .fail(TftpError::BlockSizeIgnored { asked }, true, now);
        }
        match self.receiver.classify(block, data.len()) {
            Received::TooLong => {
                bump(&mut self.common.stats.malformed);
                let block_size = self.receiver.block_size;
                self.common.fail(
                    TftpError::BlockTooLong {
                        len: data.len(),
                        block_size,
                    },
                    true,
                    now,
                );
            }
            Received::InOrder { last } => {
                // No more than the size announced, and all of it by the last block.
                let received = self.receiver.bytes.saturating_add(data.len() as u64);
                if let Some(announced) = self.total
                    && (received > announced || (last && received != announced))
                {
                    return self.common.fail(
                        TftpError::SizeMismatch {
                            announced,
                            received,
                        },
                        true,
                        now,
                    );
                }
                if let Err(e) = self.sink.write(self.receiver.bytes, data) {
                    return self.common.fail(TftpError::Local(e), true, now);
                }
                self.crc.update(data);
                self.receiver.accept(data.len(), last);
                add(&mut self.common.stats.bytes_received, data.len());
                self.common.timer.progress();
                self.common.timer.arm(now);
                (self.progress)(self.receiver.bytes, self.total);
            }
            Received::Duplicate => {
                bump(&mut self.common.stats.duplicates);
                if block == wire_block(self.receiver.received) {
                    self.receiver.ack_due = true;
                    // The server is alive and has not had our ACK: its tries
                    // for the next block begin when it does, and so do ours.
                    self.common.timer.repeated(now);
                }
            }
            // Ahead of a block that was lost: dropped (counted), and the ACK
            // of the last block in order asks for the rest again.
            Received::Gap => {
                bump(&mut self.common.stats.malformed);
                self.receiver.ack_due = true;
            }
        }
    }

    /// Writes the next datagram to send into `buf`; returns its length, 0 when
    /// there is nothing to send now.
    pub fn transmit(&mut self, buf: &mut [u8], now: Instant) -> usize {
        if let Some(n) = self.common.emit_failure(buf) {
            return n;
        }
        match self.common.phase {
            Phase::Request => self.common.emit_request(RequestKind::Read, buf, now),
            Phase::Dallying { .. } if self.receiver.ack_due => {
                self.receiver.acked();
                Packet::Ack {
                    block: wire_block(self.receiver.received),
                }
                .emit(buf)
                .unwrap_or(0)
            }
            Phase::Running if self.receiver.ack_due => {
                let ack = Packet::Ack {
                    block: wire_block(self.receiver.received),
                };
                let Ok(n) = ack.emit(buf) else {
                    self.common.fail(TftpError::BufferTooSmall, false, now);
                    return 0;
                };
                self.receiver.acked();
                self.common.timer.arm_unless_armed(now);
                self.common.count_resend(false);
                if self.receiver.complete {
                    let stat = FileStat {
                        size: self.receiver.bytes,
                        crc: self.crc.finish(),
                    };
                    match self.sink.complete(stat) {
                        Ok(()) => {
                            self.common.finish(Ok(stat.size));
                            self.common.phase = Phase::Dallying {
                                until: now.saturating_add(self.common.dally()),
                                repeats_left: self.common.config.max_tries.saturating_add(1),
                            };
                        }
                        Err(e) => self.common.finish(Err(TftpError::Local(e))),
                    }
                }
                n
            }
            _ => 0,
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.common.poll_timeout()
    }

    /// Time has passed: send the request or the last ACK again, give up, or
    /// end the dally.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Phase::Dallying { until, .. } = self.common.phase {
            if now >= until {
                self.common.phase = Phase::Done;
            }
            return;
        }
        if self.common.request_or_error_timeout(now)
            || self.common.phase != Phase::Running
            || !self.common.timer.is_due(now)
        {
            return;
        }
        if self.common.timer.retry(now) {
            self.receiver.ack_due = true;
        } else {
            self.common.fail(TftpError::TimedOut, true, now);
        }
    }
}

/// Writes a file from a [`FileSource`] to a server; `progress(done, total)` is
/// called whenever the server acknowledges more of it.
#[must_use = "a transfer does nothing unless driven"]
pub struct ClientPut<F, P> {
    common: Common,
    source: F,
    progress: P,
    sender: Sender,
}

impl<F, P> core::fmt::Debug for ClientPut<F, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ClientPut")
            .field("common", &self.common)
            .field("sender", &self.sender)
            .finish_non_exhaustive()
    }
}

impl<F: FileSource, P: FnMut(u64, Option<u64>)> ClientPut<F, P> {
    /// A put of `source` as `name`.
    pub fn new(name: FileName, config: ClientConfig, source: F, progress: P) -> Self {
        let size = source.size();
        let asked = config.options(size);
        Self {
            common: Common::new(name, config, asked),
            source,
            progress,
            sender: Sender::new(size, DEFAULT_BLOCK_SIZE, 1, false),
        }
    }

    /// This transfer's counters.
    pub const fn stats(&self) -> &TftpStats {
        &self.common.stats
    }

    /// The bytes sent and acknowledged, or why not, once the transfer is over.
    /// Taken once.
    pub fn outcome(&mut self) -> Option<Result<u64, TftpError>> {
        self.common.outcome.take()
    }

    /// Whether the transfer is over (its outcome may have been taken). A put
    /// does not dally: the server sends the last ACK, and dallies itself.
    pub fn is_done(&self) -> bool {
        self.common.phase == Phase::Done
    }

    /// A datagram from the server.
    pub fn receive(&mut self, datagram: &[u8], now: Instant) {
        let packet = match Packet::parse(datagram) {
            Ok(packet) => packet,
            Err(e) => {
                bump(&mut self.common.stats.malformed);
                // Once the transfer is over, a datagram that does not parse is
                // only counted; an ERROR, even one that does not parse, is
                // never answered.
                if self.common.phase.is_live() {
                    let tell = !super::is_error(datagram);
                    self.common.fail(TftpError::Malformed(e), tell, now);
                }
                return;
            }
        };
        let size = self.source.size();
        match (self.common.phase, packet) {
            (Phase::Done | Phase::Failing(_), _) => bump(&mut self.common.stats.malformed),
            (_, Packet::Error { code, .. }) => self.common.fail(TftpError::Peer(code), false, now),
            (Phase::Request, Packet::Oack { options }) => {
                match self
                    .common
                    .config
                    .granted(&self.common.asked, &options, datagram, Some(size))
                {
                    Ok((block, window)) => self.begin(Sender::new(size, block, window, false)),
                    Err(e) => self.common.fail(e, true, now),
                }
            }
            (Phase::Request, Packet::Ack { block: 0 }) => {
                match plain_block_size(&self.common.asked, Some(size)) {
                    Ok(block_size) => self.begin(Sender::new(size, block_size, 1, false)),
                    Err(e) => self.common.fail(e, true, now),
                }
            }
            (Phase::Running, Packet::Ack { block }) => match self.sender.on_ack(block) {
                Acked::Progress => {
                    self.common.timer.progress();
                    (self.progress)(self.sender.done_bytes(), Some(size));
                }
                Acked::Complete => {
                    (self.progress)(size, Some(size));
                    self.common.finish(Ok(size));
                }
                Acked::Ignored => bump(&mut self.common.stats.duplicates),
            },
            (Phase::Request, Packet::Ack { .. }) | (Phase::Running, Packet::Oack { .. }) => {
                bump(&mut self.common.stats.duplicates);
            }
            _ => {
                bump(&mut self.common.stats.malformed);
                self.common.fail(TftpError::Unexpected, true, now);
            }
        }
    }

    fn begin(&mut self, sender: Sender) {
        self.common.phase = Phase::Running;
        self.common.timer.progress();
        self.sender = sender;
    }

    /// Writes the next datagram to send into `buf`; returns its length, 0 when
    /// there is nothing to send now.
    pub fn transmit(&mut self, buf: &mut [u8], now: Instant) -> usize {
        if let Some(n) = self.common.emit_failure(buf) {
            return n;
        }
        match self.common.phase {
            Phase::Request => self.common.emit_request(RequestKind::Write, buf, now),
            Phase::Running => {
                let Some(position) = self.sender.next_position() else {
                    return 0;
                };
                let (offset, len) = self.sender.block(position);
                match self.read_block(position, offset, len, buf) {
                    Ok(n) => {
                        // Sent before: after a timeout, or after an ACK inside
                        // the window (RFC 7440), every one of them is counted.
                        let again = position < self.sender.sent_top;
                        self.sender.sent();
                        self.common.count_resend(again);
                        add(&mut self.common.stats.bytes_sent, len);
                        self.common.timer.arm(now);
                        n
                    }
                    Err(e) => {
                        self.common.fail(e, true, now);
                        self.transmit(buf, now)
                    }
                }
            }
            Phase::Failing(_) | Phase::Dallying { .. } | Phase::Done => 0,
        }
    }

    fn read_block(
        &mut self,
        position: u64,
        offset: u64,
        len: usize,
        buf: &mut [u8],
    ) -> Result<usize, TftpError> {
        let source = &mut self.source;
        let (end, read) = data_block(buf, position, len, |body| {
            source.read(offset, body).map_err(TftpError::Local)
        })?;
        if read != len {
            return Err(TftpError::Local(crate::transfer::LocalError::SourceShort {
                at: offset.saturating_add(u64::try_from(read).unwrap_or(0)),
            }));
        }
        Ok(end)
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.common.poll_timeout()
    }

    /// Time has passed: send the request or the unacknowledged blocks again, or
    /// give up.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.common.request_or_error_timeout(now)
            || self.common.phase != Phase::Running
            || !self.common.timer.is_due(now)
        {
            return;
        }
        if self.common.timer.retry(now) {
            self.sender.rewind();
        } else {
            self.common.fail(TftpError::TimedOut, true, now);
        }
    }
}

/// Both client sessions, for adapters that drive either the same way.
pub trait ClientSession {
    /// A datagram from the server's transfer port.
    fn receive(&mut self, datagram: &[u8], now: Instant);
    /// The next datagram to send, into `buf`; 0 when there is none now.
    fn transmit(&mut self, buf: &mut [u8], now: Instant) -> usize;
    /// When [`handle_timeout`](Self::handle_timeout) is due, if ever.
    fn poll_timeout(&self) -> Option<Instant>;
    /// Time has passed.
    fn handle_timeout(&mut self, now: Instant);
    /// The file's size, or why not, once the transfer is over. Taken once.
    fn outcome(&mut self) -> Option<Result<u64, TftpError>>;
    /// Whether the session has nothing more to send or wait for: its outcome
    /// given and a get's dally ended. An adapter that keeps the socket until
    /// then lets the server end its transfer clean; one that stops at the
    /// outcome may leave a server retransmitting to nobody.
    fn is_done(&self) -> bool;
}

impl<T: ClientSession + ?Sized> ClientSession for &mut T {
    fn receive(&mut self, datagram: &[u8], now: Instant) {
        (**self).receive(datagram, now);
    }
    fn transmit(&mut self, buf: &mut [u8], now: Instant) -> usize {
        (**self).transmit(buf, now)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        (**self).poll_timeout()
    }
    fn handle_timeout(&mut self, now: Instant) {
        (**self).handle_timeout(now);
    }
    fn outcome(&mut self) -> Option<Result<u64, TftpError>> {
        (**self).outcome()
    }
    fn is_done(&self) -> bool {
        (**self).is_done()
    }
}

impl<K: FileSink, P: FnMut(u64, Option<u64>)> ClientSession for ClientGet<K, P> {
    fn receive(&mut self, datagram: &[u8], now: Instant) {
        Self::receive(self, datagram, now);
    }
    fn transmit(&mut self, buf: &mut [u8], now: Instant) -> usize {
        Self::transmit(self, buf, now)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Self::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: Instant) {
        Self::handle_timeout(self, now);
    }
    fn outcome(&mut self) -> Option<Result<u64, TftpError>> {
        Self::outcome(self)
    }
    fn is_done(&self) -> bool {
        Self::is_done(self)
    }
}

impl<F: FileSource, P: FnMut(u64, Option<u64>)> ClientSession for ClientPut<F, P> {
    fn receive(&mut self, datagram: &[u8], now: Instant) {
        Self::receive(self, datagram, now);
    }
    fn transmit(&mut self, buf: &mut [u8], now: Instant) -> usize {
        Self::transmit(self, buf, now)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Self::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: Instant) {
        Self::handle_timeout(self, now);
    }
    fn outcome(&mut self) -> Option<Result<u64, TftpError>> {
        Self::outcome(self)
    }
    fn is_done(&self) -> bool {
        Self::is_done(self)
    }
}
