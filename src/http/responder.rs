//! The responder's state machine: read a head by its deadline, answer once, close.
//!
//! Answers: `200` with the page, `404` for an unknown path, `405` for a known
//! method other than GET or HEAD, `501` for a method it does not know (or a
//! transfer coding), `400` for bytes that are no request head (or a head
//! whose body it cannot frame, or without a valid Host: see [`HttpResponder`]),
//! `414` or `431` for a head larger than the request buffer (or with more than
//! [`MAX_HEADERS`] fields), `505` for an HTTP version other than 1.x (a later
//! 1.x is served as 1.1),
//! `408` for a head that did not arrive whole by its deadline, `500` if the page
//! does not fit the body buffer or could not be made. A HEAD request gets the head a GET would, and no
//! body; nor does any error answer to a head whose method is HEAD.

use core::fmt::{self, Write as _};

use super::site::Site;
use crate::session::{Session, Status};
use crate::time::{Duration, Instant};
use crate::wire::http::{self, HttpError, Method, ResponseHead, StatusCode, parse_request};

/// Header fields a request may carry before it is refused with 431.
pub const MAX_HEADERS: usize = 24;

/// Bytes of the buffer that holds a response head (and an error's one-line body).
/// Every head the responder makes fits, unless a [`Site`] names a content type of
/// more than about 150 bytes, which is answered with 500 instead.
pub const HEAD_CAPACITY: usize = 256;

/// An error's body is its status line, `"404 Not Found\n"`: the three digits, a
/// space and a newline around the reason phrase.
const ERROR_TEXT_EXTRA: usize = 5;

/// The deadlines of an [`HttpResponder`].
///
/// A deadline of [`Duration::MAX`] never comes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct HttpConfig {
    /// How long the request head may take to arrive whole, counted from the start
    /// of the connection, however many bytes trickle in meanwhile (so a
    /// slowloris peer sending a byte a second cannot hold the connection). When it
    /// passes, the responder answers `408 Request Timeout` and closes. Default 5 s.
    pub head_timeout: Duration,
    /// How long the response may take to be handed out whole, counted from when it
    /// was made. When it passes (the peer stopped reading), the session asks for a
    /// reset ([`Status::Abort`]). Default 10 s.
    pub send_timeout: Duration,
}

impl HttpConfig {
    /// A 5 s head deadline and a 10 s send deadline.
    pub const DEFAULT: Self = Self {
        head_timeout: Duration::from_secs(5),
        send_timeout: Duration::from_secs(10),
    };
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Counters of an [`HttpResponder`], over every connection it served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct HttpStats {
    /// Request heads parsed whole.
    pub requests: u64,
    /// 2xx answers.
    pub ok: u64,
    /// 4xx answers: bad request, not found, method, timeout, too large.
    pub client_errors: u64,
    /// 5xx answers: a page too large for the body buffer, an unsupported version,
    /// a method or a transfer coding this server does not know.
    pub server_errors: u64,
    /// Heads refused as malformed (answered 400, 505 for a version other than
    /// 1.x, 501 for a transfer coding other than chunked): bytes that are no
    /// head, a bad `Content-Length` or `Host`, a `Transfer-Encoding` that does not
    /// frame the body.
    pub malformed: u64,
    /// Heads larger than the request buffer or with too many fields (answered 414
    /// or 431).
    pub oversize: u64,
    /// Heads not whole by [`HttpConfig::head_timeout`] (answered 408).
    pub head_timeouts: u64,
    /// Responses not handed out by [`HttpConfig::send_timeout`] (reset).
    pub send_timeouts: u64,
    /// Connections that ended with part of a head and no answer.
    pub incomplete: u64,
    /// Connections that ended before their response was all handed out.
    pub cut_short: u64,
    /// Bytes taken and thrown away: whatever followed a head (a body, a pipelined
    /// request), all of a head refused or timed out, and everything the peer sent
    /// once the answer was made.
    pub discarded: u64,
    /// Bytes taken.
    pub bytes_in: u64,
    /// Bytes handed out.
    pub bytes_out: u64,
}

impl HttpStats {
    /// No counts.
    pub const ZERO: Self = Self {
        requests: 0,
        ok: 0,
        client_errors: 0,
        server_errors: 0,
        malformed: 0,
        oversize: 0,
        head_timeouts: 0,
        send_timeouts: 0,
        incomplete: 0,
        cut_short: 0,
        discarded: 0,
        bytes_in: 0,
        bytes_out: 0,
    };

    /// Adds `other`'s counts to these (a pool's total over its slots).
    pub fn accumulate(&mut self, other: &HttpStats) {
        let pairs = [
            (&mut self.requests, other.requests),
            (&mut self.ok, other.ok),
            (&mut self.client_errors, other.client_errors),
            (&mut self.server_errors, other.server_errors),
            (&mut self.malformed, other.malformed),
            (&mut self.oversize, other.oversize),
            (&mut self.head_timeouts, other.head_timeouts),
            (&mut self.send_timeouts, other.send_timeouts),
            (&mut self.incomplete, other.incomplete),
            (&mut self.cut_short, other.cut_short),
            (&mut self.discarded, other.discarded),
            (&mut self.bytes_in, other.bytes_in),
            (&mut self.bytes_out, other.bytes_out),
        ];
        for (total, count) in pairs {
            *total = total.saturating_add(count);
        }
    }
}

impl fmt::Display for HttpStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} requests: {} ok, {} 4xx, {} 5xx ({} malformed, {} oversize, {} head timeouts), \
             {} send timeouts, {} incomplete, {} cut short, {} B in ({} discarded), {} B out",
            self.requests,
            self.ok,
            self.client_errors,
            self.server_errors,
            self.malformed,
            self.oversize,
            self.head_timeouts,
            self.send_timeouts,
            self.incomplete,
            self.cut_short,
            self.bytes_in,
            self.discarded,
            self.bytes_out,
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Gathering the request head.
    Reading,
    /// The answer is made and going out.
    Responding,
    /// Nothing more to send: the connection closes.
    Done,
    /// The answer did not go out in time: the connection is reset.
    Aborted,
}

/// Where the response's body comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Body<'a> {
    /// No body beyond what the head buffer holds (a HEAD answer, an error).
    None,
    /// The first `n` bytes of the body buffer, rendered by the site.
    Rendered(usize),
    /// A site's [`Asset`](super::Asset), sent from where it lives.
    Asset(&'a [u8]),
}

/// One response, made once and then handed out until complete.
struct Response<'a, const RESP: usize> {
    head: [u8; HEAD_CAPACITY],
    head_len: usize,
    body: [u8; RESP],
    source: Body<'a>,
    /// Bytes handed out, head and body together.
    sent: usize,
    status: Option<StatusCode>,
}

impl<'a, const RESP: usize> Response<'a, RESP> {
    const fn new() -> Self {
        Self {
            head: [0; HEAD_CAPACITY],
            head_len: 0,
            body: [0; RESP],
            source: Body::None,
            sent: 0,
            status: None,
        }
    }

    fn clear(&mut self) {
        self.head_len = 0;
        self.source = Body::None;
        self.sent = 0;
        self.status = None;
    }

    /// The answer to a GET (or, without its body, a HEAD) of `path`.
    fn page<S: Site + ?Sized>(&mut self, site: &'a S, path: &str, with_body: bool) -> StatusCode {
        if let Some(asset) = site.asset(path) {
            let body = with_body.then_some(Body::Asset(asset.body));
            return self.head_for(asset.content_type, asset.body.len(), body);
        }
        let mut writer = SliceWriter::new(&mut self.body);
        let kind = site.render(path, &mut writer);
        let (len, overflowed) = (writer.len, writer.overflowed);
        match kind {
            // A page cut short would still be sent with a matching length, and
            // look whole: refuse it instead, whatever the site made of the error.
            _ if overflowed => {
                crate::macros::net_warn!(
                    "http: the page for {} is over the {}-byte body buffer",
                    path,
                    RESP
                );
                self.error(StatusCode::INTERNAL_SERVER_ERROR, with_body)
            }
            Some(Ok(kind)) => self.head_for(kind, len, with_body.then_some(Body::Rendered(len))),
            Some(Err(fmt::Error)) => {
                crate::macros::net_warn!("http: the page for {} failed", path);
                self.error(StatusCode::INTERNAL_SERVER_ERROR, with_body)
            }
            None => self.error(StatusCode::NOT_FOUND, with_body),
        }
    }

    /// A `200` head for a body of `len` bytes; `body` is what follows it, if any.
    fn head_for(&mut self, content_type: &str, len: usize, body: Option<Body<'a>>) -> StatusCode {
        let head = ResponseHead {
            close: true,
            ..ResponseHead::new(StatusCode::OK, Some(content_type), len)
        };
        match head.emit(&mut self.head) {
            Ok(head_len) => {
                self.head_len = head_len;
                self.source = body.unwrap_or(Body::None);
                self.status = Some(StatusCode::OK);
                StatusCode::OK
            }
            Err(error) => {
                crate::macros::net_warn!("http: page head not made: {}", error);
                self.error(StatusCode::INTERNAL_SERVER_ERROR, body.is_some())
            }
        }
    }

    /// An error answer, whose body is its status line. It goes after the head in
    /// the head buffer, so no error needs the body buffer: a responder with a small
    /// one still answers every error whole.
    fn error(&mut self, status: StatusCode, with_body: bool) -> StatusCode {
        let text_len = status.reason().len().saturating_add(ERROR_TEXT_EXTRA);
        let head = ResponseHead {
            close: true,
            ..ResponseHead::new(status, Some("text/plain"), text_len)
        };
        self.source = Body::None;
        self.status = Some(status);
        // Every error head and text fits HEAD_CAPACITY (a test checks each status
        // the responder uses); should one not, nothing is sent rather than a part.
        self.head_len = match head.emit(&mut self.head) {
            Ok(head_len) if with_body => {
                let mut text = SliceWriter::new(self.head.get_mut(head_len..).unwrap_or_default());
                match writeln!(text, "{status}") {
                    Ok(()) if text.len == text_len => head_len.saturating_add(text_len),
                    _ => 0,
                }
            }
            Ok(head_len) => head_len,
            Err(_) => 0,
        };
        status
    }

    fn body(&self) -> &[u8] {
        match self.source {
            Body::None => &[],
            Body::Rendered(len) => self.body.get(..len).unwrap_or_default(),
            Body::Asset(bytes) => bytes,
        }
    }

    fn is_sent(&self) -> bool {
        self.sent >= self.head_len.saturating_add(self.body().len())
    }

    /// Copies the next bytes of the response into `space`; returns how many.
    fn transmit(&mut self, space: &mut [u8]) -> usize {
        let head = self.head.get(..self.head_len).unwrap_or_default();
        let (mut sent, mut written) = (self.sent, 0usize);
        for (part, start) in [(head, 0), (self.body(), self.head_len)] {
            // The body follows only a head handed out whole.
            let Some(from) = sent.checked_sub(start) else {
                break;
            };
            let rest = part.get(from..).unwrap_or_default();
            let free = space.get_mut(written..).unwrap_or_default();
            let n = rest.len().min(free.len());
            if let (Some(dst), Some(src)) = (free.get_mut(..n), rest.get(..n)) {
                dst.copy_from_slice(src);
            }
            written = written.saturating_add(n);
            sent = sent.saturating_add(n);
        }
        self.sent = sent;
        written
    }
}

/// One HTTP connection at a time, as a [`Session`]: a request head of up to `REQ`
/// bytes, a rendered page of up to `RESP`.
///
/// # Memory
///
/// `REQ + RESP + `[`HEAD_CAPACITY`] bytes of buffers, plus 176 bytes of state
/// and counters on a 32-bit target (208 on a 64-bit one; 104 of them are
/// [`HttpStats`]), all inside the value: a `static` on a microcontroller. With a
/// 1 KiB request and a 2 KiB page that is 3,504 bytes on thumbv7em. `REQ` bounds
/// the request head (a browser's is 300 to 800 bytes; 1 KiB is comfortable);
/// `RESP` bounds a page from [`Site::render`] (a site whose pages are all
/// [`Asset`](super::Asset)s can make it 0: errors need none of it). Parsing also
/// takes about 400 bytes of stack on a 32-bit target (16 per header field kept,
/// [`MAX_HEADERS`] of them), during [`receive`](Session::receive).
///
/// # The connection
///
/// - The head must arrive whole within [`HttpConfig::head_timeout`] of
///   [`start`](Session::start), whatever trickle of bytes comes meanwhile;
///   [`poll_timeout`](Session::poll_timeout) says when, and the answer is `408`.
/// - Once the answer is made, it is the responder's own: the head (and an error's
///   one-line body) in a head buffer, a page in the body buffer or an asset where
///   it lives. [`transmit`](Session::transmit) hands it out in order, in pieces of
///   whatever size the caller has room for, and nothing changes it on the way.
/// - Once it is all out, [`status`](Session::status) is [`Status::Close`]: the
///   adapter closes our sending half (FIN). The peer may still be sending (a body
///   we do not read, a pipelined request): [`receive`](Session::receive) takes
///   and throws away everything from the answer on (counted in
///   [`HttpStats::discarded`]), so the adapter can read on up to the peer's FIN
///   instead of closing with unread bytes, which would make the stack reset the
///   connection and could destroy the response in flight. The responder holds
///   nothing of the connection past that point; the adapter's own close deadline
///   ends it if the peer never closes.
/// - A response not handed out by [`HttpConfig::send_timeout`] (the peer stopped
///   reading) makes the status [`Status::Abort`].
///
/// # Request bodies
///
/// No request body is read: one framed by `Content-Length` or chunked is thrown
/// away with whatever else follows the head, and the head is answered as if it
/// had none (the connection closes after the answer, so where the body ends
/// matters to no later request). A head whose body is framed otherwise is
/// refused, as [`Request::body_framing`](crate::wire::http::Request::body_framing)
/// says (RFC 9112 §6.1, §6.3): `400` for a `Transfer-Encoding` whose last
/// coding is not chunked, beside a `Content-Length`, or in an HTTP/1.0
/// request, and for an invalid or conflicting `Content-Length`; `501` for a
/// coding other than chunked before it (`gzip, chunked`: none is decoded here).
/// Each counts in [`HttpStats::malformed`].
///
/// # Host
///
/// An HTTP/1.1 head with no `Host` field, any head with two, and one whose `Host`
/// is not a host with an optional port are answered `400` and count in
/// [`HttpStats::malformed`] (RFC 9112 §3.2). A host is a name or an IPv4
/// address (`example.com`, `10.0.2.15`), or in brackets a valid IPv6 address
/// (`[::1]`; not `[1::2::3]`), with or without `%25` and a zone id
/// (`[fe80::1%25eth0]`, RFC 6874: what clients send for a link-local address),
/// or an `IPvFuture` (`[v1.x]`): see
/// [`Request::host`](crate::wire::http::Request::host). An empty `Host` is
/// taken: the site is the same whatever the host.
///
/// ```
/// use smolsock::http::{HttpResponder, StatusSite};
/// use smolsock::session::{Session, Status};
/// use smolsock::time::Instant;
///
/// let status = |w: &mut dyn core::fmt::Write| w.write_str("all good");
/// let site = StatusSite::new("demo", &status);
/// let mut http = HttpResponder::<_, 512, 1024>::new(&site);
/// let now = Instant::ZERO;
/// http.start(now);
/// // The head in two segments.
/// assert_eq!(http.receive(b"GET /stats HTTP/1.1\r\nHo", now), 23);
/// assert_eq!(http.receive(b"st: x\r\n\r\n", now), 9);
/// // The answer, through a send space of 16 bytes at a time.
/// let mut response = Vec::new();
/// let mut space = [0u8; 16];
/// while http.status() == Status::Open {
///     let n = http.transmit(&mut space, now);
///     response.extend_from_slice(&space[..n]);
/// }
/// assert!(response.starts_with(b"HTTP/1.1 200 OK\r\n"));
/// assert!(response.ends_with(b"\r\n\r\nall good"));
/// assert_eq!(http.status(), Status::Close);
/// assert_eq!(http.stats().ok, 1);
/// ```
#[must_use = "a session does nothing unless an adapter runs it"]
pub struct HttpResponder<'a, S: ?Sized, const REQ: usize, const RESP: usize> {
    site: &'a S,
    config: HttpConfig,
    request: [u8; REQ],
    request_len: usize,
    response: Response<'a, RESP>,
    phase: Phase,
    /// The head's deadline while reading, the response's while responding.
    deadline: Option<Instant>,
    stats: HttpStats,
}

impl<'a, S: Site + ?Sized, const REQ: usize, const RESP: usize> HttpResponder<'a, S, REQ, RESP> {
    /// A responder serving `site`, with [`HttpConfig::DEFAULT`] deadlines.
    pub const fn new(site: &'a S) -> Self {
        Self::with_config(site, HttpConfig::DEFAULT)
    }

    /// A responder serving `site` with the deadlines of `config`.
    pub const fn with_config(site: &'a S, config: HttpConfig) -> Self {
        Self {
            site,
            config,
            request: [0; REQ],
            request_len: 0,
            response: Response::new(),
            phase: Phase::Reading,
            deadline: None,
            stats: HttpStats::ZERO,
        }
    }

    /// The counters, over every connection served.
    pub const fn stats(&self) -> &HttpStats {
        &self.stats
    }

    /// The deadlines.
    pub const fn config(&self) -> &HttpConfig {
        &self.config
    }

    /// Sets the deadlines: the head's from the next connection on (it is set
    /// when a connection starts), the answer's from the next answer on (it is
    /// set when the answer is made, also on the connection open now).
    pub fn set_config(&mut self, config: HttpConfig) {
        self.config = config;
    }

    /// The site served.
    pub const fn site(&self) -> &'a S {
        self.site
    }

    /// The status of the current connection's answer, once it is made.
    pub const fn response_status(&self) -> Option<StatusCode> {
        self.response.status
    }

    /// Makes the answer to the head gathered so far, if it is whole, broken or over
    /// the buffer. False: more bytes are needed.
    fn try_answer(&mut self, now: Instant) -> bool {
        match self.make_answer() {
            Some(status) => {
                self.answered(status, now);
                true
            }
            None => false,
        }
    }

    /// The status of the answer made, or `None` while the head is partial.
    fn make_answer(&mut self) -> Option<StatusCode> {
        let gathered = self.request.get(..self.request_len).unwrap_or_default();
        let parsed = parse_request::<MAX_HEADERS>(gathered);
        let used = match &parsed {
            Ok(http::Status::Complete { head_len, .. }) => *head_len,
            Ok(http::Status::Partial) if self.request_len < REQ => return None,
            // A head that is refused is thrown away whole, wherever the parser
            // stopped reading it, so the count is the same however it arrived.
            _ => 0,
        };
        let unused = self.request_len.saturating_sub(used);
        self.stats.discarded = self.stats.discarded.saturating_add(unused as u64);
        let refused = match parsed {
            Ok(http::Status::Partial) => {
                self.stats.oversize = self.stats.oversize.saturating_add(1);
                HttpError::for_full_buffer(gathered)
            }
            Err(error) => {
                let counter = match error {
                    HttpError::TooManyHeaders | HttpError::HeadTooLarge | HttpError::UriTooLong => {
                        &mut self.stats.oversize
                    }
                    _ => &mut self.stats.malformed,
                };
                *counter = counter.saturating_add(1);
                crate::macros::net_debug!("http: refused a head: {}", error);
                error
            }
            Ok(http::Status::Complete { request, .. }) => {
                self.stats.requests = self.stats.requests.saturating_add(1);
                // The body is never read (the connection closes after the
                // answer), but a head that frames it wrongly or with an unknown
                // transfer coding, or names no valid host, is refused as RFC
                // 9112 asks (§6.1, §6.3, §3.2).
                let framing = request.body_framing().and_then(|_| request.host());
                let Err(error) = framing else {
                    return Some(match request.method() {
                        Method::Get => self.response.page(self.site, request.path(), true),
                        Method::Head => self.response.page(self.site, request.path(), false),
                        // A method this server does not know (RFC 9110 §9.1).
                        Method::Other(_) => self.response.error(StatusCode::NOT_IMPLEMENTED, true),
                        _ => self.response.error(StatusCode::METHOD_NOT_ALLOWED, true),
                    });
                };
                self.stats.malformed = self.stats.malformed.saturating_add(1);
                // Thrown away whole, as a head the parser refused: the bytes
                // after it are counted above.
                self.stats.discarded = self.stats.discarded.saturating_add(used as u64);
                crate::macros::net_debug!("http: refused a head: {}", error);
                error
            }
        };
        // Whichever check refused the head, a HEAD request gets no body.
        let with_body = self.error_has_body();
        Some(self.response.error(refused.status(), with_body))
    }

    /// Whether an error answer to the head gathered so far carries its body: not
    /// for a HEAD request (RFC 9110 §9.3.2), however broken the rest of its head.
    /// A request line too broken to name its method is no request of any method,
    /// so nothing forbids the body, and it is sent.
    fn error_has_body(&self) -> bool {
        let gathered = self.request.get(..self.request_len).unwrap_or_default();
        !http::is_head_request(gathered)
    }

    /// The answer is made: count it and start the send deadline.
    fn answered(&mut self, status: StatusCode, now: Instant) {
        let counter = match status.as_u16() {
            200..=299 => &mut self.stats.ok,
            400..=499 => &mut self.stats.client_errors,
            _ => &mut self.stats.server_errors,
        };
        *counter = counter.saturating_add(1);
        self.deadline = deadline(now, self.config.send_timeout);
        self.phase = if self.response.is_sent() {
            Phase::Done
        } else {
            Phase::Responding
        };
    }

    fn head_timed_out(&mut self, now: Instant) {
        crate::macros::net_debug!("http: no whole head by {}, answering 408", now);
        self.stats.head_timeouts = self.stats.head_timeouts.saturating_add(1);
        self.discard_request();
        let with_body = self.error_has_body();
        let status = self.response.error(StatusCode::REQUEST_TIMEOUT, with_body);
        self.answered(status, now);
    }

    /// Counts the part of a head gathered so far as thrown away.
    fn discard_request(&mut self) {
        let gathered = self.request_len as u64;
        self.stats.discarded = self.stats.discarded.saturating_add(gathered);
    }

    /// Takes `bytes` and throws them away.
    fn discard(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len() as u64;
        self.stats.discarded = self.stats.discarded.saturating_add(n);
        self.stats.bytes_in = self.stats.bytes_in.saturating_add(n);
        bytes.len()
    }

    fn due(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|at| now >= at)
    }
}

/// `now + after`, or no deadline at all for [`Duration::MAX`].
fn deadline(now: Instant, after: Duration) -> Option<Instant> {
    (after != Duration::MAX).then(|| now.saturating_add(after))
}

impl<S: Site + ?Sized, const REQ: usize, const RESP: usize> Session
    for HttpResponder<'_, S, REQ, RESP>
{
    fn start(&mut self, now: Instant) {
        self.request_len = 0;
        self.response.clear();
        self.phase = Phase::Reading;
        self.deadline = deadline(now, self.config.head_timeout);
    }

    fn receive(&mut self, input: &[u8], now: Instant) -> usize {
        if self.phase != Phase::Reading {
            return self.discard(input);
        }
        if self.due(now) {
            // The bytes came too late, even if they would complete the head.
            self.head_timed_out(now);
            return self.discard(input);
        }
        if input.is_empty() {
            return 0;
        }
        let free = self.request.get_mut(self.request_len..).unwrap_or_default();
        let n = free.len().min(input.len());
        let (taken, rest) = input.split_at(n);
        if let Some(dst) = free.get_mut(..n) {
            dst.copy_from_slice(taken);
        }
        self.request_len = self.request_len.saturating_add(n);
        self.stats.bytes_in = self.stats.bytes_in.saturating_add(n as u64);
        // Bytes left over mean the buffer is full, so the head is answered (if only
        // with 431) and the rest can go.
        if self.try_answer(now) {
            n.saturating_add(self.discard(rest))
        } else {
            n
        }
    }

    fn receive_finished(&mut self, now: Instant) {
        if self.phase != Phase::Reading {
            return;
        }
        if self.due(now) {
            self.head_timed_out(now);
        } else {
            // Part of a head and then a close: nobody is left to read an answer
            // that says so, so the connection just closes, its bytes thrown away.
            if self.request_len > 0 {
                self.stats.incomplete = self.stats.incomplete.saturating_add(1);
                self.discard_request();
            }
            self.phase = Phase::Done;
            self.deadline = None;
        }
    }

    fn transmit(&mut self, space: &mut [u8], _now: Instant) -> usize {
        if self.phase != Phase::Responding {
            return 0;
        }
        let n = self.response.transmit(space);
        self.stats.bytes_out = self.stats.bytes_out.saturating_add(n as u64);
        if self.response.is_sent() {
            self.phase = Phase::Done;
            self.deadline = None;
        }
        n
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    fn handle_timeout(&mut self, now: Instant) {
        if !self.due(now) {
            return;
        }
        match self.phase {
            Phase::Reading => self.head_timed_out(now),
            Phase::Responding => {
                crate::macros::net_debug!("http: response not taken by {}, resetting", now);
                self.stats.send_timeouts = self.stats.send_timeouts.saturating_add(1);
                self.phase = Phase::Aborted;
                self.deadline = None;
            }
            Phase::Done | Phase::Aborted => self.deadline = None,
        }
    }

    fn status(&self) -> Status {
        match self.phase {
            Phase::Reading | Phase::Responding => Status::Open,
            Phase::Done => Status::Close,
            Phase::Aborted => Status::Abort,
        }
    }

    fn end(&mut self, _now: Instant) {
        match self.phase {
            Phase::Reading if self.request_len > 0 => {
                self.stats.incomplete = self.stats.incomplete.saturating_add(1);
                self.discard_request();
            }
            Phase::Responding => self.stats.cut_short = self.stats.cut_short.saturating_add(1),
            _ => {}
        }
        // Whatever comes after the end counts for nothing.
        self.phase = Phase::Done;
        self.deadline = None;
    }

    fn no_delay(&self) -> bool {
        // The whole answer is made at once; Nagle could only hold its last piece
        // back for the peer's delayed ACK.
        true
    }

    fn drops_input(&self) -> bool {
        self.phase != Phase::Reading
    }
}

impl<S: ?Sized, const REQ: usize, const RESP: usize> fmt::Debug
    for HttpResponder<'_, S, REQ, RESP>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpResponder")
            .field("phase", &self.phase)
            .field("request_len", &self.request_len)
            .field("response", &self.response.status)
            .field("deadline", &self.deadline)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// `fmt::Write` into a fixed slice that remembers whether anything was cut.
struct SliceWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
    overflowed: bool,
}

impl<'b> SliceWriter<'b> {
    fn new(buf: &'b mut [u8]) -> Self {
        Self {
            buf,
            len: 0,
            overflowed: false,
        }
    }
}

impl fmt::Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.saturating_add(s.len());
        match self.buf.get_mut(self.len..end) {
            Some(dst) => {
                dst.copy_from_slice(s.as_bytes());
                self.len = end;
                Ok(())
            }
            None => {
                self.overflowed = true;
                Err(fmt::Error)
            }
        }
    }
}

#[cfg(test)]
mod tests;
