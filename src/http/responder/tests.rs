use core::fmt::Write as _;

use super::*;
use crate::http::{Asset, StatusSite};
use crate::session::testing::Exchange;

/// The exact bytes the responder sends: head (with `Connection: close`) and the
/// body unless `with_body` is false (a HEAD request).
fn http_response(status: StatusCode, kind: &str, body: &[u8], with_body: bool) -> Vec<u8> {
    let head = ResponseHead {
        close: true,
        ..ResponseHead::new(status, Some(kind), body.len())
    };
    let mut out = [0u8; 256];
    let len = head.emit(&mut out).unwrap();
    let mut response = out[..len].to_vec();
    if with_body {
        response.extend_from_slice(body);
    }
    response
}

/// An error answer: its status line is its body.
fn error(code: StatusCode) -> Vec<u8> {
    http_response(code, "text/plain", format!("{code}\n").as_bytes(), true)
}

/// Drives one connection as an adapter does: offers `input` in pieces of at most
/// `cut` bytes and drains the session into send spaces of `space` bytes, round
/// after round. Once the session has closed it still offers what is left, as an
/// adapter reads on up to the peer's FIN, then the end of the stream. Every round
/// moves a byte (or gives the end of the stream, once), or the run ends.
///
/// (`session::testing::run` stops at the close, so it fits sessions that close
/// only after the peer finished; this one closes first.)
fn serve<S: Session>(session: &mut S, input: &[u8], cut: usize, space: usize) -> Exchange {
    let now = Instant::ZERO;
    session.start(now);
    let (mut output, mut taken, mut finished) = (Vec::new(), 0, false);
    let mut buf = vec![0u8; space];
    loop {
        let end = (taken + cut).min(input.len());
        let took = session.receive(&input[taken..end], now);
        taken += took;
        let sent = session.transmit(&mut buf, now);
        output.extend_from_slice(&buf[..sent]);
        if taken == input.len() && !finished {
            finished = true;
            session.receive_finished(now);
        } else if took == 0 && sent == 0 {
            break;
        }
        assert!(output.len() < 1 << 24, "a response without end");
    }
    assert_eq!(taken, input.len(), "the session stopped taking input");
    Exchange {
        output,
        status: session.status(),
    }
}

/// Runs one connection over `request` and checks that it closes.
fn answer<S: Session>(session: &mut S, request: &[u8], cut: usize, space: usize) -> Vec<u8> {
    let Exchange { output, status } = serve(session, request, cut, space);
    assert_eq!(status, Status::Close);
    output
}

/// A status text of about 1.5 KiB: more than a small send space, in many pieces.
fn long_status(w: &mut dyn fmt::Write) -> fmt::Result {
    (0..40).try_for_each(|i| writeln!(w, "counter {i:2}: {}", i * 4242))
}

fn page(site: &StatusSite<'_>, path: &str) -> (&'static str, String) {
    let mut body = String::new();
    let kind = site.render(path, &mut body).unwrap().unwrap();
    (kind, body)
}

#[test]
fn answers_exact_pages_through_any_split_and_send_space() {
    let site = StatusSite::new("smolsock", &long_status);
    let (html, home) = page(&site, "/");
    let (text, stats) = page(&site, "/stats");
    let exchanges: [(&[u8], Vec<u8>); 5] = [
        (
            b"GET / HTTP/1.1\r\nHost: 10.0.0.1\r\nUser-Agent: test\r\nAccept: */*\r\n\r\n",
            http_response(StatusCode::OK, html, home.as_bytes(), true),
        ),
        (
            b"GET /stats HTTP/1.0\r\n\r\n",
            http_response(StatusCode::OK, text, stats.as_bytes(), true),
        ),
        (
            b"HEAD /index.html HTTP/1.1\r\nHost: x\r\n\r\n",
            http_response(StatusCode::OK, html, home.as_bytes(), false),
        ),
        (
            b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n",
            error(StatusCode::NOT_FOUND),
        ),
        (
            b"GET /?refresh=1 HTTP/1.1\r\nHost: again\r\n\r\n",
            http_response(StatusCode::OK, html, home.as_bytes(), true),
        ),
    ];
    // One responder for every connection, as a server's slot.
    let mut http = HttpResponder::<_, 1024, 2048>::new(&site);
    let cases = [(1, 1), (3, 7), (17, 512), (1000, 100), (1000, 4096)];
    for (cut, space) in cases {
        for (i, (request, expected)) in exchanges.iter().enumerate() {
            let response = answer(&mut http, request, cut, space);
            assert!(
                &response == expected,
                "cut {cut} space {space}, request {i}:\n{}",
                String::from_utf8_lossy(&response)
            );
        }
    }
    let stats = http.stats();
    let n = cases.len() as u64;
    assert_eq!(
        (stats.requests, stats.ok, stats.client_errors),
        (5 * n, 4 * n, n)
    );
    assert_eq!(stats.discarded, 0);
}

#[test]
fn bad_requests_get_their_error_status_and_the_session_serves_the_next() {
    let status = |w: &mut dyn fmt::Write| w.write_str("ok");
    let site = StatusSite::new("smolsock", &status);
    let (html, home) = page(&site, "/");
    let mut too_large = b"GET / HTTP/1.1\r\n".to_vec();
    while too_large.len() < 1500 {
        too_large.extend_from_slice(b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    let exchanges: [(&[u8], Vec<u8>); 8] = [
        (
            b"\x16\x03\x01\x02\x00garbage\r\n\r\n",
            error(StatusCode::BAD_REQUEST),
        ),
        (
            b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
            error(StatusCode::BAD_REQUEST),
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            error(StatusCode::METHOD_NOT_ALLOWED),
        ),
        (
            &too_large,
            error(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
        ),
        (
            b"GET / HTTP/2.0\r\n\r\n",
            error(StatusCode::VERSION_NOT_SUPPORTED),
        ),
        // A method nobody defined: 501, not 405 (RFC 9110 §9.1).
        (
            b"BREW / HTTP/1.1\r\nHost: x\r\n\r\n",
            error(StatusCode::NOT_IMPLEMENTED),
        ),
        // A later 1.x is served as 1.1 (RFC 9110 §2.5).
        (
            b"GET / HTTP/1.2\r\nHost: x\r\n\r\n",
            http_response(StatusCode::OK, html, home.as_bytes(), true),
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            http_response(StatusCode::OK, html, home.as_bytes(), true),
        ),
    ];
    let mut http = HttpResponder::<_, 1024, 2048>::new(&site);
    for (i, (request, expected)) in exchanges.iter().enumerate() {
        let response = answer(&mut http, request, 2048, 2048);
        assert!(
            &response == expected,
            "request {i}:\n{}",
            String::from_utf8_lossy(&response)
        );
    }
    let stats = http.stats();
    // 400, 400, 405, 431; 505, 501; 200, 200.
    assert_eq!(
        (stats.client_errors, stats.server_errors, stats.ok),
        (4, 2, 2)
    );
    assert_eq!((stats.malformed, stats.oversize), (3, 1));
    // The 405 and 501 requests and the 200 ones were parsed whole.
    assert_eq!(stats.requests, 4);
    // Every refused head was thrown away whole.
    let refused = [0, 1, 3, 4].map(|i| exchanges[i].0.len() as u64);
    assert_eq!(stats.discarded, refused.iter().sum::<u64>());
}

#[test]
fn get_gets_the_page_and_garbage_gets_400() {
    let status = |w: &mut dyn fmt::Write| w.write_str("all good");
    let site = StatusSite::new("smolsock", &status);
    let mut http = HttpResponder::<_, 512, 1024>::new(&site);
    for (request, expect) in [
        (&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], "HTTP/1.1 200 OK"),
        (
            b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
            "HTTP/1.1 404 Not Found",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 405 Method Not Allowed",
        ),
        (b"\x16\x03\x01 garbage\r\n\r\n", "HTTP/1.1 400 Bad Request"),
    ] {
        let response = answer(&mut http, request, 3, 512);
        let text = String::from_utf8(response).unwrap();
        assert!(text.starts_with(expect), "{text}");
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length = head
            .lines()
            .find_map(|line| line.strip_prefix("Content-Length: "))
            .unwrap();
        assert_eq!(length.parse::<usize>().unwrap(), body.len(), "{text}");
        assert!(head.contains("Connection: close"), "{text}");
    }
}

#[test]
fn stats_accumulate_every_counter_and_saturate() {
    let one = HttpStats {
        requests: 1,
        ok: 2,
        client_errors: 3,
        server_errors: 4,
        malformed: 5,
        oversize: 6,
        head_timeouts: 7,
        send_timeouts: 8,
        incomplete: 9,
        cut_short: 10,
        discarded: 11,
        bytes_in: 12,
        bytes_out: 13,
    };
    let mut total = HttpStats {
        requests: u64::MAX,
        ..HttpStats::ZERO
    };
    total.accumulate(&one);
    total.accumulate(&one);
    let expected = HttpStats {
        requests: u64::MAX,
        ok: 4,
        client_errors: 6,
        server_errors: 8,
        malformed: 10,
        oversize: 12,
        head_timeouts: 14,
        send_timeouts: 16,
        incomplete: 18,
        cut_short: 20,
        discarded: 22,
        bytes_in: 24,
        bytes_out: 26,
    };
    assert_eq!(total, expected);
    assert_eq!(HttpStats::default(), HttpStats::ZERO);
    assert!(one.to_string().starts_with("1 requests: 2 ok"));
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

// ---------------------------------------------------------------------------
// Time: the head deadline (slowloris) and the send deadline.

/// What came of a connection on a virtual clock.
struct Timed {
    output: Vec<u8>,
    status: Status,
    /// When the status left `Open`.
    at: Instant,
    /// Pieces offered (each taken whole).
    fed: usize,
}

/// Starts `session` at zero and offers each piece of `pieces` at its time, with
/// `handle_timeout` whenever `poll_timeout` is due and every byte it has to send
/// taken at once, until the status leaves `Open`. Time jumps from one event (a
/// piece, a deadline) to the next, so the run has at most one round per piece and
/// per deadline.
fn timed<S: Session>(session: &mut S, pieces: &[(Instant, Vec<u8>)]) -> Timed {
    let mut now = Instant::ZERO;
    session.start(now);
    let (mut next, mut output, mut buf) = (0, Vec::new(), [0u8; 64]);
    for _ in 0..pieces.len() + 8 {
        while let Some((_, bytes)) = pieces.get(next).filter(|(at, _)| *at <= now) {
            assert_eq!(session.receive(bytes, now), bytes.len());
            next += 1;
        }
        if session.poll_timeout().is_some_and(|at| at <= now) {
            session.handle_timeout(now);
        }
        for _ in 0..10_000 {
            let n = session.transmit(&mut buf, now);
            if n == 0 {
                break;
            }
            output.extend_from_slice(&buf[..n]);
        }
        if session.status() != Status::Open {
            break;
        }
        let events = [pieces.get(next).map(|(at, _)| *at), session.poll_timeout()];
        match events.into_iter().flatten().min() {
            Some(at) => now = now.max(at),
            None => break,
        }
    }
    Timed {
        output,
        status: session.status(),
        at: now,
        fed: next,
    }
}

/// `bytes` one at a time, `gap` apart, the first at zero.
fn trickle(bytes: &[u8], gap: Duration) -> Vec<(Instant, Vec<u8>)> {
    (0..)
        .zip(bytes)
        .map(|(i, &b)| (Instant::ZERO.saturating_add(gap.saturating_mul(i)), vec![b]))
        .collect()
}

const GET: &[u8] = b"GET /stats HTTP/1.1\r\nHost: 192.168.69.1\r\nUser-Agent: slow\r\n\r\n";

#[test]
fn a_head_trickled_a_byte_a_second_is_answered_408_at_the_deadline() {
    let status = |w: &mut dyn fmt::Write| w.write_str("ok");
    let site = StatusSite::new("smolsock", &status);
    let mut http = HttpResponder::<_, 1024, 1024>::new(&site);
    let pieces = trickle(GET, Duration::from_secs(1));
    let got = timed(&mut http, &pieces);
    assert_eq!(got.output, error(StatusCode::REQUEST_TIMEOUT));
    assert_eq!((got.status, got.at), (Status::Close, Instant::from_secs(5)));
    // Bytes at 0..=4 s were taken into the head; the one at 5 s came too late.
    assert_eq!(got.fed, 6);
    assert_eq!(http.stats().head_timeouts, 1);
    assert_eq!(http.stats().client_errors, 1);
    assert_eq!(http.stats().requests, 0);
    // The trickle goes on after the answer: taken and thrown away, so the adapter
    // can read up to the peer's close.
    let now = Instant::from_secs(6);
    for byte in &GET[got.fed..] {
        assert_eq!(http.receive(&[*byte], now), 1);
    }
    http.receive_finished(now);
    assert_eq!(http.status(), Status::Close);
    assert_eq!(http.stats().discarded, GET.len() as u64);
    assert_eq!(http.poll_timeout(), None);
}

#[test]
fn a_head_whole_before_the_deadline_is_answered() {
    let status = |w: &mut dyn fmt::Write| w.write_str("ok");
    let site = StatusSite::new("smolsock", &status);
    let expected = http_response(StatusCode::OK, "text/plain; charset=utf-8", b"ok", true);
    let mut http = HttpResponder::<_, 1024, 1024>::new(&site);
    // All at once, and a byte every 70 ms (the last at 4.2 s).
    for pieces in [
        vec![(Instant::ZERO, GET.to_vec())],
        trickle(GET, Duration::from_millis(70)),
    ] {
        let got = timed(&mut http, &pieces);
        assert_eq!(got.output, expected);
        assert_eq!(got.status, Status::Close);
        assert_eq!(got.at, pieces.last().unwrap().0);
    }
    // A longer deadline lets the byte-a-second trickle through; none at all too.
    for head_timeout in [Duration::from_secs(GET.len() as u64), Duration::MAX] {
        http.set_config(HttpConfig {
            head_timeout,
            ..HttpConfig::DEFAULT
        });
        let got = timed(&mut http, &trickle(GET, Duration::from_secs(1)));
        assert_eq!(got.output, expected, "{head_timeout}");
    }
    assert_eq!((http.stats().ok, http.stats().head_timeouts), (4, 0));
}

#[test]
fn the_deadline_counts_from_the_start_not_from_the_last_byte() {
    let status = |w: &mut dyn fmt::Write| w.write_str("ok");
    let site = StatusSite::new("smolsock", &status);
    let mut http = HttpResponder::<_, 1024, 1024>::new(&site);
    http.start(Instant::from_secs(100));
    assert_eq!(http.poll_timeout(), Some(Instant::from_secs(105)));
    http.receive(b"GET / HT", Instant::from_secs(104));
    assert_eq!(http.poll_timeout(), Some(Instant::from_secs(105)));
    // Early calls change nothing.
    http.handle_timeout(Instant::from_secs(104));
    assert_eq!(http.status(), Status::Open);
    // Bytes that would complete the head, but come at the deadline: 408.
    assert_eq!(http.receive(b"TP/1.1\r\n\r\n", Instant::from_secs(105)), 10);
    let mut out = [0u8; 512];
    let n = http.transmit(&mut out, Instant::from_secs(105));
    assert_eq!(&out[..n], &error(StatusCode::REQUEST_TIMEOUT)[..]);
    assert_eq!(http.status(), Status::Close);
    assert_eq!(http.stats().discarded, 18);
}

#[test]
fn a_response_the_peer_never_takes_is_reset_at_the_send_deadline() {
    let status = |w: &mut dyn fmt::Write| w.write_str("ok");
    let site = StatusSite::new("smolsock", &status);
    let mut http = HttpResponder::<_, 1024, 1024>::new(&site);
    http.start(Instant::ZERO);
    http.receive(GET, Instant::from_secs(1));
    assert_eq!(http.poll_timeout(), Some(Instant::from_secs(11)));
    // No send space at all (a zero window), then a little.
    assert_eq!(http.transmit(&mut [], Instant::from_secs(2)), 0);
    assert_eq!(http.transmit(&mut [0u8; 10], Instant::from_secs(3)), 10);
    http.handle_timeout(Instant::from_secs(11));
    assert_eq!(http.status(), Status::Abort);
    assert_eq!(http.stats().send_timeouts, 1);
    assert_eq!(http.poll_timeout(), None);
    http.end(Instant::from_secs(11));
    assert_eq!(http.stats().cut_short, 0, "a reset is not counted twice");
}

// ---------------------------------------------------------------------------
// The end of a connection, input after the answer, sizes.

#[test]
fn input_after_the_head_is_taken_and_thrown_away() {
    let status = |w: &mut dyn fmt::Write| w.write_str("ok");
    let site = StatusSite::new("smolsock", &status);
    let mut http = HttpResponder::<_, 256, 256>::new(&site);
    // A POST with a body larger than the request buffer, and a pipelined GET.
    let mut request = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3000\r\n\r\n".to_vec();
    let head_len = request.len();
    request.extend(std::iter::repeat_n(b'x', 3000));
    request.extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    for (cut, space) in [(1, 1), (100, 7), (5000, 5000)] {
        let before = http.stats().discarded;
        let response = answer(&mut http, &request, cut, space);
        assert_eq!(response, error(StatusCode::METHOD_NOT_ALLOWED));
        let discarded = http.stats().discarded - before;
        assert_eq!(discarded, (request.len() - head_len) as u64);
    }
    // And once the answer is out: Close, and still every byte taken.
    http.start(Instant::ZERO);
    http.receive(b"GET / HTTP/1.0\r\n\r\n", Instant::ZERO);
    http.transmit(&mut [0u8; 1024], Instant::ZERO);
    assert_eq!(http.status(), Status::Close);
    assert_eq!(http.receive(&[0; 5000], Instant::ZERO), 5000);
    assert_eq!(http.transmit(&mut [0u8; 16], Instant::ZERO), 0);
    assert_eq!(http.status(), Status::Close);
}

#[test]
fn a_peer_that_closes_mid_head_gets_no_answer_and_is_counted() {
    let status = |w: &mut dyn fmt::Write| w.write_str("ok");
    let site = StatusSite::new("smolsock", &status);
    let mut http = HttpResponder::<_, 1024, 1024>::new(&site);
    assert_eq!(answer(&mut http, b"GET / HTTP/1.1\r\nHost", 5, 64), b"");
    assert_eq!(http.stats().incomplete, 1);
    // Its bytes were thrown away, and counted so.
    assert_eq!((http.stats().bytes_in, http.stats().discarded), (20, 20));
    // A connection that sends nothing at all (a browser's spare) is no request.
    assert_eq!(answer(&mut http, b"", 5, 64), b"");
    assert_eq!(http.stats().incomplete, 1);
    // Ended from outside (a reset) mid head, and mid answer.
    http.start(Instant::ZERO);
    http.receive(b"GET", Instant::ZERO);
    http.end(Instant::ZERO);
    assert_eq!(http.stats().incomplete, 2);
    assert_eq!(http.stats().discarded, 23);
    http.start(Instant::ZERO);
    http.receive(GET, Instant::ZERO);
    http.transmit(&mut [0u8; 10], Instant::ZERO);
    http.end(Instant::ZERO);
    http.end(Instant::ZERO);
    assert_eq!(http.stats().cut_short, 1);
    assert_eq!(http.stats().incomplete, 2);
}

#[test]
fn a_request_line_over_the_buffer_gets_414_and_a_longer_head_431() {
    let status = |w: &mut dyn fmt::Write| w.write_str("ok");
    let site = StatusSite::new("smolsock", &status);
    let mut http = HttpResponder::<_, 64, 64>::new(&site);
    let long_line = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(100));
    let long_head = format!("GET / HTTP/1.1\r\nCookie: {}\r\n\r\n", "a".repeat(100));
    let many_fields = format!("GET / HTTP/1.1\r\n{}\r\n", "A:\r\n".repeat(MAX_HEADERS + 1));
    let mut big = HttpResponder::<_, 1024, 64>::new(&site);
    for (cut, space) in [(1, 1), (7, 13), (200, 200)] {
        let got = answer(&mut http, long_line.as_bytes(), cut, space);
        assert_eq!(got, error(StatusCode::URI_TOO_LONG));
        let got = answer(&mut http, long_head.as_bytes(), cut, space);
        assert_eq!(got, error(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
        let got = answer(&mut big, many_fields.as_bytes(), cut, space);
        assert_eq!(got, error(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
    }
    assert_eq!(http.stats().oversize, 6);
    assert_eq!(big.stats().oversize, 3);
    assert_eq!(http.stats().malformed + big.stats().malformed, 0);
}

#[test]
fn a_page_over_the_body_buffer_gets_500_and_head_no_body() {
    let site = StatusSite::new("smolsock", &long_status);
    let mut http = HttpResponder::<_, 1024, 256>::new(&site);
    let got = answer(&mut http, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 100, 100);
    assert_eq!(got, error(StatusCode::INTERNAL_SERVER_ERROR));
    let got = answer(&mut http, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", 100, 100);
    let body = format!("{}\n", StatusCode::INTERNAL_SERVER_ERROR);
    let head_only = http_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "text/plain",
        body.as_bytes(),
        false,
    );
    assert_eq!(got, head_only);
    // So does a missing page asked with HEAD.
    let got = answer(
        &mut http,
        b"HEAD /nope HTTP/1.1\r\nHost: x\r\n\r\n",
        100,
        100,
    );
    let body = format!("{}\n", StatusCode::NOT_FOUND);
    let head_only = http_response(StatusCode::NOT_FOUND, "text/plain", body.as_bytes(), false);
    assert_eq!(got, head_only);
    assert_eq!(http.stats().server_errors, 2);
}

/// A site with a large asset, a page whose content type would break the head,
/// and the status page for the rest.
struct Assets<'a> {
    big: &'a [u8],
    status: StatusSite<'a>,
}

impl Site for Assets<'_> {
    fn render(
        &self,
        path: &str,
        body: &mut dyn fmt::Write,
    ) -> Option<Result<&'static str, fmt::Error>> {
        match path {
            "/evil" => Some(Ok("text/plain\r\nSet-Cookie: x")),
            _ => self.status.render(path, body),
        }
    }

    fn asset(&self, path: &str) -> Option<Asset<'_>> {
        (path == "/big.bin").then(|| Asset::new("application/octet-stream", self.big))
    }
}

#[test]
fn an_asset_goes_out_piece_by_piece_whatever_its_size() {
    let big: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    let status = |w: &mut dyn fmt::Write| w.write_str("ok");
    let site = Assets {
        big: &big,
        status: StatusSite::new("smolsock", &status),
    };
    // A 16-byte body buffer: the asset never passes through it.
    let mut http = HttpResponder::<_, 512, 16>::new(&site);
    let expected = http_response(StatusCode::OK, "application/octet-stream", &big, true);
    for (cut, space) in [(1, 1), (9, 1460), (100, 100_000)] {
        let got = answer(
            &mut http,
            b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n",
            cut,
            space,
        );
        assert!(got == expected, "cut {cut} space {space}");
    }
    let got = answer(
        &mut http,
        b"HEAD /big.bin HTTP/1.1\r\nHost: x\r\n\r\n",
        100,
        100,
    );
    let head_only = http_response(StatusCode::OK, "application/octet-stream", &big, false);
    assert_eq!(got, head_only);
    assert_eq!(
        http.stats().bytes_out,
        3 * expected.len() as u64 + head_only.len() as u64
    );
    // A content type that would break the head is refused, not sent.
    let got = answer(
        &mut http,
        b"GET /evil HTTP/1.1\r\nHost: x\r\n\r\n",
        100,
        100,
    );
    assert_eq!(got, error(StatusCode::INTERNAL_SERVER_ERROR));
}

#[test]
fn every_error_answer_fits_the_head_buffer() {
    let site = StatusSite::new("smolsock", &long_status);
    for code in [400, 404, 405, 408, 414, 431, 500, 505] {
        let status = StatusCode::new(code).unwrap();
        let mut response = Response::<0>::new();
        response.error(status, true);
        let mut out = vec![0u8; 512];
        let n = response.transmit(&mut out);
        assert_eq!(out[..n], error(status)[..], "{code}");
        assert!(response.is_sent());
        // A 0-byte body buffer is enough for every error, and a missing page.
        let mut response = Response::<0>::new();
        assert_eq!(response.page(&site, "/nope", true), StatusCode::NOT_FOUND);
    }
}

#[test]
fn a_responder_costs_its_buffers_and_a_little() {
    type Slot = HttpResponder<'static, StatusSite<'static>, 1024, 2048>;
    let buffers = 1024 + 2048 + HEAD_CAPACITY;
    let size = size_of::<Slot>();
    // The figure in the type's documentation (176 on a 32-bit target).
    #[cfg(target_pointer_width = "64")]
    assert_eq!(size, buffers + 208);
    assert!(size > buffers && size <= buffers + 208, "{size}");
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Requests of every kind, and bytes that are none.
    fn any_request() -> impl Strategy<Value = Vec<u8>> {
        let fixed: [&[u8]; 7] = [
            GET,
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"HEAD / HTTP/1.0\r\n\r\n",
            b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
            b"\x16\x03\x01\x02\x00garbage\r\n\r\n",
            b"GET / HTTP/1.1\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n",
        ];
        prop_oneof![
            prop::sample::select(fixed.to_vec()).prop_map(<[u8]>::to_vec),
            prop::collection::vec(any::<u8>(), 0..300),
            prop::collection::vec(any::<u8>(), 0..100).prop_map(|tail| {
                let mut bytes = b"GET / HTTP/1.1\r\n".to_vec();
                bytes.extend(tail);
                bytes
            }),
        ]
    }

    proptest! {
        /// Whatever the split of the request and the size of each send space, the
        /// response is the same bytes as for the request in one piece; and there is
        /// one whenever anything arrived.
        #[test]
        fn any_split_and_send_space_give_the_same_response(
            request in any_request(),
            cut in 1usize..64,
            space in 1usize..300,
        ) {
            let site = StatusSite::new("smolsock", &long_status);
            let mut whole = HttpResponder::<_, 128, 2048>::new(&site);
            let reference = answer(&mut whole, &request, request.len() + 1, 1 << 16);
            let mut split = HttpResponder::<_, 128, 2048>::new(&site);
            let got = answer(&mut split, &request, cut, space);
            prop_assert_eq!(&got, &reference);
            prop_assert_eq!(split.stats(), whole.stats());
            if split.stats().incomplete == 0 && !request.is_empty() {
                prop_assert!(got.starts_with(b"HTTP/1.1 "));
            }
        }

        /// Pieces at any times: the answer is the page when the head was whole
        /// before the deadline, else 408 at the deadline, and never a panic.
        #[test]
        fn the_head_deadline_decides_between_the_page_and_408(
            gaps in prop::collection::vec(0u64..1500, 1..12),
            head_timeout in 0u64..8000,
        ) {
            let status = |w: &mut dyn fmt::Write| w.write_str("ok");
            let site = StatusSite::new("smolsock", &status);
            let config = HttpConfig {
                head_timeout: Duration::from_millis(head_timeout),
                ..HttpConfig::DEFAULT
            };
            let mut http = HttpResponder::<_, 1024, 1024>::with_config(&site, config);
            let size = GET.len().div_ceil(gaps.len());
            let mut at = Instant::ZERO;
            let pieces: Vec<(Instant, Vec<u8>)> = GET
                .chunks(size)
                .zip(&gaps)
                .map(|(piece, gap)| {
                    at = at.saturating_add(Duration::from_millis(*gap));
                    (at, piece.to_vec())
                })
                .collect();
            let last = pieces.last().unwrap().0;
            let got = timed(&mut http, &pieces);
            prop_assert_eq!(got.status, Status::Close);
            if last < Instant::from_millis(head_timeout) {
                let ok = http_response(StatusCode::OK, "text/plain; charset=utf-8", b"ok", true);
                prop_assert_eq!(got.output, ok);
                prop_assert_eq!(got.at, last);
            } else {
                prop_assert_eq!(got.output, error(StatusCode::REQUEST_TIMEOUT));
                prop_assert_eq!(got.at, Instant::from_millis(head_timeout));
                prop_assert_eq!(http.stats().head_timeouts, 1);
            }
        }
    }
}

#[test]
fn a_head_with_a_bad_content_length_or_host_gets_400_and_is_counted() {
    // RFC 9112 §6.3 and §3.2: these must be refused, body or not.
    let status = |w: &mut dyn fmt::Write| w.write_str("ok");
    let site = StatusSite::new("smolsock", &status);
    for request in [
        &b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a b/c@d\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: [::1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: [:::::]\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: [1::2::3]:8080\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: [::1%25]\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: [::1%eth0]\r\n\r\n",
    ] {
        let mut http = HttpResponder::<_, 512, 1024>::new(&site);
        let response = answer(&mut http, request, 3, 16);
        let what = String::from_utf8_lossy(request);
        assert_eq!(response, error(StatusCode::BAD_REQUEST), "{what}");
        assert_eq!(http.stats().malformed, 1, "{what}");
    }
    // A HEAD refused so gets the head alone (RFC 9110 §9.3.2).
    let mut http = HttpResponder::<_, 512, 1024>::new(&site);
    let response = answer(&mut http, b"HEAD / HTTP/1.1\r\n\r\n", 3, 16);
    let expected = http_response(
        StatusCode::BAD_REQUEST,
        "text/plain",
        b"400 Bad Request\n",
        false,
    );
    assert_eq!(
        String::from_utf8_lossy(&response),
        String::from_utf8_lossy(&expected)
    );
    // HTTP/1.0 needs no Host; the same length twice is one length; a Host is a
    // name, an IPv4 address or an IPv6 one in brackets (with a zone id after
    // `%25` or not), with or without a port, or empty.
    for request in [
        &b"GET / HTTP/1.0\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: [fe80::1%25eth0]:8080\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: [::ffff:10.0.2.15]\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: 10.0.2.15\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\ncontent-length: 0\r\n\r\n",
    ] {
        let mut http = HttpResponder::<_, 512, 1024>::new(&site);
        let response = answer(&mut http, request, 3, 16);
        let what = String::from_utf8_lossy(request);
        assert!(response.starts_with(b"HTTP/1.1 200 OK\r\n"), "{what}");
        assert_eq!(http.stats().malformed, 0, "{what}");
    }
}

#[test]
fn a_head_whose_transfer_encoding_does_not_frame_the_body_is_refused_and_counted() {
    // Where the body ends is unknown (chunked not last, or not once), or the
    // head may be an attempt at smuggling (with a Content-Length too), or
    // HTTP/1.0: 400. A coding not decoded here before chunked: 501 (RFC 9112
    // §6.1, §6.3).
    let status = |w: &mut dyn fmt::Write| w.write_str("ok");
    let site = StatusSite::new("smolsock", &status);
    let bad = StatusCode::BAD_REQUEST;
    let unknown = StatusCode::NOT_IMPLEMENTED;
    for (request, code) in [
        (&b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"[..], bad),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\ntransfer-encoding: gzip, CHUNKED\r\n\r\n0\r\n\r\n",
            unknown,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
            bad,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
            bad,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: gzip\r\n\r\nhello",
            bad,
        ),
        (
            b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            bad,
        ),
        (b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n\r\n", bad),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, ;x\r\n\r\n0\r\n\r\n",
            bad,
        ),
    ] {
        let mut http = HttpResponder::<_, 512, 1024>::new(&site);
        let response = answer(&mut http, request, 3, 16);
        let what = String::from_utf8_lossy(request);
        assert_eq!(
            String::from_utf8_lossy(&response),
            String::from_utf8_lossy(&error(code)),
            "{what}"
        );
        let stats = http.stats();
        let errors = (code == bad) as u64;
        assert_eq!(
            (stats.requests, stats.malformed, stats.ok),
            (1, 1, 0),
            "{what}"
        );
        assert_eq!(
            (stats.client_errors, stats.server_errors),
            (errors, 1 - errors),
            "{what}"
        );
        assert_eq!(stats.discarded, request.len() as u64, "{what}");
    }
    // A chunked body is thrown away with the connection as any other, and the
    // head answered as if it had none.
    let chunked =
        b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let mut http = HttpResponder::<_, 512, 1024>::new(&site);
    let response = answer(&mut http, chunked, 3, 16);
    assert!(response.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert_eq!((http.stats().malformed, http.stats().discarded), (0, 15));
    let post = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    let response = answer(&mut http, post, 3, 16);
    assert_eq!(response, error(StatusCode::METHOD_NOT_ALLOWED));
    assert_eq!(http.stats().malformed, 0);
    // A body framed by Content-Length alone is thrown away with the connection,
    // and the page is served.
    let mut http = HttpResponder::<_, 512, 1024>::new(&site);
    let request = b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
    let response = answer(&mut http, request, 3, 16);
    assert!(response.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert_eq!((http.stats().malformed, http.stats().discarded), (0, 5));
}

/// An error answer to a HEAD request: the head alone (RFC 9110 §9.3.2).
fn error_head(code: StatusCode) -> Vec<u8> {
    http_response(code, "text/plain", format!("{code}\n").as_bytes(), false)
}

#[test]
fn every_refusal_of_a_head_request_is_a_head_alone() {
    let status = |w: &mut dyn fmt::Write| w.write_str("ok");
    let site = StatusSite::new("smolsock", &status);
    let too_many = format!(
        "HEAD / HTTP/1.1\r\n{}\r\n",
        "A:\r\n".repeat(MAX_HEADERS + 1)
    );
    let refused: [(&[u8], StatusCode); 9] = [
        (
            b"HEAD / HTTP/2.0\r\n\r\n",
            StatusCode::VERSION_NOT_SUPPORTED,
        ),
        (
            b"\r\nHEAD / HTTP/2.0\r\n\r\n",
            StatusCode::VERSION_NOT_SUPPORTED,
        ),
        (b"HEAD / HTTP/1/1\r\n\r\n", StatusCode::BAD_REQUEST),
        (b"HEAD /a b HTTP/1.1\r\n\r\n", StatusCode::BAD_REQUEST),
        (
            b"HEAD / HTTP/1.1\r\nno colon\r\n\r\n",
            StatusCode::BAD_REQUEST,
        ),
        (
            b"HEAD / HTTP/1.1\r\nHost: a b\r\n\r\n",
            StatusCode::BAD_REQUEST,
        ),
        (
            b"HEAD / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
            StatusCode::BAD_REQUEST,
        ),
        (
            b"HEAD / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: br, chunked\r\n\r\n",
            StatusCode::NOT_IMPLEMENTED,
        ),
        (
            too_many.as_bytes(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        ),
    ];
    let mut http = HttpResponder::<_, 512, 1024>::new(&site);
    for (request, code) in refused {
        let response = answer(&mut http, request, 3, 16);
        assert_eq!(
            String::from_utf8_lossy(&response),
            String::from_utf8_lossy(&error_head(code)),
            "{}",
            String::from_utf8_lossy(request)
        );
    }
    let stats = http.stats();
    assert_eq!((stats.malformed, stats.oversize), (8, 1));
    assert_eq!((stats.client_errors, stats.server_errors), (6, 3));

    // Over the request buffer: 414, then 431.
    let mut small = HttpResponder::<_, 64, 64>::new(&site);
    let long_line = format!("HEAD /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(100));
    let long_head = format!("HEAD / HTTP/1.1\r\nCookie: {}\r\n\r\n", "a".repeat(100));
    for (request, code) in [
        (long_line, StatusCode::URI_TOO_LONG),
        (long_head, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
    ] {
        let response = answer(&mut small, request.as_bytes(), 7, 16);
        assert_eq!(response, error_head(code), "{request}");
    }
    assert_eq!(small.stats().oversize, 2);

    // Not whole by the deadline: 408.
    let head = b"HEAD /stats HTTP/1.1\r\nHost: 192.168.69.1\r\n\r\n";
    let got = timed(&mut http, &trickle(head, Duration::from_secs(1)));
    assert_eq!(got.output, error_head(StatusCode::REQUEST_TIMEOUT));
    assert_eq!(http.stats().head_timeouts, 1);

    // A method other than HEAD (`head` is another), or none that can be read,
    // gets the error's body.
    for request in [
        &b"HEAD\r\n\r\n"[..],
        b"HEAD\t/ HTTP/1.1\r\n\r\n",
        b"head / HTTP/2.0\r\n\r\n",
    ] {
        let response = answer(&mut http, request, 3, 16);
        let code = match request[0] {
            b'h' => StatusCode::VERSION_NOT_SUPPORTED,
            _ => StatusCode::BAD_REQUEST,
        };
        assert_eq!(
            response,
            error(code),
            "{}",
            String::from_utf8_lossy(request)
        );
    }
}

#[test]
fn a_head_refused_for_its_host_or_framing_is_thrown_away_whole_as_any_refused_head() {
    // HttpStats::discarded: "all of a head refused". A head refused by the
    // parser (no colon) counts whole; one refused for its Host, its
    // Content-Length or a Transfer-Encoding is refused just as much (400,
    // `malformed`), and must count whole too.
    let status = |w: &mut dyn fmt::Write| w.write_str("ok");
    let site = StatusSite::new("smolsock", &status);
    for request in [
        &b"GET / HTTP/1.1\r\nno colon here\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    ] {
        let mut http = HttpResponder::<_, 512, 1024>::new(&site);
        let response = answer(&mut http, request, 3, 16);
        let what = String::from_utf8_lossy(request);
        assert_eq!(response, error(StatusCode::BAD_REQUEST), "{what}");
        assert_eq!(http.stats().malformed, 1, "{what}");
        assert_eq!(http.stats().discarded, request.len() as u64, "{what}");
    }
}

#[test]
fn an_absolute_target_is_served_from_its_path() {
    // RFC 9112 §3.2.2: a server MUST accept the absolute form (a client talking
    // to it as to a proxy sends it); the Host field must still be valid.
    let site = StatusSite::new("smolsock", &long_status);
    let (text, stats) = page(&site, "/stats");
    let mut http = HttpResponder::<_, 512, 2048>::new(&site);
    let request = b"GET http://10.0.2.15:8080/stats?x=1 HTTP/1.1\r\nHost: 10.0.2.15:8080\r\n\r\n";
    let response = answer(&mut http, request, 5, 64);
    assert_eq!(
        String::from_utf8_lossy(&response),
        String::from_utf8_lossy(&http_response(StatusCode::OK, text, stats.as_bytes(), true))
    );
    let response = answer(&mut http, b"GET http://a/nothing HTTP/1.0\r\n\r\n", 5, 64);
    assert_eq!(response, error(StatusCode::NOT_FOUND));
    for request in [
        &b"GET http://a/stats HTTP/1.1\r\n\r\n"[..],
        b"GET http://user@a/stats HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET ftp://a/stats HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        let response = answer(&mut http, request, 5, 64);
        let what = String::from_utf8_lossy(request);
        assert_eq!(response, error(StatusCode::BAD_REQUEST), "{what}");
    }
    assert_eq!((http.stats().ok, http.stats().malformed), (1, 3));
}

#[test]
fn a_value_byte_no_utf8_text_holds_gets_400_at_once_even_in_a_small_buffer() {
    // The byte arrives with the buffer not yet full and the line not ended: the
    // answer is 400 there and then, not 431 once the buffer fills, nor 408 if
    // the peer stops.
    let status = |w: &mut dyn fmt::Write| w.write_str("ok");
    let site = StatusSite::new("smolsock", &status);
    let mut http = HttpResponder::<_, 64, 64>::new(&site);
    let now = Instant::ZERO;
    http.start(now);
    let head = b"GET / HTTP/1.1\r\nHost: x\r\nX: \xff";
    assert_eq!(http.receive(head, now), head.len());
    assert_eq!(http.status(), Status::Open);
    let mut space = [0u8; 256];
    let n = http.transmit(&mut space, now);
    assert_eq!(space[..n], error(StatusCode::BAD_REQUEST)[..]);
    let stats = http.stats();
    assert_eq!(
        (stats.malformed, stats.oversize, stats.head_timeouts),
        (1, 0, 0)
    );
}

#[test]
fn a_target_with_a_fragment_gets_400_not_a_page_of_that_name() {
    let status = |w: &mut dyn fmt::Write| w.write_str("ok");
    let site = StatusSite::new("smolsock", &status);
    let mut http = HttpResponder::<_, 512, 2048>::new(&site);
    for request in [
        &b"GET http://a#top HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"GET /#top HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        let response = answer(&mut http, request, 5, 64);
        let what = String::from_utf8_lossy(request);
        assert_eq!(response, error(StatusCode::BAD_REQUEST), "{what}");
    }
    assert_eq!(http.stats().malformed, 2);
}

#[test]
fn a_page_whose_writing_fails_is_a_500_not_a_404() {
    let status = |_: &mut dyn fmt::Write| Err(fmt::Error);
    let site = StatusSite::new("smolsock", &status);
    let mut http = HttpResponder::<_, 512, 512>::new(&site);
    for path in ["/", "/stats"] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        let got = answer(&mut http, request.as_bytes(), 100, 100);
        assert_eq!(
            String::from_utf8_lossy(&got).lines().next(),
            Some("HTTP/1.1 500 Internal Server Error"),
            "{path}"
        );
    }
}

#[test]
fn connect_gets_405_with_the_methods_allowed() {
    let status = |w: &mut dyn fmt::Write| w.write_str("ok");
    let site = StatusSite::new("smolsock", &status);
    let mut http = HttpResponder::<_, 512, 512>::new(&site);
    let request = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
    let got = answer(&mut http, request, 100, 100);
    let got = String::from_utf8_lossy(&got);
    assert_eq!(got.lines().next(), Some("HTTP/1.1 405 Method Not Allowed"));
    assert!(got.contains("\r\nAllow: GET, HEAD\r\n"), "{got}");
    // Its target must be a host and a port.
    let got = answer(
        &mut http,
        b"CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n",
        100,
        100,
    );
    assert_eq!(
        String::from_utf8_lossy(&got).lines().next(),
        Some("HTTP/1.1 400 Bad Request")
    );
}

#[test]
fn once_answered_what_the_peer_still_sends_is_only_dropped() {
    let status = |w: &mut dyn fmt::Write| w.write_str("ok");
    let site = StatusSite::new("smolsock", &status);
    let mut http = HttpResponder::<_, 512, 512>::new(&site);
    http.start(Instant::ZERO);
    assert!(!http.drops_input(), "a head is still to be read");
    answer(&mut http, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 100, 100);
    // An adapter counts none of it as the peer's progress towards the close.
    assert!(http.drops_input());
    assert_eq!(http.receive(b"more", Instant::ZERO), 4);
}
