//! The wire half of a minimal HTTP/1.1 responder: a request-head parser and a
//! response-head writer, both over caller-owned byte slices.
//!
//! This is where the primer's "answer a browser" topic lives. A browser sends a
//! request head (request line, header fields, blank line) that may arrive in any
//! number of TCP segments; the service accumulates the bytes in a fixed buffer and
//! calls [`parse_request`] on everything it has so far, each time more arrives. The
//! parser answers [`Status::Partial`] (need more bytes, not an error),
//! [`Status::Complete`] with the request and the length of its head, or an
//! [`HttpError`] that maps straight to the status code to answer with
//! ([`HttpError::status`]). The answer goes out through [`ResponseHead::emit`], which
//! writes the status line the primer gets wrong (`HTTP/1/1`) right:
//! `HTTP/1.1 200 OK\r\n`, then `Content-Type`, `Content-Length` and a blank line.
//!
//! No allocation, no panics, no I/O: header names and values are `&str` slices
//! borrowed from the caller's buffer, and the number of headers kept is the const
//! generic `H` of [`Request`].
//!
//! # What is accepted
//!
//! - Request line `METHOD SP target SP HTTP/1.x`, single spaces, with a method that
//!   is a token (case-sensitive: `get` is [`Method::Other`]), a target in origin form
//!   (starting with `/`), in absolute form (`http://host/path`, which a server must
//!   accept, RFC 9112 §3.2.2: see [`Request::target`] and [`Request::host`]) or `*`,
//!   and version `HTTP/1.0` or `HTTP/1.1` (a later 1.x is taken as 1.1). An
//!   absolute target of a scheme other than `http` or `https`, and any target
//!   with a fragment (`#`), is refused (400);
//!   one with user information (`http://user@host/`) or with no host has its host
//!   refused by [`Request::host`] (400). Other well-formed versions (`HTTP/2.0`)
//!   give 505; malformed ones (`HTTP/1/1`, `http/1.1`) give 400.
//! - Lines end with `\r\n`. A bare `\n` is also accepted as a line end (RFC 9112
//!   §2.2 allows it), so a request typed by hand into `nc` works; a `\r` not
//!   followed by `\n` is an error. Empty lines before the request line are skipped
//!   (RFC 9112 §2.2) and counted in the head length.
//! - Header lines `name: value`: the name a non-empty token with nothing between it
//!   and the colon; the value any visible ASCII, spaces, tabs and UTF-8, with
//!   surrounding spaces and tabs trimmed. Rejected: obsolete line folding (a line
//!   starting with a space or tab), NUL and other control characters, a missing
//!   colon, and values that are not UTF-8 (they could not be handed out as `&str`;
//!   refused at the first byte that no UTF-8 text can hold there, not only when the
//!   line ends).
//!
//! Errors are found as early as the bytes allow, so a garbage request is answered
//! with 400 at once rather than after the buffer fills up.
//!
//! # A full buffer
//!
//! The parser does not know the size of the caller's buffer. A caller whose buffer
//! is full and still gets [`Status::Partial`] must stop reading and answer with
//! [`HttpError::for_full_buffer`] (431 Request Header Fields Too Large, or 414 URI
//! Too Long when not even the request line fit), then close.
//!
//! Whatever the error, [`is_head_request`] tells whether the refused head was a
//! HEAD request, whose answer must carry no body (RFC 9110 §9.3.2).

use core::fmt;

/// The outcome of parsing a buffer that may hold only part of a request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status<T> {
    /// The head is not complete yet: read more bytes, append them, parse again.
    /// This is not an error.
    Partial,
    /// The whole head arrived.
    Complete {
        /// What was parsed; borrows from the buffer.
        request: T,
        /// Bytes from the start of the buffer up to and including the blank line
        /// that ends the head. Whatever follows (a body, a pipelined request) starts
        /// at this offset.
        head_len: usize,
    },
}

impl<T> Status<T> {
    /// Whether the head is still incomplete.
    pub const fn is_partial(&self) -> bool {
        matches!(self, Status::Partial)
    }
}

/// Why a request head was refused. Each maps to the status code to answer with
/// through [`HttpError::status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum HttpError {
    /// The method is empty or not a token (400).
    InvalidMethod,
    /// Nothing between the method and the version (400).
    MissingTarget,
    /// The target does not start with `/`, is not `*` and is no absolute
    /// `http` or `https` URI, or holds a fragment (`#`) or a byte that is not
    /// visible ASCII (400).
    InvalidTarget,
    /// The version is missing or not of the form `HTTP/d.d` (400).
    InvalidVersion,
    /// A well-formed version other than `HTTP/1.0` and `HTTP/1.1` (505).
    UnsupportedVersion,
    /// A `\r` not followed by `\n`, or stray bytes before the line end (400).
    InvalidLineEnding,
    /// A header line starts with a space or tab: obsolete line folding, or
    /// whitespace between the request line and the first header (400).
    ObsoleteLineFolding,
    /// A header name is empty or holds a byte that is not a token byte (400).
    InvalidHeaderName,
    /// Whitespace between a header name and its colon (400).
    WhitespaceInHeaderName,
    /// A header line has no colon (400).
    MissingColon,
    /// A header value holds a control character (NUL included) or is not UTF-8 (400).
    InvalidHeaderValue,
    /// More header fields than the parser was given room for (431).
    TooManyHeaders,
    /// The head did not fit in the caller's buffer (431). Only the caller can know
    /// this; see [`HttpError::for_full_buffer`].
    HeadTooLarge,
    /// The request line alone did not fit in the caller's buffer (414). See
    /// [`HttpError::for_full_buffer`].
    UriTooLong,
    /// A `Content-Length` value is not a list of decimal digits or does not fit in
    /// a `u64` (400).
    InvalidContentLength,
    /// Several `Content-Length` values that disagree (400).
    ConflictingContentLength,
    /// A `Transfer-Encoding` field that leaves where the body ends unknown
    /// ([`Request::body_framing`]: chunked not the final coding, or not once, or
    /// no coding at all; with a `Content-Length` too; in an HTTP/1.0 request), or
    /// any `Transfer-Encoding` for [`Request::body_length`] (400).
    TransferEncoding,
    /// A transfer coding other than chunked, before the final chunked one (501,
    /// RFC 9112 §6.1). See [`Request::body_framing`].
    UnknownTransferCoding,
    /// An HTTP/1.1 request with no `Host` field, any request with more than one,
    /// or a `Host` value that is not a host and an optional port (400, RFC 9112
    /// §3.2). See [`Request::host`].
    InvalidHost,
}

impl HttpError {
    /// The status code a server answers this error with.
    pub const fn status(&self) -> StatusCode {
        match self {
            HttpError::UnsupportedVersion => StatusCode::VERSION_NOT_SUPPORTED,
            HttpError::TooManyHeaders | HttpError::HeadTooLarge => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            HttpError::UriTooLong => StatusCode::URI_TOO_LONG,
            HttpError::UnknownTransferCoding => StatusCode::NOT_IMPLEMENTED,
            HttpError::InvalidMethod
            | HttpError::MissingTarget
            | HttpError::InvalidTarget
            | HttpError::InvalidVersion
            | HttpError::InvalidLineEnding
            | HttpError::ObsoleteLineFolding
            | HttpError::InvalidHeaderName
            | HttpError::WhitespaceInHeaderName
            | HttpError::MissingColon
            | HttpError::InvalidHeaderValue
            | HttpError::InvalidContentLength
            | HttpError::ConflictingContentLength
            | HttpError::TransferEncoding
            | HttpError::InvalidHost => StatusCode::BAD_REQUEST,
        }
    }

    /// The error for a buffer that is full while [`parse_request`] still says
    /// [`Status::Partial`]: [`HttpError::UriTooLong`] if the request line has not
    /// ended yet, else [`HttpError::HeadTooLarge`].
    ///
    /// `buf` is the full buffer. Call this only after a `Partial` on it; on other
    /// input the answer means nothing.
    pub fn for_full_buffer(buf: &[u8]) -> HttpError {
        let request_line = skip_empty_lines_lossy(buf);
        if request_line.contains(&b'\n') {
            HttpError::HeadTooLarge
        } else {
            HttpError::UriTooLong
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            HttpError::InvalidMethod => "invalid request method",
            HttpError::MissingTarget => "missing request target",
            HttpError::InvalidTarget => "invalid request target",
            HttpError::InvalidVersion => "malformed HTTP version",
            HttpError::UnsupportedVersion => "HTTP version not supported",
            HttpError::InvalidLineEnding => "invalid line ending",
            HttpError::ObsoleteLineFolding => "obsolete header line folding",
            HttpError::InvalidHeaderName => "invalid header name",
            HttpError::WhitespaceInHeaderName => "whitespace between header name and colon",
            HttpError::MissingColon => "header line without a colon",
            HttpError::InvalidHeaderValue => "invalid header value",
            HttpError::TooManyHeaders => "too many header fields",
            HttpError::HeadTooLarge => "request head too large",
            HttpError::UriTooLong => "request line too long",
            HttpError::InvalidContentLength => "invalid Content-Length",
            HttpError::ConflictingContentLength => "conflicting Content-Length values",
            HttpError::TransferEncoding => "a Transfer-Encoding that does not frame the body",
            HttpError::UnknownTransferCoding => "a transfer coding other than chunked",
            HttpError::InvalidHost => "missing, repeated or invalid Host field",
        };
        f.write_str(text)
    }
}

impl core::error::Error for HttpError {}

/// A request method. The standard ones get their own variant; any other token
/// is kept as [`Method::Other`]. Methods are case-sensitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Method<'b> {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
    /// `OPTIONS`
    Options,
    /// `PATCH`
    Patch,
    /// `TRACE`
    Trace,
    /// `CONNECT`
    Connect,
    /// Any other token, as sent.
    Other(&'b str),
}

impl<'b> Method<'b> {
    fn from_token(token: &'b str) -> Self {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            "PATCH" => Method::Patch,
            "TRACE" => Method::Trace,
            "CONNECT" => Method::Connect,
            other => Method::Other(other),
        }
    }

    /// The method as it appears on the wire.
    pub const fn as_str(&self) -> &'b str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Patch => "PATCH",
            Method::Trace => "TRACE",
            Method::Connect => "CONNECT",
            Method::Other(token) => token,
        }
    }
}

impl fmt::Display for Method<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The HTTP versions this parser accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Version {
    /// `HTTP/1.0`
    Http10,
    /// `HTTP/1.1`
    Http11,
}

/// One header field, borrowed from the request buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Header<'b> {
    /// The field name as sent (compare it case-insensitively).
    pub name: &'b str,
    /// The field value with surrounding spaces and tabs removed.
    pub value: &'b str,
}

/// A parsed request head. Keeps at most `H` header fields; a request with more is
/// refused with [`HttpError::TooManyHeaders`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'b, const H: usize> {
    method: Method<'b>,
    target: &'b str,
    /// An absolute target's host and port, or CONNECT's target; `None` for
    /// another target.
    authority: Option<&'b str>,
    version: Version,
    headers: heapless::Vec<Header<'b>, H>,
}

impl<'b, const H: usize> Request<'b, H> {
    /// The request method.
    pub const fn method(&self) -> Method<'b> {
        self.method
    }

    /// The request target in origin form: starts with `/`, or is `*`. Of an
    /// absolute target (`http://host/path?query`), the part from its path on,
    /// which starts with `?` if it has a query and no path (`http://host?q`
    /// gives `?q`) and is empty if it has neither (the path is then `/`, as
    /// [`path`](Self::path) says); the host is [`host`](Self::host)'s. Of a
    /// CONNECT request, its host and port (`example.com:443`), which are
    /// [`host`](Self::host)'s too.
    pub const fn target(&self) -> &'b str {
        self.target
    }

    /// The target's path: the part before the first `?`; `/` for an absolute
    /// target with no path (RFC 9110 §4.2.3).
    ///
    /// ```
    /// use smolsock::wire::http::{parse_request, Status};
    ///
    /// let path = |head: &'static [u8]| match parse_request::<8>(head) {
    ///     Ok(Status::Complete { request, .. }) => request.path(),
    ///     other => panic!("{other:?}"),
    /// };
    /// assert_eq!(path(b"GET /stats?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"), "/stats");
    /// assert_eq!(path(b"GET http://a:80/stats?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"), "/stats");
    /// assert_eq!(path(b"GET HTTP://a?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"), "/");
    /// ```
    pub fn path(&self) -> &'b str {
        let path = match self.target.split_once('?') {
            Some((path, _)) => path,
            None => self.target,
        };
        // Only an absolute target's can be empty.
        if path.is_empty() { "/" } else { path }
    }

    /// The query (the part after the first `?`), if the target has one.
    pub fn query(&self) -> Option<&'b str> {
        self.target.split_once('?').map(|(_, query)| query)
    }

    /// The protocol version.
    pub const fn version(&self) -> Version {
        self.version
    }

    /// Every header field, in the order received.
    pub fn headers(&self) -> &[Header<'b>] {
        &self.headers
    }

    /// The value of the first header field called `name`, compared
    /// case-insensitively.
    pub fn header(&self, name: &str) -> Option<&'b str> {
        self.header_values(name).next()
    }

    /// The values of every header field called `name`, compared
    /// case-insensitively, in the order received.
    pub fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'b str> + 's {
        self.headers
            .iter()
            .filter(move |header| header.name.eq_ignore_ascii_case(name))
            .map(|header| header.value)
    }

    /// Whether the client wants the connection kept open after the response.
    ///
    /// HTTP/1.1 keeps it open unless a `Connection` field lists `close`; HTTP/1.0
    /// closes it unless a `Connection` field lists `keep-alive`. `close` wins when
    /// both are listed.
    pub fn keep_alive(&self) -> bool {
        let mut asked_keep_alive = false;
        for value in self.header_values("connection") {
            for option in value.split(',').map(trim_ows) {
                if option.eq_ignore_ascii_case("close") {
                    return false;
                }
                if option.eq_ignore_ascii_case("keep-alive") {
                    asked_keep_alive = true;
                }
            }
        }
        match self.version {
            Version::Http11 => true,
            Version::Http10 => asked_keep_alive,
        }
    }

    /// The `Host` field's value: required once in an HTTP/1.1 request, at most
    /// once in an HTTP/1.0 one, and valid ([`HttpError::InvalidHost`] otherwise;
    /// RFC 9112 §3.2).
    ///
    /// A valid value is `uri-host [ ":" port ]` (RFC 3986 §3.2.2, §3.2.3): a name
    /// (letters, digits, `-._~!$&'()*+,;=` and `%` with two hex digits, which
    /// covers IPv4 addresses) or an `IP-literal`, then optionally a colon and
    /// decimal digits. An `IP-literal` is, in brackets, a valid IPv6 address
    /// (`[::1]`, `[::ffff:10.0.2.15]`; not `[1::2::3]` or `[:::]`) with or
    /// without `%25` and a zone id of letters, digits, `-._~` and `%` with two
    /// hex digits (`[fe80::1%25eth0]`, RFC 6874: what clients send for a
    /// link-local address), or an `IPvFuture`: `v`, hex digits, a dot, then name
    /// characters other than `%`, and colons (`[v1.x:y]`, a form RFC 3986 keeps
    /// for address formats to come). The empty value is valid too: a client
    /// sends it when the target has no authority, and the server then uses its
    /// own name (RFC 9112 §3.2, §3.3). A port without a host (`:80`) is not.
    ///
    /// A request with an absolute target names its host there: this is then
    /// the target's host and port, whatever the `Host` field says (RFC 9112
    /// §3.2.2), though that field must still be valid, and present in
    /// HTTP/1.1. The target's must be a valid host, not empty, with no user
    /// information (`http://user@a/`: RFC 9110 §4.2.1, §4.2.4).
    ///
    /// ```
    /// use smolsock::wire::http::{parse_request, HttpError, Status};
    ///
    /// let host = |head: &[u8]| match parse_request::<8>(head) {
    ///     Ok(Status::Complete { request, .. }) => request.host().map(|h| h.map(str::to_owned)),
    ///     other => panic!("{other:?}"),
    /// };
    /// assert_eq!(host(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Ok(Some("a".into())));
    /// assert_eq!(host(b"GET / HTTP/1.0\r\n\r\n"), Ok(None));
    /// assert_eq!(host(b"GET / HTTP/1.1\r\n\r\n"), Err(HttpError::InvalidHost));
    /// assert_eq!(host(b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"), Err(HttpError::InvalidHost));
    /// assert_eq!(host(b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n"), Ok(Some("[::1]:80".into())));
    /// assert_eq!(
    ///     host(b"GET / HTTP/1.1\r\nHost: [fe80::1%25eth0]:8080\r\n\r\n"),
    ///     Ok(Some("[fe80::1%25eth0]:8080".into()))
    /// );
    /// assert_eq!(host(b"GET / HTTP/1.1\r\nHost: [1::2::3]\r\n\r\n"), Err(HttpError::InvalidHost));
    /// assert_eq!(host(b"GET / HTTP/1.1\r\nHost: a b/c@d\r\n\r\n"), Err(HttpError::InvalidHost));
    /// assert_eq!(host(b"GET http://b:8080/ HTTP/1.1\r\nHost: a\r\n\r\n"), Ok(Some("b:8080".into())));
    /// assert_eq!(host(b"GET http://b/ HTTP/1.1\r\n\r\n"), Err(HttpError::InvalidHost));
    /// ```
    pub fn host(&self) -> Result<Option<&'b str>, HttpError> {
        let mut values = self.header_values("host");
        let first = values.next();
        let valid = match first {
            Some(value) => is_host_value(value.as_bytes()),
            None => self.version == Version::Http10,
        };
        // An absolute target's host, which must be there.
        let named = self
            .authority
            .is_none_or(|authority| !authority.is_empty() && is_host_value(authority.as_bytes()));
        if values.next().is_some() || !valid || !named {
            return Err(HttpError::InvalidHost);
        }
        Ok(self.authority.or(first))
    }

    /// The body length announced by `Content-Length`, or `None` if there is no such
    /// field.
    ///
    /// Several fields, or a comma-separated list in one, are accepted only if every
    /// value is the same (RFC 9110 §8.6). A value that is not all decimal digits or
    /// overflows a `u64` is [`HttpError::InvalidContentLength`]; values that
    /// disagree are [`HttpError::ConflictingContentLength`].
    pub fn content_length(&self) -> Result<Option<u64>, HttpError> {
        let mut found: Option<u64> = None;
        for value in self.header_values("content-length") {
            for item in value.split(',') {
                let length = parse_decimal_u64(trim_ows(item))?;
                match found {
                    Some(previous) if previous != length => {
                        return Err(HttpError::ConflictingContentLength);
                    }
                    _ => found = Some(length),
                }
            }
        }
        Ok(found)
    }

    /// The length of the body, for a server that takes only bodies framed by
    /// `Content-Length`: that length, or 0 with no such field.
    ///
    /// Any `Transfer-Encoding` field is [`HttpError::TransferEncoding`], with or
    /// without `Content-Length`: RFC 9112 §6.3 requires 400 when chunked is not
    /// the final coding, and allows it when both fields are sent. Errors of
    /// [`content_length`](Self::content_length) are passed on. A server that
    /// can take a chunked body, or throws every body away, asks
    /// [`body_framing`](Self::body_framing).
    pub fn body_length(&self) -> Result<u64, HttpError> {
        if self.header("transfer-encoding").is_some() {
            return Err(HttpError::TransferEncoding);
        }
        Ok(self.content_length()?.unwrap_or(0))
    }

    /// How the body that follows the head is framed (RFC 9112 §6.3): by
    /// `Content-Length` (0 without one), or chunked.
    ///
    /// A `Transfer-Encoding` frames the body when its last coding is `chunked`,
    /// applied once and with no parameters (the codings of every such field in
    /// order, compared case-insensitively, empty list elements left aside). One
    /// whose last coding is another, or that names chunked twice, with a
    /// parameter (RFC 9112 §7.1) or no coding at all, is
    /// [`HttpError::TransferEncoding`] (400: where the body ends is unknown), as is
    /// one in an HTTP/1.0 request (§6.1 has the framing taken as faulty) or beside
    /// a `Content-Length` (§6.3 allows refusing it: such a head may be an attempt
    /// at request smuggling). Codings other than chunked before it are
    /// [`HttpError::UnknownTransferCoding`] (501, §6.1: none is decoded here).
    /// Errors of [`content_length`](Self::content_length) are passed on.
    ///
    /// ```
    /// use smolsock::wire::http::{parse_request, BodyFraming, HttpError, Status};
    ///
    /// let framing = |head: &[u8]| match parse_request::<8>(head) {
    ///     Ok(Status::Complete { request, .. }) => request.body_framing(),
    ///     other => panic!("{other:?}"),
    /// };
    /// let head = |fields: &str| format!("POST / HTTP/1.1\r\nHost: a\r\n{fields}\r\n");
    /// assert_eq!(framing(head("").as_bytes()), Ok(BodyFraming::Length(0)));
    /// assert_eq!(framing(head("Content-Length: 5\r\n").as_bytes()), Ok(BodyFraming::Length(5)));
    /// assert_eq!(framing(head("Transfer-Encoding: Chunked\r\n").as_bytes()), Ok(BodyFraming::Chunked));
    /// assert_eq!(
    ///     framing(head("Transfer-Encoding: gzip, chunked\r\n").as_bytes()),
    ///     Err(HttpError::UnknownTransferCoding)
    /// );
    /// assert_eq!(
    ///     framing(head("Transfer-Encoding: chunked, gzip\r\n").as_bytes()),
    ///     Err(HttpError::TransferEncoding)
    /// );
    /// ```
    pub fn body_framing(&self) -> Result<BodyFraming, HttpError> {
        // The codings of every Transfer-Encoding field in turn, and whether
        // each is chunked: the last must be, and only it.
        let (mut fields, mut length_too) = (0usize, false);
        let (mut last_chunked, mut chunked, mut unknown) = (false, 0usize, false);
        for Header { name, value } in self.headers.iter() {
            if name.eq_ignore_ascii_case("content-length") {
                length_too = true;
            }
            if !name.eq_ignore_ascii_case("transfer-encoding") {
                continue;
            }
            fields = fields.saturating_add(1);
            for item in value.as_bytes().split(|&b| b == b',') {
                let (coding, parameters) = split_while(item, |b| b != b';');
                let coding = trim_ows_bytes(coding);
                if coding.is_empty() {
                    // An empty list element is left aside; parameters with no
                    // coding (`;x`) are no element of the list at all.
                    if parameters.is_empty() {
                        continue;
                    }
                    return Err(HttpError::TransferEncoding);
                }
                last_chunked = coding.eq_ignore_ascii_case(b"chunked");
                // Chunked has no parameters, and any is an error (RFC 9112
                // §7.1): a parser further on may not take it for chunked.
                if last_chunked && !parameters.is_empty() {
                    return Err(HttpError::TransferEncoding);
                }
                if last_chunked {
                    chunked = chunked.saturating_add(1);
                } else {
                    unknown = true;
                }
            }
        }
        if fields == 0 {
            return Ok(BodyFraming::Length(self.content_length()?.unwrap_or(0)));
        }
        if self.version == Version::Http10 || length_too {
            return Err(HttpError::TransferEncoding);
        }
        match (last_chunked && chunked == 1, unknown) {
            (false, _) => Err(HttpError::TransferEncoding),
            (true, true) => Err(HttpError::UnknownTransferCoding),
            (true, false) => Ok(BodyFraming::Chunked),
        }
    }
}

/// How a request's body is framed: see [`Request::body_framing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum BodyFraming {
    /// `Content-Length` bytes (0 without the field).
    Length(u64),
    /// Chunked (RFC 9112 §7.1): chunks up to one of size zero, then trailer
    /// fields and an empty line.
    Chunked,
}

/// Parses the request head at the start of `buf`, keeping at most `H` header fields.
///
/// `buf` holds every byte received so far on the connection (or since the last
/// request ended). Call again on the grown buffer after each read: a prefix of a
/// valid head always gives [`Status::Partial`], and errors are reported as soon as
/// the bytes seen prove the head bad. See the [module docs](self) for what is
/// accepted, and for what to do when the buffer is full.
///
/// ```
/// use smolsock::wire::http::{parse_request, Method, Status};
///
/// let buf = b"GET /index.html HTTP/1.1\r\nHost: 192.168.69.1\r\n\r\n";
/// assert_eq!(parse_request::<8>(&buf[..20]), Ok(Status::Partial));
/// let Ok(Status::Complete { request, head_len }) = parse_request::<8>(buf) else {
///     panic!("a whole head");
/// };
/// assert_eq!(request.method(), Method::Get);
/// assert_eq!(request.path(), "/index.html");
/// assert_eq!(request.header("HOST"), Some("192.168.69.1"));
/// assert_eq!(head_len, buf.len());
/// ```
pub fn parse_request<'b, const H: usize>(
    buf: &'b [u8],
) -> Result<Status<Request<'b, H>>, HttpError> {
    match parse_head(buf)? {
        Step::Done((request, rest)) => Ok(Status::Complete {
            request,
            head_len: buf.len().saturating_sub(rest.len()),
        }),
        Step::NeedMore => Ok(Status::Partial),
    }
}

/// Whether the request line at the start of `buf` (after any CR and LF bytes)
/// begins with the method `HEAD` and a space, however the rest of the head turns
/// out: a server refusing a head can still tell a HEAD request, whose answer has
/// no body.
///
/// ```
/// use smolsock::wire::http::is_head_request;
///
/// assert!(is_head_request(b"HEAD / HTTP/2.0\r\n\r\n"));
/// assert!(is_head_request(b"\r\nHEAD /"));
/// assert!(!is_head_request(b"HEAD"));
/// assert!(!is_head_request(b"HEADER / HTTP/1.1\r\n"));
/// assert!(!is_head_request(b"head / HTTP/1.1\r\n"));
/// ```
pub fn is_head_request(buf: &[u8]) -> bool {
    skip_empty_lines_lossy(buf).starts_with(b"HEAD ")
}

/// A parsing step: done with a value, or out of bytes.
enum Step<T> {
    Done(T),
    NeedMore,
}

/// Unwraps a [`Step::Done`], or returns `Ok(Step::NeedMore)` from the caller.
macro_rules! done {
    ($step:expr) => {
        match $step {
            Step::Done(value) => value,
            Step::NeedMore => return Ok(Step::NeedMore),
        }
    };
}

type Parsed<'b, T> = Result<Step<(T, &'b [u8])>, HttpError>;

fn parse_head<'b, const H: usize>(buf: &'b [u8]) -> Parsed<'b, Request<'b, H>> {
    let rest = done!(skip_empty_lines(buf)?);
    let (method, rest) = done!(parse_method(rest)?);
    let connect = matches!(method, Method::Connect);
    let ((target, authority), rest) = done!(parse_target(rest, connect)?);
    let (version, rest) = done!(parse_version(rest)?);
    let mut request = Request {
        method,
        target,
        authority,
        version,
        headers: heapless::Vec::new(),
    };
    let mut rest = rest;
    loop {
        match rest.first() {
            None => return Ok(Step::NeedMore),
            Some(b'\r' | b'\n') => {
                let rest = done!(line_end(rest, HttpError::InvalidLineEnding)?);
                return Ok(Step::Done((request, rest)));
            }
            Some(b' ' | b'\t') => return Err(HttpError::ObsoleteLineFolding),
            Some(_) => {
                let (header, after) = done!(parse_header(rest)?);
                request
                    .headers
                    .push(header)
                    .map_err(|_| HttpError::TooManyHeaders)?;
                rest = after;
            }
        }
    }
}

/// Skips the empty lines a client may send before the request line.
fn skip_empty_lines(mut rest: &[u8]) -> Result<Step<&[u8]>, HttpError> {
    while let Some(b'\r' | b'\n') = rest.first() {
        rest = done!(line_end(rest, HttpError::InvalidLineEnding)?);
    }
    Ok(Step::Done(rest))
}

/// Like [`skip_empty_lines`] but never fails, for [`HttpError::for_full_buffer`].
fn skip_empty_lines_lossy(buf: &[u8]) -> &[u8] {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    buf.get(start..).unwrap_or_default()
}

/// Consumes a line end (`\r\n` or a bare `\n`) at the start of `rest`; any other
/// byte there is `wrong`.
fn line_end(rest: &[u8], wrong: HttpError) -> Result<Step<&[u8]>, HttpError> {
    match rest {
        [] | [b'\r'] => Ok(Step::NeedMore),
        [b'\r', b'\n', after @ ..] | [b'\n', after @ ..] => Ok(Step::Done(after)),
        [b'\r', ..] => Err(HttpError::InvalidLineEnding),
        _ => Err(wrong),
    }
}

/// Splits `rest` after its longest prefix of bytes for which `keep` holds.
fn split_while(rest: &[u8], keep: impl Fn(u8) -> bool) -> (&[u8], &[u8]) {
    let end = rest.iter().position(|&b| !keep(b)).unwrap_or(rest.len());
    rest.split_at_checked(end).unwrap_or((rest, &[]))
}

fn parse_method(rest: &[u8]) -> Parsed<'_, Method<'_>> {
    let (token, after) = split_while(rest, is_tchar);
    match after.first() {
        None => Ok(Step::NeedMore),
        Some(b' ') if !token.is_empty() => {
            let token = core::str::from_utf8(token).map_err(|_| HttpError::InvalidMethod)?;
            Ok(Step::Done((
                Method::from_token(token),
                after.get(1..).unwrap_or_default(),
            )))
        }
        Some(_) => Err(HttpError::InvalidMethod),
    }
}

/// A target in origin form (an absolute one's from its path on), and an absolute
/// one's authority; CONNECT's target (its authority form) is both.
type Target<'b> = (&'b str, Option<&'b str>);

/// `connect`: the method is CONNECT, whose target is a host and a port alone
/// (its authority form, RFC 9112 §3.2.3), which no other method's may be.
fn parse_target(rest: &[u8], connect: bool) -> Parsed<'_, Target<'_>> {
    let absolute = match rest.first() {
        None => return Ok(Step::NeedMore),
        Some(b' ' | b'\r' | b'\n') => return Err(HttpError::MissingTarget),
        Some(_) if connect => false,
        Some(b'/' | b'*') => false,
        Some(b) if b.is_ascii_alphabetic() => true,
        Some(_) => return Err(HttpError::InvalidTarget),
    };
    let (target, after) = split_while(rest, |b| b.is_ascii_graphic());
    // No fragment: a request target has none (RFC 9112 §3.2, RFC 3986 §4.3).
    if target.first() == Some(&b'*') && target.len() > 1 || target.contains(&b'#') {
        return Err(HttpError::InvalidTarget);
    }
    // A host, then a port (`Request::host` checks the host): no path, no
    // query, no user.
    let authority_form = |target: &[u8]| {
        target.last().is_some_and(u8::is_ascii_digit)
            && target.contains(&b':')
            && !target.iter().any(|&b| matches!(b, b'/' | b'?' | b'@'))
    };
    if connect && !after.is_empty() && !authority_form(target) {
        return Err(HttpError::InvalidTarget);
    }
    let (authority, target) = match absolute {
        true => split_absolute(target, !after.is_empty())?,
        false if connect => (Some(target), target),
        false => (None, target),
    };
    match after.first() {
        None => Ok(Step::NeedMore),
        Some(b' ') => {
            let utf8 = |bytes| core::str::from_utf8(bytes).map_err(|_| HttpError::InvalidTarget);
            let authority = match authority {
                Some(authority) => Some(utf8(authority)?),
                None => None,
            };
            let parts = (utf8(target)?, authority);
            Ok(Step::Done((parts, after.get(1..).unwrap_or_default())))
        }
        // `GET /` and a line end is HTTP/0.9, which has no version.
        Some(b'\r' | b'\n') => Err(HttpError::InvalidVersion),
        Some(_) => Err(HttpError::InvalidTarget),
    }
}

/// Splits a target that starts with a letter, which must be an absolute `http`
/// or `https` URI, into its authority (host and port, up to the first `/` or
/// `?`; [`Request::host`] checks it) and the rest. Refused as soon as its
/// first bytes differ from `http://` and `https://` (compared
/// case-insensitively); not `whole` yet, split only once it is.
fn split_absolute(target: &[u8], whole: bool) -> Result<(Option<&[u8]>, &[u8]), HttpError> {
    const HTTPS: &[u8] = b"https://";
    // The bytes matched so far of `https://`, whose `s` is optional, and the
    // bytes of the target they took.
    let (mut matched, mut taken) = (0usize, 0usize);
    for &b in target {
        if matched == 4 && b == b':' {
            matched = 5;
        }
        if HTTPS.get(matched) != Some(&b.to_ascii_lowercase()) {
            return Err(HttpError::InvalidTarget);
        }
        matched = matched.saturating_add(1);
        taken = taken.saturating_add(1);
        if matched == HTTPS.len() {
            let rest = target.get(taken..).unwrap_or_default();
            let (authority, rest) = split_while(rest, |b| b != b'/' && b != b'?');
            return Ok((Some(authority), rest));
        }
    }
    match whole {
        true => Err(HttpError::InvalidTarget),
        false => Ok((None, target)),
    }
}

fn parse_version(rest: &[u8]) -> Parsed<'_, Version> {
    const PREFIX: &[u8] = b"HTTP/";
    // Check what has arrived against `HTTP/d.d` byte by byte, so that a bad version
    // is refused before the line ends.
    for (i, &b) in rest.iter().take(8).enumerate() {
        let fits = match PREFIX.get(i) {
            Some(&expected) => b == expected,
            None if i == 6 => b == b'.',
            None => b.is_ascii_digit(),
        };
        if !fits {
            return Err(HttpError::InvalidVersion);
        }
    }
    let Some((&[major, _, minor], after)) = rest
        .get(PREFIX.len()..)
        .and_then(|digits| digits.split_first_chunk::<3>())
    else {
        return Ok(Step::NeedMore);
    };
    let after = done!(line_end(after, HttpError::InvalidVersion)?);
    // A later 1.x is served as 1.1, the highest this server knows (RFC 9110
    // §2.5); 505 is for another major version.
    let version = match (major, minor) {
        (b'1', b'0') => Version::Http10,
        (b'1', _) => Version::Http11,
        _ => return Err(HttpError::UnsupportedVersion),
    };
    Ok(Step::Done((version, after)))
}

fn parse_header(rest: &[u8]) -> Parsed<'_, Header<'_>> {
    let (name, after) = split_while(rest, is_tchar);
    match after.first() {
        None => return Ok(Step::NeedMore),
        Some(b':') if !name.is_empty() => {}
        Some(b' ' | b'\t') if !name.is_empty() => return Err(HttpError::WhitespaceInHeaderName),
        Some(b'\r' | b'\n') => return Err(HttpError::MissingColon),
        Some(_) => return Err(HttpError::InvalidHeaderName),
    }
    let after_colon = after.get(1..).unwrap_or_default();
    let (value, after) = split_while(after_colon, is_value_byte);
    // A byte that no UTF-8 text can hold where it is refuses the value at once;
    // a sequence the bytes so far leave unfinished, only once the line ends.
    let value = core::str::from_utf8(value);
    if value.is_err_and(|e| e.error_len().is_some()) {
        return Err(HttpError::InvalidHeaderValue);
    }
    let after = done!(line_end(after, HttpError::InvalidHeaderValue)?);
    let name = core::str::from_utf8(name).map_err(|_| HttpError::InvalidHeaderName)?;
    let value = value.map_err(|_| HttpError::InvalidHeaderValue)?;
    Ok(Step::Done((
        Header {
            name,
            value: trim_ows(value),
        },
        after,
    )))
}

/// A token byte (RFC 9110 §5.6.2): what methods and header names are made of.
fn is_tchar(b: u8) -> bool {
    is_in(b, TCHAR)
}

/// Whether `b` is an ASCII byte of one of `classes`.
fn is_in(b: u8, classes: u8) -> bool {
    BYTE_CLASSES
        .get(usize::from(b))
        .is_some_and(|class| class & classes != 0)
}

// Classes of ASCII bytes for `is_in`, one bit each.
/// Token bytes (RFC 9110 §5.6.2).
const TCHAR: u8 = 1;
/// `unreserved` bytes (RFC 3986 §2.3).
const UNRESERVED: u8 = 2;
/// `sub-delims` bytes (RFC 3986 §2.2).
const SUB_DELIMS: u8 = 4;
/// Hex digits.
const HEX_DIGIT: u8 = 8;
/// The colon.
const COLON: u8 = 16;
/// No byte's class: tells [`is_made_of`] to take `%` and two hex digits too.
const PCT_ENCODED: u8 = 128;

/// The classes of every ASCII byte: one table takes less flash than a `match`
/// for each class.
static BYTE_CLASSES: [u8; 128] = byte_classes();

// Runs at compile time only: an out-of-range index or overflow here would be a
// build error, never a panic on a device. The loop bound keeps both in range.
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
const fn byte_classes() -> [u8; 128] {
    let mut classes = [0; 128];
    let mut b = 0;
    while b < 128 {
        let byte = b as u8;
        if matches!(byte,
            b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.'
            | b'^' | b'_' | b'`' | b'|' | b'~' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
        {
            classes[b] |= TCHAR;
        }
        if matches!(byte, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~') {
            classes[b] |= UNRESERVED;
        }
        if matches!(
            byte,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
        ) {
            classes[b] |= SUB_DELIMS;
        }
        if byte.is_ascii_hexdigit() {
            classes[b] |= HEX_DIGIT;
        }
        if byte == b':' {
            classes[b] |= COLON;
        }
        b += 1;
    }
    classes
}

/// A byte allowed in a header value: visible ASCII, space, tab, or non-ASCII
/// (checked as UTF-8 once the line is whole).
const fn is_value_byte(b: u8) -> bool {
    matches!(b, b'\t' | b' '..=b'~' | 0x80..=0xff)
}

/// Whether `value` is empty or `uri-host [ ":" port ]` with a host: see
/// [`Request::host`].
fn is_host_value(value: &[u8]) -> bool {
    // The host ends at the first byte that cannot be in it: `]` after an
    // address in brackets, `:` before a port. The empty value is an empty name
    // and no port.
    let (host, port) = match value.strip_prefix(b"[") {
        Some(literal) => {
            let (address, rest) = split_while(literal, |b| b != b']');
            match rest {
                [b']', port @ ..] if is_ip_literal(address) => (address, port),
                _ => return false,
            }
        }
        None => {
            let (name, port) = split_while(value, |b| b != b':');
            if !is_reg_name(name) {
                return false;
            }
            (name, port)
        }
    };
    match port {
        [] => true,
        [b':', digits @ ..] => !host.is_empty() && digits.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

/// What an `IP-literal` holds between its brackets (RFC 3986 §3.2.2, RFC 6874
/// §2): an `IPv6address` with, optionally, `%25` and a zone id of unreserved
/// bytes and `%` with two hex digits; or an `IPvFuture`: `v`, hex digits, `.`,
/// then unreserved bytes, sub-delims and colons.
// Not inlined into `is_host_value`: the two take less flash apart.
#[inline(never)]
fn is_ip_literal(literal: &[u8]) -> bool {
    // What follows the address or the version, and what it may be made of.
    let (text, classes) = match literal {
        [b'v' | b'V', rest @ ..] => {
            let (version, rest) = split_while(rest, |b| is_in(b, HEX_DIGIT));
            match rest {
                [b'.', text @ ..] if !version.is_empty() => (text, UNRESERVED | SUB_DELIMS | COLON),
                _ => return false,
            }
        }
        _ => {
            let (address, zone) = split_while(literal, |b| b != b'%');
            if !is_ipv6_address(address) {
                return false;
            }
            match zone {
                [] => return true,
                [b'%', b'2', b'5', id @ ..] => (id, UNRESERVED | PCT_ENCODED),
                _ => return false,
            }
        }
    };
    !text.is_empty() && is_made_of(text, classes)
}

/// An `IPv6address` (RFC 3986 §3.2.2): eight groups of one to four hex digits
/// between colons, the last two perhaps written as an IPv4 address, and a run
/// of one or more groups perhaps left out once as `::` (RFC 4291 §2.2).
fn is_ipv6_address(address: &[u8]) -> bool {
    // Groups, an IPv4 address counting two: eight without a `::`, at most
    // seven with one (it stands for one group or more). (The count cannot
    // wrap: it never exceeds the address's length.)
    let mut groups = 0usize;
    let mut elided = false;
    // The colons right before this byte: one after a group, two after `::`.
    let mut colons = 0u8;
    let mut rest = address;
    // The first colon of a leading `::` is read as if a group had ended there.
    if let [b':', after @ ..] = rest {
        if after.first() != Some(&b':') {
            return false;
        }
        colons = 1;
        rest = after;
    }
    let mut group = rest;
    while let [b, after @ ..] = rest {
        match b {
            b':' => {
                match colons {
                    0 => groups = groups.wrapping_add(1),
                    1 if !elided => elided = true,
                    _ => return false,
                }
                colons = colons.wrapping_add(1);
                group = after;
            }
            // An IPv4 address, from the group's start to the end.
            b'.' if is_ipv4_address(group) => {
                groups = groups.wrapping_add(2);
                colons = 2;
                break;
            }
            // A hex digit, at most the group's fourth.
            _ if is_in(*b, HEX_DIGIT) && group.len().wrapping_sub(after.len()) <= 4 => {
                colons = 0;
            }
            _ => return false,
        }
        rest = after;
    }
    match colons {
        0 => groups = groups.wrapping_add(1),
        1 => return false,
        _ => {}
    }
    if elided { groups <= 7 } else { groups == 8 }
}

/// An IPv4 address as RFC 3986 §3.2.2 writes it in an `IPv6address`: four
/// decimal numbers of 0 to 255 with no leading zero, between dots.
fn is_ipv4_address(address: &[u8]) -> bool {
    // Nothing wraps: the counts go no further than the address's length, and a
    // number is at most 255 when it takes a digit.
    let mut dots = 0usize;
    let mut digits = 0usize;
    let mut number = 0u32;
    for &b in address {
        let digit = b.wrapping_sub(b'0');
        if b == b'.' && digits != 0 {
            dots = dots.wrapping_add(1);
            digits = 0;
            number = 0;
        } else if digit <= 9 && (digits == 0 || number != 0) {
            number = number.wrapping_mul(10).wrapping_add(u32::from(digit));
            digits = digits.wrapping_add(1);
            if number > 255 {
                return false;
            }
        } else {
            return false;
        }
    }
    dots == 3 && digits != 0
}

/// A `reg-name` (RFC 3986 §3.2.2): host bytes and `%` with two hex digits.
fn is_reg_name(name: &[u8]) -> bool {
    is_made_of(name, UNRESERVED | SUB_DELIMS | PCT_ENCODED)
}

/// Whether every byte of `text` is of `classes`, or (with [`PCT_ENCODED`] in
/// them) begins `%` and two hex digits.
fn is_made_of(mut text: &[u8], classes: u8) -> bool {
    while let Some((&b, after)) = text.split_first() {
        text = match (b, after) {
            (b'%', [high, low, after @ ..])
                if classes & PCT_ENCODED != 0
                    && is_in(*high, HEX_DIGIT)
                    && is_in(*low, HEX_DIGIT) =>
            {
                after
            }
            _ if is_in(b, classes) => after,
            _ => return false,
        };
    }
    true
}

/// Removes optional whitespace (spaces and tabs) at both ends.
/// The bytes without the spaces and tabs at either end.
fn trim_ows_bytes(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

fn trim_ows(text: &str) -> &str {
    // Byte by byte: both are ASCII, so the ends stay on character boundaries,
    // and `bytes` stays a part of `text`, so neither sum wraps.
    // (`str::trim_matches` takes some 180 bytes more of a firmware's flash.)
    let mut bytes = text.as_bytes();
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    let start = text.len().wrapping_sub(bytes.len());
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    text.get(start..start.wrapping_add(bytes.len()))
        .unwrap_or_default()
}

fn parse_decimal_u64(text: &str) -> Result<u64, HttpError> {
    if text.is_empty() {
        return Err(HttpError::InvalidContentLength);
    }
    text.bytes().try_fold(0u64, |total, b| {
        let digit = match b {
            b'0'..=b'9' => u64::from(b.wrapping_sub(b'0')),
            _ => return Err(HttpError::InvalidContentLength),
        };
        total
            .checked_mul(10)
            .and_then(|total| total.checked_add(digit))
            .ok_or(HttpError::InvalidContentLength)
    })
}

/// An HTTP status code, `100..=599`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct StatusCode(u16);

impl StatusCode {
    /// 200 OK
    pub const OK: Self = Self(200);
    /// 204 No Content
    pub const NO_CONTENT: Self = Self(204);
    /// 400 Bad Request
    pub const BAD_REQUEST: Self = Self(400);
    /// 404 Not Found
    pub const NOT_FOUND: Self = Self(404);
    /// 405 Method Not Allowed; [`ResponseHead::emit`] adds the `Allow` field it needs.
    pub const METHOD_NOT_ALLOWED: Self = Self(405);
    /// 408 Request Timeout
    pub const REQUEST_TIMEOUT: Self = Self(408);
    /// 413 Content Too Large
    pub const CONTENT_TOO_LARGE: Self = Self(413);
    /// 414 URI Too Long
    pub const URI_TOO_LONG: Self = Self(414);
    /// 431 Request Header Fields Too Large
    pub const REQUEST_HEADER_FIELDS_TOO_LARGE: Self = Self(431);
    /// 500 Internal Server Error
    pub const INTERNAL_SERVER_ERROR: Self = Self(500);
    /// 501 Not Implemented
    pub const NOT_IMPLEMENTED: Self = Self(501);
    /// 503 Service Unavailable
    pub const SERVICE_UNAVAILABLE: Self = Self(503);
    /// 505 HTTP Version Not Supported
    pub const VERSION_NOT_SUPPORTED: Self = Self(505);

    /// The status code `code`, or `None` outside `100..=599`.
    pub const fn new(code: u16) -> Option<Self> {
        if code >= 100 && code <= 599 {
            Some(Self(code))
        } else {
            None
        }
    }

    /// The code as a number.
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// The reason phrase of the status line; empty for codes this module does not
    /// know (a status line may have an empty reason).
    pub const fn reason(self) -> &'static str {
        // A table and a loop: a `match` here took twice its flash.
        let mut rest: &[(u16, &str)] = &REASONS;
        while let [(code, reason), tail @ ..] = rest {
            if *code == self.0 {
                return reason;
            }
            rest = tail;
        }
        ""
    }

    /// Whether a response with this code may carry `Content-Length` and a body
    /// (RFC 9110 §8.6: not 1xx, not 204).
    const fn allows_body(self) -> bool {
        self.0 >= 200 && self.0 != 204
    }
}

/// The reason phrases [`StatusCode::reason`] knows (RFC 9110 §15).
const REASONS: [(u16, &str); 20] = [
    (100, "Continue"),
    (200, "OK"),
    (201, "Created"),
    (204, "No Content"),
    (301, "Moved Permanently"),
    (302, "Found"),
    (304, "Not Modified"),
    (400, "Bad Request"),
    (403, "Forbidden"),
    (404, "Not Found"),
    (405, "Method Not Allowed"),
    (408, "Request Timeout"),
    (411, "Length Required"),
    (413, "Content Too Large"),
    (414, "URI Too Long"),
    (431, "Request Header Fields Too Large"),
    (500, "Internal Server Error"),
    (501, "Not Implemented"),
    (503, "Service Unavailable"),
    (505, "HTTP Version Not Supported"),
];

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0, self.reason())
    }
}

/// The methods this responder serves, sent in `Allow` with every 405.
pub const ALLOWED_METHODS: &str = "GET, HEAD";

/// The head of a response: status line and header fields, written by
/// [`ResponseHead::emit`]. The body is sent after it by the caller (not for `HEAD`
/// requests, which get the same head as `GET` and no body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead<'a> {
    /// The status code.
    pub status: StatusCode,
    /// `Content-Type`, left out when `None`.
    pub content_type: Option<&'a str>,
    /// `Content-Length`: the length of the body that follows (for `HEAD`, of the
    /// body a `GET` would get). Left out for 1xx and 204, which have no body.
    pub content_length: usize,
    /// Send `Connection: close` (and close after the body).
    pub close: bool,
    /// More header fields, written after the others, in order.
    pub extra: &'a [(&'a str, &'a str)],
}

/// Why [`ResponseHead::emit`] wrote nothing usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum EmitError {
    /// The head needs `needed` bytes, more than the output slice has.
    BufferTooSmall {
        /// The length of the whole head.
        needed: usize,
    },
    /// A header name that is not a token, or a value (or content type) with a
    /// control character such as CR or LF, which would break the head apart.
    InvalidHeader,
}

impl fmt::Display for EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmitError::BufferTooSmall { needed } => {
                write!(f, "response head needs {needed} bytes, buffer is smaller")
            }
            EmitError::InvalidHeader => f.write_str("invalid response header field"),
        }
    }
}

impl core::error::Error for EmitError {}

impl<'a> ResponseHead<'a> {
    /// A head with the given status, content type and body length, keeping the
    /// connection open and with no extra fields.
    pub const fn new(
        status: StatusCode,
        content_type: Option<&'a str>,
        content_length: usize,
    ) -> Self {
        Self {
            status,
            content_type,
            content_length,
            close: false,
            extra: &[],
        }
    }

    /// Writes the head into the start of `out` and returns how many bytes it took.
    ///
    /// The status line is always `HTTP/1.1`. A 405 gets `Allow: GET, HEAD`
    /// ([`ALLOWED_METHODS`]) unless `extra` already has an `Allow` field. On error,
    /// `out` may hold part of a head and must not be sent.
    ///
    /// ```
    /// use smolsock::wire::http::{ResponseHead, StatusCode};
    ///
    /// let mut out = [0u8; 128];
    /// let head = ResponseHead::new(StatusCode::OK, Some("text/plain"), 5);
    /// let len = head.emit(&mut out).unwrap();
    /// assert_eq!(
    ///     &out[..len],
    ///     b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n"
    /// );
    /// ```
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, EmitError> {
        self.check_fields()?;
        let mut writer = SliceWriter { out, needed: 0 };
        self.write_to(&mut writer);
        let out_len = writer.out.len();
        if writer.needed > out_len {
            return Err(EmitError::BufferTooSmall {
                needed: writer.needed,
            });
        }
        Ok(writer.needed)
    }

    /// The number of bytes [`emit`](Self::emit) writes.
    pub fn buffer_len(&self) -> usize {
        let mut writer = SliceWriter {
            out: &mut [],
            needed: 0,
        };
        self.write_to(&mut writer);
        writer.needed
    }

    fn check_fields(&self) -> Result<(), EmitError> {
        let content_type_ok = self.content_type.is_none_or(is_safe_value);
        let extra_ok = self
            .extra
            .iter()
            .all(|(name, value)| is_token(name) && is_safe_value(value));
        if content_type_ok && extra_ok {
            Ok(())
        } else {
            Err(EmitError::InvalidHeader)
        }
    }

    fn write_to(&self, w: &mut SliceWriter<'_>) {
        w.put(b"HTTP/1.1 ");
        w.put_decimal(usize::from(self.status.as_u16()));
        w.put(b" ");
        w.put(self.status.reason().as_bytes());
        w.put(b"\r\n");
        if let Some(content_type) = self.content_type {
            w.put_field("Content-Type", content_type);
        }
        if self.status.allows_body() {
            w.put(b"Content-Length: ");
            w.put_decimal(self.content_length);
            w.put(b"\r\n");
        }
        if self.close {
            w.put_field("Connection", "close");
        }
        let has_allow = self
            .extra
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("allow"));
        if self.status == StatusCode::METHOD_NOT_ALLOWED && !has_allow {
            w.put_field("Allow", ALLOWED_METHODS);
        }
        for (name, value) in self.extra {
            w.put_field(name, value);
        }
        w.put(b"\r\n");
    }
}

fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(is_tchar)
}

/// A value that cannot end the line it is on or smuggle in another field.
fn is_safe_value(text: &str) -> bool {
    text.bytes().all(is_value_byte)
}

/// Writes into a slice as far as it goes, and counts every byte it was asked to
/// write, so one pass both writes and measures.
struct SliceWriter<'o> {
    out: &'o mut [u8],
    needed: usize,
}

impl SliceWriter<'_> {
    // Out of line: a head is written by a dozen calls, and each copy of the
    // loop would cost a firmware's flash more than the call does.
    #[inline(never)]
    fn put(&mut self, bytes: &[u8]) {
        let start = self.needed;
        self.needed = self.needed.saturating_add(bytes.len());
        if let Some(dst) = self.out.get_mut(start..self.needed) {
            for (d, s) in dst.iter_mut().zip(bytes) {
                *d = *s;
            }
        }
    }

    fn put_field(&mut self, name: &str, value: &str) {
        self.put(name.as_bytes());
        self.put(b": ");
        self.put(value.as_bytes());
        self.put(b"\r\n");
    }

    /// Writes `n` in decimal, without `core::fmt`.
    fn put_decimal(&mut self, mut n: usize) {
        // 20 digits hold any u64, so any usize.
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        for slot in digits.iter_mut().rev() {
            let digit = u8::try_from(n % 10).unwrap_or(0);
            *slot = b'0'.wrapping_add(digit);
            n /= 10;
            start = start.saturating_sub(1);
            if n == 0 {
                break;
            }
        }
        self.put(digits.get(start..).unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Req<'b> = Request<'b, 16>;

    fn parse(buf: &[u8]) -> Result<Status<Req<'_>>, HttpError> {
        parse_request::<16>(buf)
    }

    fn complete(buf: &[u8]) -> (Req<'_>, usize) {
        match parse(buf) {
            Ok(Status::Complete { request, head_len }) => (request, head_len),
            other => panic!("expected a complete head, got {other:?}"),
        }
    }

    fn error_of(buf: &[u8]) -> HttpError {
        match parse(buf) {
            Err(e) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    const CURL: &[u8] =
        b"GET / HTTP/1.1\r\nHost: 192.168.69.1\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";

    const PYTHON_HTTP_CLIENT: &[u8] =
        b"GET /counters?format=json HTTP/1.1\r\nHost: 192.168.69.1:8080\r\nAccept-Encoding: identity\r\n\r\n";

    const BROWSER: &[u8] = b"GET /index.html HTTP/1.1\r\n\
Host: 192.168.69.1\r\n\
Connection: keep-alive\r\n\
Cache-Control: max-age=0\r\n\
Upgrade-Insecure-Requests: 1\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n\
Accept-Encoding: gzip, deflate\r\n\
Accept-Language: en-US,en;q=0.9,zh-CN;q=0.8\r\n\
DNT: 1\r\n\
Sec-GPC: 1\r\n\
If-None-Match: \"abc123\"\r\n\
\r\n";

    #[test]
    fn curl_request_parses_whole() {
        let (request, head_len) = complete(CURL);
        assert_eq!(head_len, CURL.len());
        assert_eq!(request.method(), Method::Get);
        assert_eq!(request.target(), "/");
        assert_eq!(request.version(), Version::Http11);
        assert_eq!(
            request.headers(),
            &[
                Header {
                    name: "Host",
                    value: "192.168.69.1"
                },
                Header {
                    name: "User-Agent",
                    value: "curl/7.88.1"
                },
                Header {
                    name: "Accept",
                    value: "*/*"
                },
            ]
        );
        assert!(request.keep_alive());
        assert_eq!(request.content_length(), Ok(None));
    }

    #[test]
    fn python_http_client_request_splits_path_and_query() {
        let (request, head_len) = complete(PYTHON_HTTP_CLIENT);
        assert_eq!(head_len, PYTHON_HTTP_CLIENT.len());
        assert_eq!(request.path(), "/counters");
        assert_eq!(request.query(), Some("format=json"));
        assert_eq!(request.header("accept-encoding"), Some("identity"));
    }

    #[test]
    fn browser_request_keeps_every_header() {
        let (request, head_len) = complete(BROWSER);
        assert_eq!(head_len, BROWSER.len());
        assert_eq!(request.headers().len(), 11);
        assert_eq!(request.header("dnt"), Some("1"));
        assert_eq!(request.header("IF-NONE-MATCH"), Some("\"abc123\""));
        assert_eq!(request.header("x-missing"), None);
        assert_eq!(request.query(), None);
    }

    #[test]
    fn every_cut_of_a_valid_request_is_partial_until_the_last_byte() {
        for fixture in [
            CURL,
            PYTHON_HTTP_CLIENT,
            BROWSER,
            b"GET / HTTP/1.0\n\n".as_slice(),
        ] {
            for cut in 0..fixture.len() {
                assert_eq!(
                    parse(&fixture[..cut]),
                    Ok(Status::Partial),
                    "cut at {cut} of {:?}",
                    core::str::from_utf8(fixture)
                );
            }
            assert!(matches!(parse(fixture), Ok(Status::Complete { .. })));
        }
    }

    #[test]
    fn bytes_after_the_head_are_left_to_the_caller() {
        let buf = b"POST /upload HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n";
        let (request, head_len) = complete(buf);
        assert_eq!(&buf[head_len..head_len + 5], b"hello");
        assert_eq!(request.method(), Method::Post);
        assert_eq!(request.content_length(), Ok(Some(5)));
    }

    #[test]
    fn leading_empty_lines_are_skipped_and_counted() {
        let buf = b"\r\n\nGET / HTTP/1.1\r\n\r\n";
        let (request, head_len) = complete(buf);
        assert_eq!(head_len, buf.len());
        assert_eq!(request.target(), "/");
    }

    #[test]
    fn bare_newlines_end_lines() {
        let (request, head_len) = complete(b"GET /a HTTP/1.1\nHost: x\n\n");
        assert_eq!(head_len, 25);
        assert_eq!(request.header("host"), Some("x"));
    }

    #[test]
    fn methods_are_recognised_case_sensitively() {
        for (text, method) in [
            ("GET", Method::Get),
            ("HEAD", Method::Head),
            ("POST", Method::Post),
            ("PUT", Method::Put),
            ("DELETE", Method::Delete),
            ("OPTIONS", Method::Options),
            ("PATCH", Method::Patch),
            ("TRACE", Method::Trace),
            ("CONNECT", Method::Connect),
            ("get", Method::Other("get")),
            ("BREW", Method::Other("BREW")),
        ] {
            // CONNECT's target is a host and a port.
            let target: &[u8] = if method == Method::Connect {
                b" x:1"
            } else {
                b" /"
            };
            let line = [text.as_bytes(), target, b" HTTP/1.1\r\n\r\n"].concat();
            let (request, _) = complete(&line);
            assert_eq!(request.method(), method);
            assert_eq!(request.method().as_str(), text);
        }
    }

    #[test]
    fn connect_takes_a_host_and_port_alone_and_no_other_method_does() {
        for target in ["example.com:443", "[::1]:8443", "10.0.0.1:80"] {
            let line = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
            let (request, _) = complete(line.as_bytes());
            assert_eq!(request.method(), Method::Connect);
            assert_eq!(request.target(), target);
            assert_eq!(request.host(), Ok(Some(target)));
        }
        for target in [
            "/",
            "*",
            "example.com",
            "example.com:",
            "http://a:80",
            "u@a:80",
            "a:80/x",
        ] {
            let line = format!("CONNECT {target} HTTP/1.1\r\nHost: a\r\n\r\n");
            assert_eq!(
                error_of(line.as_bytes()),
                HttpError::InvalidTarget,
                "{target}"
            );
        }
        // A host that is no host: refused by `host`.
        let (request, _) = complete(b"CONNECT a:b:1 HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(request.host(), Err(HttpError::InvalidHost));
        // The authority form is CONNECT's alone.
        assert_eq!(
            error_of(b"GET example.com:443 HTTP/1.1\r\nHost: a\r\n\r\n"),
            HttpError::InvalidTarget
        );
    }

    #[test]
    fn asterisk_target_is_accepted_only_alone() {
        let (request, _) = complete(b"OPTIONS * HTTP/1.1\r\n\r\n");
        assert_eq!(request.target(), "*");
        assert_eq!(
            error_of(b"OPTIONS *x HTTP/1.1\r\n\r\n"),
            HttpError::InvalidTarget
        );
    }

    #[test]
    fn the_primers_typo_version_is_rejected() {
        let err = error_of(b"GET / HTTP/1/1\r\n\r\n");
        assert_eq!(err, HttpError::InvalidVersion);
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        // Refused as soon as the slash arrives, not when the line ends.
        assert_eq!(error_of(b"GET / HTTP/1/"), HttpError::InvalidVersion);
    }

    #[test]
    fn malformed_versions_are_400_and_other_versions_505() {
        for bad in [
            &b"GET / http/1.1\r\n\r\n"[..],
            b"GET / HTTP/1.1 \r\n\r\n",
            b"GET / HTTP/1.10\r\n\r\n",
            b"GET / HTTP/11\r\n\r\n",
            b"GET / HTTP/1.x\r\n\r\n",
            b"GET / HTTX/1.1\r\n\r\n",
            b"GET /\r\n\r\n",
        ] {
            assert_eq!(error_of(bad), HttpError::InvalidVersion, "{bad:?}");
        }
        for unsupported in [&b"GET / HTTP/2.0\r\n\r\n"[..], b"GET / HTTP/0.9\r\n\r\n"] {
            let err = error_of(unsupported);
            assert_eq!(err, HttpError::UnsupportedVersion);
            assert_eq!(err.status(), StatusCode::VERSION_NOT_SUPPORTED);
        }
        // A later minor version of 1 is read as 1.1.
        let head = b"GET / HTTP/1.2\r\nHost: x\r\n\r\n";
        match parse_request::<4>(head) {
            Ok(Status::Complete { request, .. }) => assert_eq!(request.version(), Version::Http11),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_request_lines_are_rejected() {
        let cases: [(&[u8], HttpError); 8] = [
            (b" / HTTP/1.1\r\n\r\n", HttpError::InvalidMethod),
            (b"G(T / HTTP/1.1\r\n\r\n", HttpError::InvalidMethod),
            (b"GET\r\n\r\n", HttpError::InvalidMethod),
            (b"GET  HTTP/1.1\r\n\r\n", HttpError::MissingTarget),
            (b"GET \r\n\r\n", HttpError::MissingTarget),
            (b"GET index.html HTTP/1.1\r\n\r\n", HttpError::InvalidTarget),
            (
                b"GET ftp://example.com/ HTTP/1.1\r\n\r\n",
                HttpError::InvalidTarget,
            ),
            (b"GET /a\x7fb HTTP/1.1\r\n\r\n", HttpError::InvalidTarget),
        ];
        for (buf, expected) in cases {
            assert_eq!(error_of(buf), expected, "{buf:?}");
            assert_eq!(expected.status(), StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn malformed_header_lines_are_rejected() {
        let cases: [(&[u8], HttpError); 10] = [
            (
                b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
                HttpError::ObsoleteLineFolding,
            ),
            (
                b"GET / HTTP/1.1\r\n\tHost: a\r\n\r\n",
                HttpError::ObsoleteLineFolding,
            ),
            (
                b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
                HttpError::WhitespaceInHeaderName,
            ),
            (
                b"GET / HTTP/1.1\r\nX Y: a\r\n\r\n",
                HttpError::WhitespaceInHeaderName,
            ),
            (b"GET / HTTP/1.1\r\nHost\r\n\r\n", HttpError::MissingColon),
            (
                b"GET / HTTP/1.1\r\n: a\r\n\r\n",
                HttpError::InvalidHeaderName,
            ),
            (
                b"GET / HTTP/1.1\r\nHo\x00st: a\r\n\r\n",
                HttpError::InvalidHeaderName,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n",
                HttpError::InvalidHeaderValue,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\x1bb\r\n\r\n",
                HttpError::InvalidHeaderValue,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n",
                HttpError::InvalidHeaderValue,
            ),
        ];
        for (buf, expected) in cases {
            assert_eq!(error_of(buf), expected, "{buf:?}");
            assert_eq!(expected.status(), StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn a_carriage_return_without_newline_is_rejected() {
        assert_eq!(error_of(b"GET / HTTP/1.1\rX"), HttpError::InvalidLineEnding);
        assert_eq!(
            error_of(b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"),
            HttpError::InvalidLineEnding
        );
        assert_eq!(
            error_of(b"GET / HTTP/1.1\r\n\rX"),
            HttpError::InvalidLineEnding
        );
    }

    #[test]
    fn utf8_header_values_are_kept() {
        let (request, _) = complete("GET / HTTP/1.1\r\nX-Name:  \t张三\t \r\n\r\n".as_bytes());
        assert_eq!(request.header("x-name"), Some("张三"));
    }

    #[test]
    fn garbage_is_a_bad_request() {
        for garbage in [
            &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..], // a TLS ClientHello
            b"\x00\x00\x00\x05hello",                             // a length-framed message
            b"SSH-2.0-OpenSSH_9.2\r\n",
            b"hello world\r\n\r\n",
        ] {
            let err = error_of(garbage);
            assert_eq!(
                err.status(),
                StatusCode::BAD_REQUEST,
                "{garbage:?}: {err:?}"
            );
        }
    }

    #[test]
    fn too_many_headers_is_431() {
        let buf = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert!(matches!(
            parse_request::<3>(buf),
            Ok(Status::Complete { .. })
        ));
        let err = parse_request::<2>(buf).unwrap_err();
        assert_eq!(err, HttpError::TooManyHeaders);
        assert_eq!(err.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert_eq!(
            parse_request::<0>(buf).unwrap_err(),
            HttpError::TooManyHeaders
        );
    }

    #[test]
    fn a_full_buffer_gives_431_or_414() {
        let mut buf = [b'a'; 64];
        buf[..20].copy_from_slice(b"GET / HTTP/1.1\r\nX-A:");
        assert_eq!(parse(&buf), Ok(Status::Partial));
        let err = HttpError::for_full_buffer(&buf);
        assert_eq!(err, HttpError::HeadTooLarge);
        assert_eq!(err.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);

        let mut buf = [b'a'; 64];
        buf[..5].copy_from_slice(b"GET /");
        assert_eq!(parse(&buf), Ok(Status::Partial));
        let err = HttpError::for_full_buffer(&buf);
        assert_eq!(err, HttpError::UriTooLong);
        assert_eq!(err.status(), StatusCode::URI_TOO_LONG);
    }

    #[test]
    fn http11_keeps_alive_unless_told_to_close() {
        let (request, _) = complete(b"GET / HTTP/1.1\r\n\r\n");
        assert!(request.keep_alive());
        let (request, _) = complete(b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n");
        assert!(!request.keep_alive());
        let (request, _) = complete(b"GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n");
        assert!(!request.keep_alive());
    }

    #[test]
    fn http10_closes_unless_asked_to_keep_alive() {
        let (request, _) = complete(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(request.version(), Version::Http10);
        assert!(!request.keep_alive());
        let (request, _) = complete(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(request.keep_alive());
        let (request, _) =
            complete(b"GET / HTTP/1.0\r\nConnection: upgrade\r\nconnection: keep-alive\r\n\r\n");
        assert!(request.keep_alive());
        let (request, _) =
            complete(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n");
        assert!(!request.keep_alive());
    }

    fn host_of(value: &str) -> Result<Option<&str>, HttpError> {
        let head = ["GET / HTTP/1.1\r\nHost: ", value, "\r\n\r\n"].concat();
        let (request, _) = complete(head.as_bytes());
        request.host().map(|host| host.map(|_| value))
    }

    #[test]
    fn a_host_is_a_uri_host_and_an_optional_port() {
        for value in [
            "example.com",
            "example.com:8080",
            "EXAMPLE.com:",
            "10.0.2.15",
            "192.168.69.1:80",
            "999.1.2.3",
            "[::1]",
            "[::1]:80",
            "[fdaa::1]:",
            "[::ffff:10.0.2.15]",
            "[v1.fe80::a+en1]",
            "[V1F.x:y]",
            "[fe80::1%25eth0]:8080",
            "[fe80::1%25eth0]",
            "[::1%25en1.2_x-y~z]",
            "[fe80::1%25%65th0]",
            "[::1%253]",
            "xn--bcher-kva.example",
            "a%2Fb",
            "!$&'()*+,;=-._~",
            "",
        ] {
            assert_eq!(host_of(value), Ok(Some(value)), "{value:?}");
        }
        for value in [
            "a b/c@d",
            "a b",
            "a/b",
            "user@example.com",
            "example.com:http",
            "example.com:80:80",
            "example.com:-1",
            ":80",
            ":",
            "::1",
            "[::1",
            "::1]",
            "[::1]x",
            "[::1]80",
            "[]",
            "[]:80",
            "[a b]",
            "[[::1]]",
            "[:::::]",
            "[1::2::3]",
            "[1:2:3:4:5:6:7:8:9:a:b:c:d:e:f:0]",
            "[1:2:3:4:5:6:7:8:9:a:b:c:d:e:f:0:1:2:3:4:5:6:7]",
            "[1:2:3:4:5:6:7:8:9:a:b:c:d:e:1.2.3.4]",
            "[1:2:3:4:5:6:7:8::]",
            "[example.com]",
            "a%2",
            "a%zz",
            "a%",
            "b\u{fc}cher.example",
            "a\tb",
            "a\"b",
        ] {
            assert_eq!(host_of(value), Err(HttpError::InvalidHost), "{value:?}");
        }
        assert_eq!(HttpError::InvalidHost.status(), StatusCode::BAD_REQUEST);
    }

    /// The byte classes are the RFCs' lists (RFC 9110 §5.6.2, RFC 3986 §2.2,
    /// §2.3), and no byte past ASCII is in any.
    #[test]
    fn the_byte_classes_are_the_rfcs_lists() {
        for b in 0..=255u8 {
            let alphanumeric = b.is_ascii_alphanumeric();
            assert_eq!(
                is_tchar(b),
                alphanumeric || b"!#$%&'*+-.^_`|~".contains(&b),
                "{b}"
            );
            assert_eq!(
                is_in(b, UNRESERVED),
                alphanumeric || b"-._~".contains(&b),
                "{b}"
            );
            assert_eq!(is_in(b, SUB_DELIMS), b"!$&'()*+,;=".contains(&b), "{b}");
            assert_eq!(is_in(b, HEX_DIGIT), b.is_ascii_hexdigit(), "{b}");
            assert_eq!(is_in(b, COLON), b == b':', "{b}");
            assert!(!is_in(b, PCT_ENCODED), "{b}");
        }
    }

    /// The bracketed hosts (RFC 3986 §3.2.2, RFC 6874): an IPv6 address with an
    /// optional `%25` and zone id, or an IPvFuture.
    #[test]
    fn a_bracketed_host_is_an_ipv6_address_or_an_ipvfuture() {
        for address in [
            "::",
            "::1",
            "1::",
            "1::8",
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7::",
            "::2:3:4:5:6:7:8",
            "1:2:3::6:7:8",
            "0000:00:0:ffff:FFFF:aBcD:1:0",
            "::10.0.2.15",
            "::ffff:255.255.255.255",
            "1:2:3:4:5:6:0.0.0.0",
            "1::6:10.0.2.15",
            "1:2:3:4:5::10.0.2.15",
            "fe80::1%25eth0",
            "fe80::1%25a",
            "fe80::1%25%2f%2F",
            "fe80::1%2525",
            "fe80::1%25%25%25",
            "v1.x",
            "vF0.::",
            "v1.!$&'()*+,;=-._~:",
        ] {
            let value = format!("[{address}]");
            assert_eq!(host_of(&value), Ok(Some(value.as_str())), "{value:?}");
        }
        for address in [
            "",
            ":",
            ":::",
            ":::::",
            "::::1",
            "1:::2",
            "1::2::3",
            "::1::",
            "1",
            "1:2:3:4:5:6:7",
            "1:2:3:4:5:6:7:8:9",
            "1:2:3:4::5:6:7:8",
            "::1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7:8::",
            ":1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7:8:",
            ":1::",
            "::1:",
            "1:",
            ":1",
            "12345::",
            "::00000",
            "::g",
            "::-1",
            "::+1",
            " ::1",
            "::1.2.3",
            "::1.2.3.4.5",
            "::256.1.1.1",
            "::1.2.3.256",
            "::01.2.3.4",
            "::1.2.3.04",
            "::1.2.3.4:5",
            "::1.2.3.4::",
            "::1.2..4",
            "::.1.2.3",
            "::1.2.3.",
            "::1.2.3.a",
            "1.2.3.4",
            "1:2:3:4:5:6:7:1.2.3.4",
            "1:2:3:4:5:6::1.2.3.4",
            "::1%eth0",
            "::1%25",
            "::1%2",
            "::1%",
            "::1%26eth0",
            "::1%25eth0%",
            "::1%25eth0%2",
            "::1%25a%zz",
            "::1%25a+b",
            "::1%25a:b",
            "::1%25a!b",
            "%25eth0",
            "1::2::3%25eth0",
            "example.com",
            "x::1",
            "v1",
            "v1.",
            "v.x",
            "vg.x",
            "v1.a/b",
            "v1.a%20b",
            "v1.a[b",
            "w1.x",
        ] {
            let value = format!("[{address}]");
            assert_eq!(host_of(&value), Err(HttpError::InvalidHost), "{value:?}");
            let value = format!("[{address}]:80");
            assert_eq!(host_of(&value), Err(HttpError::InvalidHost), "{value:?}");
        }
    }

    #[test]
    fn ows_is_trimmed_at_both_ends_only() {
        for (text, trimmed) in [
            ("", ""),
            (" \t ", ""),
            ("a", "a"),
            ("\t a b \t", "a b"),
            (" \u{e9} ", "\u{e9}"),
            ("\u{a0}x\u{a0}", "\u{a0}x\u{a0}"),
        ] {
            assert_eq!(trim_ows(text), trimmed, "{text:?}");
        }
    }

    fn content_length_of(fields: &str) -> Result<Option<u64>, HttpError> {
        let head = ["POST / HTTP/1.1\r\n", fields, "\r\n"].concat();
        let (request, _) = complete(head.as_bytes());
        request.content_length()
    }

    #[test]
    fn content_length_cases() {
        assert_eq!(content_length_of(""), Ok(None));
        assert_eq!(content_length_of("Content-Length: 0\r\n"), Ok(Some(0)));
        assert_eq!(content_length_of("content-length:  42 \r\n"), Ok(Some(42)));
        assert_eq!(
            content_length_of("Content-Length: 42\r\nContent-Length: 42\r\n"),
            Ok(Some(42))
        );
        assert_eq!(
            content_length_of("Content-Length: 42, 42\r\n"),
            Ok(Some(42))
        );
        assert_eq!(
            content_length_of("Content-Length: 18446744073709551615\r\n"),
            Ok(Some(u64::MAX))
        );
        for (fields, err) in [
            (
                "Content-Length: 42\r\nContent-Length: 43\r\n",
                HttpError::ConflictingContentLength,
            ),
            (
                "Content-Length: 42, 7\r\n",
                HttpError::ConflictingContentLength,
            ),
            (
                "Content-Length: 18446744073709551616\r\n",
                HttpError::InvalidContentLength,
            ),
            ("Content-Length: -1\r\n", HttpError::InvalidContentLength),
            ("Content-Length: +1\r\n", HttpError::InvalidContentLength),
            ("Content-Length: 1 2\r\n", HttpError::InvalidContentLength),
            ("Content-Length: 0x10\r\n", HttpError::InvalidContentLength),
            ("Content-Length:\r\n", HttpError::InvalidContentLength),
            ("Content-Length: 4,\r\n", HttpError::InvalidContentLength),
        ] {
            assert_eq!(content_length_of(fields), Err(err), "{fields:?}");
            assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn a_body_length_comes_from_content_length_alone() {
        let body_length = |fields: &str| {
            let head = ["POST / HTTP/1.1\r\n", fields, "\r\n"].concat();
            let (request, _) = complete(head.as_bytes());
            request.body_length()
        };
        assert_eq!(body_length(""), Ok(0));
        assert_eq!(body_length("Content-Length: 42\r\n"), Ok(42));
        assert_eq!(
            body_length("Content-Length: 4\r\nContent-Length: 2\r\n"),
            Err(HttpError::ConflictingContentLength)
        );
        for fields in [
            "Transfer-Encoding: gzip\r\n",
            "Transfer-Encoding: chunked\r\n",
            "Transfer-Encoding: chunked\r\nContent-Length: 42\r\n",
            "Content-Length: 42\r\nTransfer-Encoding: identity\r\n",
            "Transfer-Encoding:\r\n",
        ] {
            assert_eq!(
                body_length(fields),
                Err(HttpError::TransferEncoding),
                "{fields:?}"
            );
        }
        // `body_length` takes no transfer coding at all.
        assert_eq!(
            body_length("transfer-encoding: gzip, chunked\r\n"),
            Err(HttpError::TransferEncoding)
        );
        assert_eq!(
            HttpError::TransferEncoding.status(),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn a_body_is_chunked_when_chunked_is_its_one_and_last_transfer_coding() {
        let framing = |version: &str, fields: &str| {
            let head = ["POST / HTTP/", version, "\r\nHost: a\r\n", fields, "\r\n"].concat();
            let (request, _) = complete(head.as_bytes());
            request.body_framing()
        };
        assert_eq!(framing("1.1", ""), Ok(BodyFraming::Length(0)));
        assert_eq!(
            framing("1.0", "Content-Length: 7\r\n"),
            Ok(BodyFraming::Length(7))
        );
        assert_eq!(
            framing("1.1", "Content-Length: x\r\n"),
            Err(HttpError::InvalidContentLength)
        );
        // Case, parameters, spaces and empty list elements do not matter, nor
        // how many fields carry the list.
        for fields in [
            "Transfer-Encoding: chunked\r\n",
            "Transfer-Encoding: CHUNKED\r\n",
            "Transfer-Encoding: , chunked ,\r\n",
            "Transfer-Encoding: ,\r\nTransfer-Encoding: chunked\r\n",
        ] {
            assert_eq!(
                framing("1.1", fields),
                Ok(BodyFraming::Chunked),
                "{fields:?}"
            );
        }
        // Where the body ends is unknown, or the head may be an attempt at
        // request smuggling: 400.
        for (version, fields) in [
            ("1.1", "Transfer-Encoding: gzip\r\n"),
            ("1.1", "Transfer-Encoding: chunked, gzip\r\n"),
            ("1.1", "Transfer-Encoding: chunked, chunked\r\n"),
            ("1.1", "Transfer-Encoding: chunked;x=1\r\n"),
            ("1.1", "Transfer-Encoding: chunked;\r\n"),
            (
                "1.1",
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            ),
            ("1.1", "Transfer-Encoding:\r\n"),
            ("1.1", "Transfer-Encoding: , ;\r\n"),
            // Parameters with no coding are no empty element: chunked is not
            // the last coding.
            ("1.1", "Transfer-Encoding: chunked, ;x\r\n"),
            ("1.1", "Transfer-Encoding: chunked, ;\r\n"),
            (
                "1.1",
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: ;q=1\r\n",
            ),
            ("1.1", "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n"),
            ("1.1", "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n"),
            ("1.0", "Transfer-Encoding: chunked\r\n"),
        ] {
            assert_eq!(
                framing(version, fields),
                Err(HttpError::TransferEncoding),
                "{version} {fields:?}"
            );
        }
        // A coding not decoded here before the final chunked: 501.
        for fields in [
            "Transfer-Encoding: gzip, chunked\r\n",
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
        ] {
            assert_eq!(
                framing("1.1", fields),
                Err(HttpError::UnknownTransferCoding),
                "{fields:?}"
            );
        }
        assert_eq!(
            HttpError::UnknownTransferCoding.status(),
            StatusCode::NOT_IMPLEMENTED
        );
    }

    #[test]
    fn an_absolute_target_is_accepted_and_names_the_host() {
        // RFC 9112 §3.2.2: a server MUST accept the absolute form, and takes
        // the host from it, not from the Host field.
        let head = b"GET http://example.com:8080/stats?x=1 HTTP/1.1\r\nHost: other\r\n\r\n";
        let (request, len) = complete(head);
        assert_eq!(len, head.len());
        assert_eq!(request.target(), "/stats?x=1");
        assert_eq!(request.path(), "/stats");
        assert_eq!(request.query(), Some("x=1"));
        assert_eq!(request.host(), Ok(Some("example.com:8080")));
        for (target, path, host) in [
            ("HTTPS://[::1]/a/b", "/a/b", "[::1]"),
            ("http://a", "/", "a"),
            ("http://a?q", "/", "a"),
            ("http://10.0.2.15:80/", "/", "10.0.2.15:80"),
        ] {
            let head = format!("GET {target} HTTP/1.0\r\n\r\n");
            let (request, _) = complete(head.as_bytes());
            assert_eq!(
                (request.path(), request.host()),
                (path, Ok(Some(host))),
                "{target}"
            );
        }
        // The Host field's rules still hold.
        let (request, _) = complete(b"GET http://a/ HTTP/1.1\r\n\r\n");
        assert_eq!(request.host(), Err(HttpError::InvalidHost));
        let (request, _) = complete(b"GET http://a/ HTTP/1.1\r\nHost: a b\r\n\r\n");
        assert_eq!(request.host(), Err(HttpError::InvalidHost));
        // Every cut of one is partial until the last byte.
        let head = b"GET https://example.com/x HTTP/1.1\r\nHost: example.com\r\n\r\n";
        for cut in 0..head.len() {
            assert_eq!(parse(&head[..cut]), Ok(Status::Partial), "cut at {cut}");
        }
    }

    #[test]
    fn a_target_with_a_fragment_is_refused_as_soon_as_it_shows() {
        // A request target has no fragment (RFC 9112 §3.2, RFC 3986 §4.3).
        for target in ["http://a#frag", "http://a/x#y", "/index.html#top", "/#"] {
            let head = format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n");
            assert_eq!(
                error_of(head.as_bytes()),
                HttpError::InvalidTarget,
                "{target}"
            );
            let partial = format!("GET {target}");
            assert_eq!(
                error_of(partial.as_bytes()),
                HttpError::InvalidTarget,
                "{target}"
            );
        }
    }

    #[test]
    fn an_absolute_target_that_is_no_http_uri_is_refused_as_soon_as_it_shows() {
        // Another scheme, or no `//`: 400 as soon as a byte differs from
        // `http://` and `https://`.
        for target in [
            "ftp://a/",
            "urn:isbn:0",
            "http:/a",
            "http:a",
            "https:/",
            "h*://a/",
        ] {
            let head = format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n");
            assert_eq!(
                error_of(head.as_bytes()),
                HttpError::InvalidTarget,
                "{target}"
            );
        }
        for partial in [
            &b"GET h:x"[..],
            b"GET HTTP:/x",
            b"GET ht%",
            b"GET f",
            b"GET httpx",
        ] {
            assert_eq!(error_of(partial), HttpError::InvalidTarget, "{partial:?}");
        }
        for partial in [&b"GET h"[..], b"GET HTTPS", b"GET http:/", b"GET http://"] {
            assert_eq!(parse(partial), Ok(Status::Partial), "{partial:?}");
        }
        // No host, a port alone, user information, a host that is none: the
        // request's host is refused (400).
        for target in [
            "http://",
            "http:///x",
            "http://:80/",
            "http://user@a/",
            "http://[1::2::3]/",
            "http://a%zz/",
        ] {
            let head = format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n");
            let (request, _) = complete(head.as_bytes());
            assert_eq!(request.host(), Err(HttpError::InvalidHost), "{target}");
        }
    }

    #[test]
    fn a_value_byte_no_utf8_text_holds_is_refused_before_the_line_ends() {
        // 0xFF, 0xC0 and 0xF5 begin no UTF-8 sequence; 0xE4 0x41 breaks one.
        for partial in [
            &b"GET / HTTP/1.1\r\nX: a\xff"[..],
            b"GET / HTTP/1.1\r\nX: \xc0",
            b"GET / HTTP/1.1\r\nX: \xf5\x80",
            b"GET / HTTP/1.1\r\nX: \xe4\x41",
        ] {
            assert_eq!(
                error_of(partial),
                HttpError::InvalidHeaderValue,
                "{partial:?}"
            );
        }
        // A sequence that may yet end well waits for its bytes, and is refused
        // if the line ends first.
        assert_eq!(parse(b"GET / HTTP/1.1\r\nX: \xe5\xbc"), Ok(Status::Partial));
        assert_eq!(
            error_of(b"GET / HTTP/1.1\r\nX: \xe5\xbc\r\n\r\n"),
            HttpError::InvalidHeaderValue
        );
        let (request, _) = complete("GET / HTTP/1.1\r\nX: 张\r\n\r\n".as_bytes());
        assert_eq!(request.header("x"), Some("张"));
    }

    #[test]
    fn every_error_has_a_message_and_an_error_status() {
        let all = [
            HttpError::InvalidMethod,
            HttpError::MissingTarget,
            HttpError::InvalidTarget,
            HttpError::InvalidVersion,
            HttpError::UnsupportedVersion,
            HttpError::InvalidLineEnding,
            HttpError::ObsoleteLineFolding,
            HttpError::InvalidHeaderName,
            HttpError::WhitespaceInHeaderName,
            HttpError::MissingColon,
            HttpError::InvalidHeaderValue,
            HttpError::TooManyHeaders,
            HttpError::HeadTooLarge,
            HttpError::UriTooLong,
            HttpError::InvalidContentLength,
            HttpError::ConflictingContentLength,
            HttpError::TransferEncoding,
            HttpError::UnknownTransferCoding,
            HttpError::InvalidHost,
        ];
        for err in all {
            assert!(!err.to_string().is_empty());
            assert!((400..600).contains(&err.status().as_u16()), "{err:?}");
            assert!(!err.status().reason().is_empty(), "{err:?}");
        }
    }

    #[test]
    fn emit_writes_an_ok_head() {
        let mut out = [0u8; 128];
        let head = ResponseHead::new(StatusCode::OK, Some("text/html; charset=utf-8"), 1234);
        let len = head.emit(&mut out).unwrap();
        let expected: &[u8] =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 1234\r\n\r\n";
        assert_eq!(&out[..len], expected);
        assert_eq!(head.buffer_len(), expected.len());
    }

    #[test]
    fn emit_writes_close_and_extra_fields() {
        let mut out = [0u8; 128];
        let head = ResponseHead {
            close: true,
            extra: &[("Cache-Control", "no-store"), ("X-Frames", "7")],
            ..ResponseHead::new(StatusCode::NOT_FOUND, Some("text/plain"), 0)
        };
        let len = head.emit(&mut out).unwrap();
        assert_eq!(
            &out[..len],
            b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\
Connection: close\r\nCache-Control: no-store\r\nX-Frames: 7\r\n\r\n"
        );
    }

    #[test]
    fn method_not_allowed_carries_allow() {
        let mut out = [0u8; 128];
        let head = ResponseHead::new(StatusCode::METHOD_NOT_ALLOWED, None, 0);
        let len = head.emit(&mut out).unwrap();
        assert_eq!(
            &out[..len],
            b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nAllow: GET, HEAD\r\n\r\n"
        );
        let head = ResponseHead {
            extra: &[("allow", "GET")],
            ..head
        };
        let len = head.emit(&mut out).unwrap();
        assert_eq!(
            &out[..len],
            b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nallow: GET\r\n\r\n"
        );
    }

    #[test]
    fn no_content_has_no_content_length() {
        let mut out = [0u8; 64];
        let len = ResponseHead::new(StatusCode::NO_CONTENT, None, 9)
            .emit(&mut out)
            .unwrap();
        assert_eq!(&out[..len], b"HTTP/1.1 204 No Content\r\n\r\n");
    }

    #[test]
    fn emit_into_a_small_buffer_is_an_error_at_every_size() {
        let head = ResponseHead {
            close: true,
            ..ResponseHead::new(StatusCode::OK, Some("text/plain"), usize::MAX)
        };
        let needed = head.buffer_len();
        let mut out = [0u8; 256];
        for size in 0..needed {
            assert_eq!(
                head.emit(&mut out[..size]),
                Err(EmitError::BufferTooSmall { needed })
            );
        }
        assert_eq!(head.emit(&mut out[..needed]), Ok(needed));
        let text = core::str::from_utf8(&out[..needed]).unwrap();
        assert!(text.contains(&format!("Content-Length: {}\r\n", usize::MAX)));
    }

    #[test]
    fn emit_refuses_fields_that_would_break_the_head() {
        let mut out = [0u8; 128];
        let injected = ResponseHead {
            extra: &[("X-Echo", "a\r\nSet-Cookie: evil")],
            ..ResponseHead::new(StatusCode::OK, None, 0)
        };
        assert_eq!(injected.emit(&mut out), Err(EmitError::InvalidHeader));
        let bad_name = ResponseHead {
            extra: &[("X Echo", "a")],
            ..ResponseHead::new(StatusCode::OK, None, 0)
        };
        assert_eq!(bad_name.emit(&mut out), Err(EmitError::InvalidHeader));
        let bad_type = ResponseHead::new(StatusCode::OK, Some("text/plain\n"), 0);
        assert_eq!(bad_type.emit(&mut out), Err(EmitError::InvalidHeader));
    }

    #[test]
    fn emitted_heads_have_the_shape_of_a_request_head() {
        // The response head uses the same line and field syntax as a request head,
        // so after swapping the status line for a request line the parser reads
        // every field back.
        let mut out = [0u8; 256];
        let head = ResponseHead {
            close: true,
            extra: &[("X-Frames-In", "12")],
            ..ResponseHead::new(StatusCode::OK, Some("text/plain"), 77)
        };
        let len = head.emit(&mut out).unwrap();
        let line_end = out.iter().position(|&b| b == b'\n').unwrap() + 1;
        let mut request = b"GET / HTTP/1.1\r\n".to_vec();
        request.extend_from_slice(&out[line_end..len]);
        let (parsed, _) = complete(&request);
        assert_eq!(parsed.header("content-type"), Some("text/plain"));
        assert_eq!(parsed.content_length(), Ok(Some(77)));
        assert!(!parsed.keep_alive());
        assert_eq!(parsed.header("x-frames-in"), Some("12"));
    }

    #[test]
    fn status_codes_know_their_range_and_reasons() {
        assert_eq!(StatusCode::new(99), None);
        assert_eq!(StatusCode::new(600), None);
        assert_eq!(StatusCode::new(404), Some(StatusCode::NOT_FOUND));
        assert_eq!(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE.reason(),
            "Request Header Fields Too Large"
        );
        assert_eq!(
            StatusCode::VERSION_NOT_SUPPORTED.to_string(),
            "505 HTTP Version Not Supported"
        );
        let mut out = [0u8; 64];
        let odd = ResponseHead::new(StatusCode::new(299).unwrap(), None, 0);
        let len = odd.emit(&mut out).unwrap();
        assert_eq!(&out[..len], b"HTTP/1.1 299 \r\nContent-Length: 0\r\n\r\n");
    }

    /// A valid request head built from parts, to split and feed in pieces.
    fn valid_request() -> impl Strategy<Value = Vec<u8>> {
        let method = prop_oneof![
            Just("GET".to_string()),
            Just("HEAD".to_string()),
            "[A-Z]{1,8}",
            "[!#$%&'*+.^_`|~0-9a-zA-Z-]{1,10}",
        ];
        // Visible ASCII but `#`: a target has no fragment.
        let target = prop_oneof![
            Just("*".to_string()),
            "/[!\"$-~]{0,40}",
            "(http|HTTP|https)://[a-z0-9.]{1,12}(:[0-9]{1,5})?(/[!\"$-~]{0,30})?",
        ];
        let version = prop_oneof![Just("HTTP/1.0"), Just("HTTP/1.1")];
        let header = (
            "[!#$%&'*+.^_`|~0-9a-zA-Z-]{1,16}",
            "[ \t]{0,2}",
            "[ -~]{0,30}",
            "[ \t]{0,2}",
        );
        let line_end = prop_oneof![4 => Just("\r\n"), 1 => Just("\n")];
        (
            method,
            target,
            version,
            prop::collection::vec((header, line_end.clone()), 0..16),
            line_end.clone(),
            line_end,
        )
            .prop_map(|(method, target, version, headers, first_end, last_end)| {
                let mut text = format!("{method} {target} {version}{first_end}");
                for ((name, lead, value, trail), end) in headers {
                    text.push_str(&format!("{name}:{lead}{value}{trail}{end}"));
                }
                text.push_str(last_end);
                text.into_bytes()
            })
    }

    /// An IPv6 address as RFC 3986 §3.2.2 writes it, built from its pieces: eight
    /// groups of one to four hex digits in either case, the last two perhaps as
    /// an IPv4 address, a run of one or more of them perhaps left out for `::`.
    fn ipv6_address() -> impl Strategy<Value = String> {
        (
            any::<[u16; 8]>(),
            any::<[u8; 4]>(),
            any::<bool>(),
            prop::option::of((any::<prop::sample::Index>(), any::<prop::sample::Index>())),
            any::<[(bool, u8); 8]>(),
        )
            .prop_map(|(groups, ipv4, with_ipv4, elided, looks)| {
                let mut pieces: Vec<String> = groups
                    .iter()
                    .zip(looks)
                    .map(|(group, (upper, pad))| {
                        let width = usize::from(pad % 4) + 1;
                        match upper {
                            true => format!("{group:0width$X}"),
                            false => format!("{group:0width$x}"),
                        }
                    })
                    .collect();
                if with_ipv4 {
                    pieces.truncate(6);
                    let [a, b, c, d] = ipv4;
                    pieces.push(format!("{a}.{b}.{c}.{d}"));
                }
                match elided {
                    None => pieces.join(":"),
                    Some((start, len)) => {
                        let start = start.index(pieces.len());
                        let len = len.index(pieces.len() - start) + 1;
                        let (head, rest) = pieces.split_at(start);
                        format!("{}::{}", head.join(":"), rest[len..].join(":"))
                    }
                }
            })
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(Status::Complete { request, head_len }) = parse_request::<8>(&bytes) {
                prop_assert!(head_len <= bytes.len());
                prop_assert_eq!(is_head_request(&bytes), request.method() == Method::Head);
                let _ = request.body_length();
                let _ = request.host();
                let _ = request.keep_alive();
            }
            let _ = HttpError::for_full_buffer(&bytes);
        }

        #[test]
        fn request_like_bytes_never_panic(
            bytes in prop::collection::vec(
                prop_oneof![
                    Just(b'\r'), Just(b'\n'), Just(b' '), Just(b':'), Just(b'\t'),
                    Just(b'/'), Just(b'H'), Just(b'T'), Just(b'P'), Just(b'1'), Just(b'.'),
                    any::<u8>(),
                ],
                0..256,
            )
        ) {
            let mut bytes = bytes;
            let start: &[u8] = b"GET / HTTP/1.1\r\n";
            bytes.splice(0..0, start.iter().copied());
            let _ = parse_request::<4>(&bytes);
        }

        /// A name, an IPv4 address, a bracketed IPv6 one with or without a zone
        /// id, or a bracketed IPvFuture, with or without a port, is a valid
        /// Host; with a byte no host has in it, it is not.
        #[test]
        fn hosts_made_by_the_grammar_are_valid(
            host in prop_oneof![
                "([a-zA-Z0-9._~!$&'()*+,;=-]|%[0-9a-fA-F]{2}){1,20}",
                "[0-9]{1,3}(\\.[0-9]{1,3}){3}",
                ipv6_address().prop_map(|address| format!("[{address}]")),
                (ipv6_address(), "([a-zA-Z0-9._~-]|%[0-9a-fA-F]{2}){1,10}")
                    .prop_map(|(address, zone)| format!("[{address}%25{zone}]")),
                ("[vV][0-9a-fA-F]{1,3}", "[a-zA-Z0-9._~!$&'()*+,;=:-]{1,20}")
                    .prop_map(|(version, text)| format!("[{version}.{text}]")),
            ],
            port in "(:[0-9]{0,5})?",
            // Not spaces or tabs: at either end they are trimmed off the field.
            bad in "[/?#@\\[\\]\"<>\\\\^`{|}\u{80}-\u{10ffff}]",
            at in any::<prop::sample::Index>(),
        ) {
            let value = format!("{host}{port}");
            prop_assert_eq!(host_of(&value), Ok(Some(value.as_str())));
            let mut broken = value.clone();
            let cut = (0..=value.len())
                .filter(|&i| value.is_char_boundary(i))
                .nth(at.index(value.chars().count() + 1))
                .unwrap_or(value.len());
            broken.insert_str(cut, &bad);
            prop_assert_eq!(host_of(&broken), Err(HttpError::InvalidHost), "{:?}", broken);
        }

        /// A bracketed address is valid exactly when the standard library, whose
        /// parser was written apart from this one, reads it as an IPv6 address:
        /// it takes what RFC 3986 §3.2.2's `IPv6address` does. Addresses as
        /// written and strings of their bytes, as they are or with one byte put
        /// in, taken out or replaced.
        #[test]
        fn a_bracketed_address_is_what_the_standard_library_reads(
            address in prop_oneof![
                ipv6_address(),
                "[0-9a-fA-F:.]{0,20}",
                "[01:.]{0,45}",
                // Any number of groups, with or without a `::` or an IPv4 tail.
                (prop::collection::vec("[0-9a-f]{1,4}", 1..=24), any::<prop::sample::Index>(), 0..3u8)
                    .prop_map(|(groups, at, kind)| {
                        let mut address = groups.join(":");
                        match kind {
                            0 => {}
                            // A `::` in place of one of the colons.
                            1 => {
                                let colon = address.match_indices(':').nth(at.index(groups.len()));
                                if let Some((i, _)) = colon {
                                    address.insert(i, ':');
                                }
                            }
                            _ => address.push_str(":1.2.3.4"),
                        }
                        address
                    }),
            ],
            edit in prop::option::of((
                any::<prop::sample::Index>(),
                0..3u8,
                prop::sample::select(&[':', '.', '0', '1', '9', 'a', 'F', 'g'][..]),
            )),
        ) {
            let mut address = address;
            if let Some((at, kind, byte)) = edit {
                let at = at.index(address.len() + 1);
                match kind {
                    0 => address.insert(at, byte),
                    _ if at == address.len() => {}
                    1 => { address.remove(at); }
                    _ => address.replace_range(at..=at, byte.encode_utf8(&mut [0; 4])),
                }
            }
            let std_reads = address.parse::<std::net::Ipv6Addr>().is_ok();
            let value = format!("[{address}]:80");
            prop_assert_eq!(host_of(&value).is_ok(), std_reads, "{:?}", value);
        }

        /// A Host of the bytes hosts are made of, in any order, is checked
        /// without a panic.
        #[test]
        fn any_host_is_checked_without_a_panic(value in "[\\[\\]0-9a-fA-FvVx:.%_~!=-]{0,48}") {
            let _ = host_of(&value);
        }

        /// Whatever the bytes, a longer buffer never takes back what a prefix said:
        /// an error stays the same error, a complete head stays the same head.
        #[test]
        fn a_prefix_never_disagrees_with_the_whole(
            bytes in prop::collection::vec(any::<u8>(), 0..128),
            valid in valid_request(),
            cut in any::<prop::sample::Index>(),
        ) {
            for whole in [&bytes[..], &valid[..]] {
                let cut = cut.index(whole.len() + 1);
                let whole_result = parse_request::<16>(whole);
                match parse_request::<16>(&whole[..cut]) {
                    Ok(Status::Partial) => {}
                    prefix_result => prop_assert_eq!(prefix_result, whole_result),
                }
            }
        }

        /// A valid head fed in any number of segments, accumulated in a fixed
        /// buffer as the service does, is partial until its last byte and then
        /// equal to the unsplit parse.
        #[test]
        fn any_split_of_a_valid_request_agrees_with_the_whole(
            request in valid_request(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let whole = parse_request::<16>(&request);
            let Ok(Status::Complete { head_len, .. }) = &whole else {
                return Err(TestCaseError::fail(format!("{whole:?}")));
            };
            prop_assert_eq!(*head_len, request.len());
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(request.len())).collect();
            cuts.sort_unstable();
            let mut buffer = [0u8; 1024];
            let mut filled = 0;
            for end in cuts.into_iter().chain([request.len()]) {
                buffer[filled..end].copy_from_slice(&request[filled..end]);
                filled = end;
                let parsed = parse_request::<16>(&buffer[..filled]);
                if filled < request.len() {
                    prop_assert_eq!(parsed, Ok(Status::Partial));
                } else {
                    prop_assert_eq!(&parsed, &whole);
                }
            }
        }
    }
}
