//! Sans-IO sessions: one protocol's whole state for one connection, with no socket,
//! no clock and no I/O.
//!
//! A [`Session`] takes the bytes that arrived ([`receive`](Session::receive)) and
//! gives the bytes it wants sent ([`transmit`](Session::transmit)) into whatever
//! space the caller has; time is passed in. This is the split of quinn-proto's
//! `Connection` and rustls' `read_tls`/`write_tls`: the protocol is written once,
//! and thin adapters move its bytes over smoltcp's poll loop, an
//! `embedded-io-async` stream (embassy-net's `TcpSocket`, tokio) or a blocking
//! `std::io` stream.
//!
//! A session owns what it sends. An answer is encoded once, either straight into
//! the caller's send space (when all of it fits there) or into the session's own
//! fixed buffer, and it stays the session's until every byte has been handed out.
//! No caller can change a frame half way through, or splice two frames together.
//!
//! - [`Echo`]: the primer's `recv(1024)` + `sendall` loop.
//! - [`Framed`]: length framing with a [`FrameHandler`] that sees whole frames
//!   (and [`FramedEcho`], the framed echo).
//! - [`StreamingEcho`]: the framed echo with no frame storage, body piece by piece.
//! - [`OutBuffer`]: the fixed queue of outgoing bytes a session keeps.
//!
//! Time is [`crate::time::Instant`], on whatever clock the adapter reads.

mod echo;
mod framed;
mod out;

pub use echo::{CHUNK, Echo};
pub use framed::{
    DEFAULT_FRAME_MIN_RATE, DEFAULT_FRAME_TIMEOUT, Flow, FrameHandler, FrameOut, Framed,
    FramedEcho, FramedStats, SendError, StreamingEcho,
};
pub use out::Full;

pub use out::OutBuffer;

use crate::time::Instant;
use crate::trace::Levels;

/// What a session wants done with its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Status {
    /// Keep moving bytes.
    Open,
    /// Everything the session had to send has been handed out: close the sending
    /// half (FIN) once it is on the wire, and keep reading until the peer closes.
    Close,
    /// Reset the connection at once (RST): the peer broke the protocol, or a
    /// deadline passed.
    Abort,
}

/// A protocol's state for one connection: bytes in, bytes out, time passed in.
///
/// An adapter drives it in a loop, until neither call moves a byte:
///
/// 1. [`receive`](Self::receive) with the bytes that arrived; the session returns
///    how many it took. Taking fewer (even none) is back-pressure: offer the rest
///    again after the next [`transmit`](Self::transmit).
/// 2. [`transmit`](Self::transmit) with the free send space; the session writes
///    what it wants sent and returns how many bytes. A session that took fewer
///    bytes than offered has work for `transmit`: input and output never wait on
///    each other for good.
/// 3. When the peer has closed its sending half and every byte was received:
///    [`receive_finished`](Self::receive_finished).
/// 4. [`handle_timeout`](Self::handle_timeout) once [`poll_timeout`](Self::poll_timeout)
///    has passed, and [`status`](Self::status) after every step.
///
/// A server's slot reuses its session: [`start`](Self::start) begins a new
/// connection and forgets the last one (its counters stay).
pub trait Session {
    /// A new connection begins at `now`.
    fn start(&mut self, now: Instant);

    /// Takes bytes that arrived and returns how many were taken.
    fn receive(&mut self, input: &[u8], now: Instant) -> usize;

    /// The peer finished sending, and every byte it sent was offered to
    /// [`receive`](Self::receive) and taken.
    fn receive_finished(&mut self, now: Instant);

    /// Writes the next bytes to send into the front of `space`; returns how many.
    fn transmit(&mut self, space: &mut [u8], now: Instant) -> usize;

    /// Whether [`transmit`](Self::transmit) has anything to do now: bytes to give,
    /// or input held that it would act on. While it is `false` an adapter may skip
    /// offering send space. `true`, the default, is always correct; a session that
    /// says `false` must not hold input it refused more of. After
    /// [`TcpServer::close_all`][close-all] the FIN waits
    /// for `false`, or for a turn that offered the whole send buffer, empty, and
    /// got nothing.
    ///
    #[cfg_attr(
        feature = "smoltcp",
        doc = "[close-all]: crate::net::TcpServer::close_all"
    )]
    #[cfg_attr(not(feature = "smoltcp"), doc = "[close-all]: crate#features")]
    fn wants_transmit(&self) -> bool {
        true
    }

    /// The earliest time [`handle_timeout`](Self::handle_timeout) is due, even if no
    /// byte moves.
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// Time has passed: deadlines due by `now` take effect (usually through
    /// [`status`](Self::status)).
    fn handle_timeout(&mut self, _now: Instant) {}

    /// What the connection should do now.
    fn status(&self) -> Status;

    /// The connection is gone (closed, reset, timed out): release what it held.
    /// Called once per connection, after the last of the calls above.
    fn end(&mut self, _now: Instant) {}

    /// Whether every reply should leave at once: adapters then turn Nagle's
    /// algorithm and delayed ACKs off (request/response protocols).
    fn no_delay(&self) -> bool {
        false
    }

    /// Whether [`receive`](Self::receive) now only reads and drops what it
    /// takes (the session is closing and reads on so that the peer's FIN can
    /// arrive): an adapter then counts none of it as the peer's progress
    /// (towards the close, or against an idle timeout), so that a peer
    /// sending what nobody reads cannot hold the connection open past its
    /// deadlines.
    fn drops_input(&self) -> bool {
        false
    }

    /// How full the socket's buffers are, told by an adapter that sees them (the
    /// poll-loop adapter, at the start and the end of each poll). Only a traced
    /// session uses it ([`Traced`](crate::trace::Traced),
    /// [`Framed::traced`]); the default ignores it, and then the adapter's
    /// reading of the levels compiles away.
    fn observe(&mut self, _levels: Levels, _now: Instant) {}
}

/// A session that completes: a client's request (an upload, a listing), which
/// runs over a connection that stays open for the next one.
///
/// Adapters drive it like any [`Session`] until [`outcome`](Self::outcome) is
/// `Some`: [`start`](Session::start) once when the request begins (the connection
/// may have carried earlier requests: `start` is not a new connection here), then
/// bytes both ways. While it runs, [`Status::Close`] and [`Status::Abort`] mean the
/// connection must go, and the outcome then says why.
pub trait Request: Session {
    /// What the request gives when done (usually a `Result`).
    type Output;

    /// The outcome, once the request is done; `None` while it runs. Taken once.
    fn outcome(&mut self) -> Option<Self::Output>;
}

/// A session behind a `&mut` is driven like the session itself: a firmware keeps
/// each session in a `static` and hands out `&'static mut` references.
impl<S: Session + ?Sized> Session for &mut S {
    fn start(&mut self, now: Instant) {
        (**self).start(now);
    }

    fn receive(&mut self, input: &[u8], now: Instant) -> usize {
        (**self).receive(input, now)
    }

    fn receive_finished(&mut self, now: Instant) {
        (**self).receive_finished(now);
    }

    fn transmit(&mut self, space: &mut [u8], now: Instant) -> usize {
        (**self).transmit(space, now)
    }

    fn wants_transmit(&self) -> bool {
        (**self).wants_transmit()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        (**self).poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) {
        (**self).handle_timeout(now);
    }

    fn status(&self) -> Status {
        (**self).status()
    }

    fn end(&mut self, now: Instant) {
        (**self).end(now);
    }

    fn no_delay(&self) -> bool {
        (**self).no_delay()
    }

    fn drops_input(&self) -> bool {
        (**self).drops_input()
    }

    fn observe(&mut self, levels: Levels, now: Instant) {
        (**self).observe(levels, now);
    }
}

#[cfg(test)]
pub(crate) mod testing;
