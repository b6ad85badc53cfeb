//! A minimal HTTP/1.1 responder: the primer's "answer a browser", done right.
//!
//! The primer sends `HTTP/1.1 200 OK\r\n\r\n` then the body. A real client also
//! wants a `Content-Length` (or a close) to know where the body ends, and a server
//! must first read the whole request head, which may come in any number of
//! segments. This handler gathers the head into a fixed buffer of `REQ` bytes,
//! parses it with [`wire::http`](crate::wire::http), renders the page for the path
//! into a fixed buffer of `RESP` bytes, sends head and body (over several polls if
//! the send buffer is small), and closes: one request per connection
//! (`Connection: close`), which keeps the state machine small.
//!
//! Answers: `200` with the page, `404` for an unknown path, `405` for a method
//! other than GET or HEAD, `400` for garbage, `431` for a head larger than `REQ`,
//! `505` for an HTTP version other than 1.0 or 1.1, `500` if the page does not fit
//! `RESP`.

use core::fmt::{self, Write as _};

use smoltcp::time::Instant;
use smoltcp::wire::IpEndpoint;

use crate::net::{Connection, End, Flow, Handler};
use crate::wire::http::{HttpError, Method, ResponseHead, Status, StatusCode, parse_request};

/// Headers a request may carry before it is refused with 431.
pub const MAX_HEADERS: usize = 24;

/// What the server has to say for a path.
pub trait Site {
    /// Writes the body for `path` and returns its content type, or `None` for 404.
    fn render(&self, path: &str, body: &mut dyn fmt::Write) -> Option<&'static str>;
}

/// A site with a home page that shows live counters.
///
/// `status` writes the counters; the runner keeps whatever it reads current (a
/// `Cell` updated each poll is enough: everything runs on one thread).
///
/// - `/`: an HTML page with the title and the status.
/// - `/stats`: the status as plain text.
pub struct StatusSite<'a> {
    title: &'a str,
    status: &'a dyn Fn(&mut dyn fmt::Write) -> fmt::Result,
}

impl<'a> StatusSite<'a> {
    /// A site called `title` whose status text `status` writes.
    pub const fn new(
        title: &'a str,
        status: &'a dyn Fn(&mut dyn fmt::Write) -> fmt::Result,
    ) -> Self {
        Self { title, status }
    }
}

impl Site for StatusSite<'_> {
    fn render(&self, path: &str, body: &mut dyn fmt::Write) -> Option<&'static str> {
        match path {
            "/" | "/index.html" => {
                let page = write!(
                    body,
                    "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title></head>\n\
                     <body><h1>{t}</h1>\n<p>Served by smolsock: TCP/IP in userspace on smoltcp, \
                     fixed memory, no heap.</p>\n<pre>\n",
                    t = self.title
                )
                .and_then(|()| (self.status)(body))
                .and_then(|()| body.write_str("</pre></body></html>\n"));
                page.ok().map(|()| "text/html; charset=utf-8")
            }
            "/stats" => (self.status)(body)
                .ok()
                .map(|()| "text/plain; charset=utf-8"),
            _ => None,
        }
    }
}

/// Counters of an [`HttpResponder`] slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct HttpStats {
    /// Requests parsed whole.
    pub requests: u64,
    /// 2xx answers.
    pub ok: u64,
    /// 4xx answers (bad request, not found, method, too large).
    pub client_errors: u64,
    /// 5xx answers.
    pub server_errors: u64,
    /// Connections that ended before a whole request head arrived.
    pub incomplete: u64,
}

impl HttpStats {
    /// Adds `other`'s counts to these (a pool's total over its slots).
    pub fn accumulate(&mut self, other: &HttpStats) {
        self.requests = self.requests.saturating_add(other.requests);
        self.ok = self.ok.saturating_add(other.ok);
        self.client_errors = self.client_errors.saturating_add(other.client_errors);
        self.server_errors = self.server_errors.saturating_add(other.server_errors);
        self.incomplete = self.incomplete.saturating_add(other.incomplete);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Gathering the request head.
    Reading,
    /// Sending head (from `head`) then body (from `body`); `sent` counts both.
    Responding {
        head_len: usize,
        body_len: usize,
        sent: usize,
    },
    /// Everything is queued; the connection closes.
    Done,
}

/// One HTTP connection: a request head of up to `REQ` bytes, a page of up to `RESP`.
pub struct HttpResponder<'a, S: ?Sized, const REQ: usize, const RESP: usize> {
    site: &'a S,
    request: [u8; REQ],
    request_len: usize,
    head: [u8; 256],
    body: [u8; RESP],
    state: State,
    stats: HttpStats,
}

impl<'a, S: Site + ?Sized, const REQ: usize, const RESP: usize> HttpResponder<'a, S, REQ, RESP> {
    /// A responder serving `site`.
    pub const fn new(site: &'a S) -> Self {
        Self {
            site,
            request: [0; REQ],
            request_len: 0,
            head: [0; 256],
            body: [0; RESP],
            state: State::Reading,
            stats: HttpStats {
                requests: 0,
                ok: 0,
                client_errors: 0,
                server_errors: 0,
                incomplete: 0,
            },
        }
    }

    /// The counters, over every connection this slot served.
    pub const fn stats(&self) -> &HttpStats {
        &self.stats
    }

    /// Prepares the answer to the request head gathered so far, if it is complete
    /// or broken. `None`: need more bytes.
    fn answer(&mut self) -> Option<State> {
        let gathered = self.request.get(..self.request_len).unwrap_or(&[]);
        let (status, route) = match parse_request::<MAX_HEADERS>(gathered) {
            Ok(Status::Partial) if self.request_len < REQ => return None,
            Ok(Status::Partial) => (HttpError::for_full_buffer(gathered).status(), None),
            Err(e) => (e.status(), None),
            Ok(Status::Complete { request, .. }) => {
                self.stats.requests = self.stats.requests.saturating_add(1);
                match request.method() {
                    Method::Get => (StatusCode::OK, Some((request.path(), true))),
                    Method::Head => (StatusCode::OK, Some((request.path(), false))),
                    _ => (StatusCode::METHOD_NOT_ALLOWED, None),
                }
            }
        };

        let mut body = SliceWriter::new(&mut self.body);
        let (status, content_type, with_body) = match route {
            Some((path, with_body)) => match self.site.render(path, &mut body) {
                Some(kind) if !body.overflowed => (status, kind, with_body),
                Some(_) => {
                    body.clear();
                    let _ = writeln!(body, "{}", StatusCode::INTERNAL_SERVER_ERROR);
                    (StatusCode::INTERNAL_SERVER_ERROR, "text/plain", true)
                }
                None => {
                    body.clear();
                    let _ = writeln!(body, "{}", StatusCode::NOT_FOUND);
                    (StatusCode::NOT_FOUND, "text/plain", with_body)
                }
            },
            None => {
                let _ = writeln!(body, "{status}");
                (status, "text/plain", true)
            }
        };
        let body_len = body.len;
        let counter = match status.as_u16() {
            200..=299 => &mut self.stats.ok,
            400..=499 => &mut self.stats.client_errors,
            _ => &mut self.stats.server_errors,
        };
        *counter = counter.saturating_add(1);

        let mut head = ResponseHead::new(status, Some(content_type), body_len);
        head.close = true;
        let head_len = head.emit(&mut self.head).unwrap_or(0);
        Some(State::Responding {
            head_len,
            // A HEAD answer announces the length but sends no body.
            body_len: if with_body { body_len } else { 0 },
            sent: 0,
        })
    }
}

impl<S: Site + ?Sized, const REQ: usize, const RESP: usize> Handler
    for HttpResponder<'_, S, REQ, RESP>
{
    fn setup(&mut self, _peer: IpEndpoint, _now: Instant) {
        self.request_len = 0;
        self.state = State::Reading;
    }

    fn on_data(&mut self, conn: &mut Connection<'_, '_>) -> Flow {
        if self.state == State::Reading {
            let free = self.request.get_mut(self.request_len..).unwrap_or(&mut []);
            let n = conn.recv(free);
            self.request_len = self.request_len.saturating_add(n);
            match self.answer() {
                Some(state) => self.state = state,
                None if conn.peer_finished() => {
                    self.stats.incomplete = self.stats.incomplete.saturating_add(1);
                    return Flow::Close;
                }
                None => return Flow::Continue,
            }
        }
        if let State::Responding {
            head_len,
            body_len,
            mut sent,
        } = self.state
        {
            let parts = [
                (self.head.get(..head_len), 0),
                (self.body.get(..body_len), head_len),
            ];
            for (part, start) in parts {
                let from = sent.saturating_sub(start);
                if let Some(rest) = part.and_then(|p| p.get(from..)).filter(|r| !r.is_empty()) {
                    sent = sent.saturating_add(conn.send(rest));
                }
            }
            self.state = if sent >= head_len.saturating_add(body_len) {
                State::Done
            } else {
                State::Responding {
                    head_len,
                    body_len,
                    sent,
                }
            };
        }
        match self.state {
            // Whatever else the client sends is ignored: one request per connection.
            State::Done => Flow::Close,
            _ => Flow::Wait,
        }
    }

    fn finish(&mut self, end: End) {
        if self.state == State::Reading && self.request_len > 0 && end != End::Closed {
            self.stats.incomplete = self.stats.incomplete.saturating_add(1);
        }
    }

    fn wants_to_send(&self) -> bool {
        matches!(self.state, State::Responding { .. })
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

    fn clear(&mut self) {
        self.len = 0;
        self.overflowed = false;
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
mod tests {
    use super::*;

    #[test]
    fn stats_accumulate_every_counter_and_saturate() {
        let one = HttpStats {
            requests: 1,
            ok: 2,
            client_errors: 3,
            server_errors: 4,
            incomplete: 5,
        };
        let mut total = HttpStats {
            requests: u64::MAX,
            ..HttpStats::default()
        };
        total.accumulate(&one);
        total.accumulate(&one);
        let expected = HttpStats {
            requests: u64::MAX,
            ok: 4,
            client_errors: 6,
            server_errors: 8,
            incomplete: 10,
        };
        assert_eq!(total, expected);
    }

    #[test]
    fn slice_writer_reports_overflow_instead_of_cutting_silently() {
        let mut buf = [0u8; 4];
        let mut w = SliceWriter::new(&mut buf);
        assert!(w.write_str("abc").is_ok());
        assert!(w.write_str("de").is_err());
        assert!(w.overflowed);
        assert_eq!(w.len, 3);
    }

    #[test]
    fn status_site_routes_and_shows_the_status() {
        let status = |w: &mut dyn fmt::Write| w.write_str("frames: 7");
        let site = StatusSite::new("demo", &status);
        let mut page = heapless::String::<512>::new();
        assert_eq!(
            site.render("/", &mut page),
            Some("text/html; charset=utf-8")
        );
        assert!(page.contains("<h1>demo</h1>") && page.contains("frames: 7"));
        let mut text = heapless::String::<64>::new();
        assert_eq!(
            site.render("/stats", &mut text),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(text, "frames: 7");
        assert_eq!(site.render("/nope", &mut text), None);
    }
}
