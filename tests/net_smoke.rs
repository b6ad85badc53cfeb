//! First end-to-end checks of the net layer over the in-process link.

use smolsock::net::{
    ClientState, ConnectError, PortAllocator, RecvError, SendError, StreamingFrames, TcpClient,
    TcpServer, TcpSession,
};
use smolsock::runner::sim::{FaultConfig, MIN_MTU, SERVER_V4, SimConfig, SimNet};
use smolsock::session::{Echo, Flow, FrameHandler, FrameOut, Framed, FramedEcho, Status};
use smolsock::wire::body::BodyPiece;
use smolsock::wire::frame::{FrameSource, HeaderFormat, ReadError, WriteError};
use smoltcp::iface::{SocketHandle, SocketSet, SocketStorage};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};

fn tcp_socket<'a>() -> tcp::Socket<'a> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 4096]),
        tcp::SocketBuffer::new(vec![0; 4096]),
    )
}

/// Starts the client socket `c` connecting to the server on `port` (IPv4), from
/// an ephemeral port drawn with `seed`; poll the client until it is connected.
/// The server listens from its construction: no poll of it comes first.
fn connect(net: &mut SimNet<'_>, c: SocketHandle, port: u16, seed: u64) -> TcpClient {
    let now = net.now();
    let mut ports = PortAllocator::<4>::new(seed);
    let mut client = TcpClient::new(Duration::from_secs(5));
    let (sock, cx) = net.client.socket_and_context::<tcp::Socket>(c).unwrap();
    client
        .connect(cx, sock, (SERVER_V4, port), &mut ports, now)
        .unwrap();
    client
}

/// A framed connection with no handler, whole frames in and out: the client side.
type FramedConn = Framed<(), Vec<u8>, Vec<u8>>;

fn framed_conn(handle: SocketHandle, format: HeaderFormat) -> TcpSession<FramedConn> {
    let frame = format.max_frame_len();
    TcpSession::new(
        handle,
        Framed::new((), vec![0u8; frame], vec![0u8; frame], format).unwrap(),
    )
}

/// The framed echo on port 9000, one slot, frames up to `format`'s maximum.
fn framed_echo_server(
    net: &mut SimNet<'_>,
    format: HeaderFormat,
) -> TcpServer<Framed<FramedEcho, Vec<u8>, Vec<u8>>, 1> {
    let s1 = net.server.sockets.add(tcp_socket());
    let storage = || vec![0u8; format.max_frame_len()];
    let handler = Framed::new(FramedEcho::new(), storage(), storage(), format).unwrap();
    TcpServer::new(&mut net.server.sockets, 9000, [s1], [handler]).unwrap()
}

/// A client socket connected to the raw echo on port 7 over `net`; the echo is
/// not polled again.
fn connected_to_echo(net: &mut SimNet<'_>) -> SocketHandle {
    let s1 = net.server.sockets.add(tcp_socket());
    let mut server = TcpServer::new(&mut net.server.sockets, 7, [s1], [Echo::new()]).unwrap();
    let c = net.client.sockets.add(tcp_socket());
    let mut client = connect(net, c, 7, 4);
    let mut empty = ();
    net.run_services(
        &mut server,
        &mut empty,
        Duration::from_secs(10),
        |_, _, net| {
            let now = net.now();
            let sock = net.client.sockets.get_mut::<tcp::Socket>(c);
            (client.poll(sock, now) == ClientState::Connected).then_some(())
        },
    )
    .unwrap();
    c
}

/// Frames gathered from the pieces `recv_pieces` hands out, each piece checked
/// against the length its frame was sent with and the place it goes.
struct Gathered<'a> {
    lens: &'a [usize],
    frames: Vec<Vec<u8>>,
    open: bool,
}

impl<'a> Gathered<'a> {
    fn new(lens: &'a [usize]) -> Self {
        Self {
            lens,
            frames: Vec::new(),
            open: false,
        }
    }

    /// Takes at most `budget` bytes of `piece`; returns how many it took.
    fn take(&mut self, piece: BodyPiece<'_>, budget: usize) -> usize {
        if !self.open {
            assert_eq!(piece.frame_len, self.lens[self.frames.len()]);
            self.frames.push(Vec::new());
            self.open = true;
        }
        let frame = self.frames.last_mut().unwrap();
        assert_eq!(piece.offset, frame.len());
        let n = piece.bytes.len().min(budget);
        frame.extend_from_slice(&piece.bytes[..n]);
        if piece.ends_frame && n == piece.bytes.len() {
            self.open = false;
        }
        n
    }

    /// Every frame came back whole, byte `offset` of frame `i` being `byte(i, offset)`.
    fn assert_all(&self, byte: impl Fn(usize, usize) -> u8) {
        assert_eq!(self.frames.len(), self.lens.len());
        for (i, frame) in self.frames.iter().enumerate() {
            assert_eq!(frame.len(), self.lens[i]);
            assert!(
                frame.iter().enumerate().all(|(o, &b)| b == byte(i, o)),
                "frame {i}"
            );
        }
    }
}

/// One client turn on a framed connection: poll (which starts the session on the
/// first turn, before anything is queued: `start` forgets what was), queue what
/// fits of `frames[*sent..]`, poll, and take every frame that came, until a
/// round moves nothing. Returns the session's status.
fn framed_turn(
    conn: &mut TcpSession<FramedConn>,
    sockets: &mut SocketSet<'_>,
    now: Instant,
    frames: &[Vec<u8>],
    sent: &mut usize,
    got: &mut Vec<Vec<u8>>,
) -> Status {
    let mut status = conn.poll(sockets, now).unwrap();
    loop {
        let before = (*sent, got.len());
        while *sent < frames.len() && conn.session_mut().send(&frames[*sent]).is_ok() {
            *sent += 1;
        }
        status = conn.poll(sockets, now).unwrap_or(status);
        while let Some(frame) = conn.session_mut().recv() {
            got.push(frame.to_vec());
            // An echo: more frames than were sent would never end.
            assert!(got.len() <= *sent, "more frames back than were sent");
        }
        if (*sent, got.len()) == before {
            return status;
        }
    }
}

/// Whether the peer closed its sending half cleanly and everything it sent was
/// taken: the framed `recv` returning `b''`.
fn finished(conn: &mut TcpSession<FramedConn>, sockets: &mut SocketSet<'_>) -> bool {
    let sock = sockets.get::<tcp::Socket>(conn.handle());
    // States the peer's FIN put us in (a reset leaves the socket closed instead).
    let fin = matches!(
        sock.state(),
        tcp::State::CloseWait | tcp::State::LastAck | tcp::State::Closing | tcp::State::TimeWait
    );
    let peer_done = fin && sock.recv_queue() == 0;
    peer_done && conn.session().error().is_none() && conn.session_mut().recv().is_none()
}

/// A simulated link between a server and a client whose sockets live in `server`
/// and `client`.
fn sim_net<'a>(
    config: SimConfig,
    server: &'a mut [SocketStorage<'a>],
    client: &'a mut [SocketStorage<'a>],
) -> SimNet<'a> {
    SimNet::new(config, SocketSet::new(server), SocketSet::new(client))
}

#[test]
fn framed_echo_returns_every_frame_whole_over_a_rough_link() {
    let (mut s_store, mut c_store) = ([SocketStorage::EMPTY; 2], [SocketStorage::EMPTY; 1]);
    let mut net = sim_net(
        SimConfig::new(3).with_faults(FaultConfig::ROUGH),
        &mut s_store,
        &mut c_store,
    );
    let format = HeaderFormat::NETWORK.with_max_len(8192).unwrap();
    let s1 = net.server.sockets.add(tcp_socket());
    let s2 = net.server.sockets.add(tcp_socket());
    let handler =
        || Framed::new(FramedEcho::new(), vec![0u8; 8196], vec![0u8; 8196], format).unwrap();
    let mut server = TcpServer::new(
        &mut net.server.sockets,
        9000,
        [s1, s2],
        [handler(), handler()],
    )
    .unwrap();
    let c = net.client.sockets.add(tcp_socket());
    let mut conn = framed_conn(c, format);

    let mut client = connect(&mut net, c, 9000, 1);

    let frames: Vec<Vec<u8>> = (0..60usize)
        .map(|i| vec![i as u8; (i * 137) % 8000])
        .collect();
    let mut sent = 0;
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut empty = ();
    // Virtual time. At 10 % loss with 4 KiB windows most losses wait for a
    // retransmission timeout (a second or more, doubling when the retransmission
    // is lost too): about a minute for this exchange, more on unlucky draws.
    net.run_services(
        &mut server,
        &mut empty,
        Duration::from_secs(600),
        |_, _, net| {
            let now = net.now();
            let sock = net.client.sockets.get_mut::<tcp::Socket>(c);
            if client.poll(sock, now) != ClientState::Connected {
                return None;
            }
            let status = framed_turn(
                &mut conn,
                &mut net.client.sockets,
                now,
                &frames,
                &mut sent,
                &mut got,
            );
            assert_eq!(status, Status::Open);
            (got.len() == frames.len()).then_some(())
        },
    )
    .unwrap();
    assert_eq!(got, frames);
    assert!(
        net.stats().client_to_server.lost > 0,
        "the link really lost frames"
    );
    // Close from the client; the server sees the end and its slot listens again.
    conn.session_mut().close();
    net.run_services(
        &mut server,
        &mut empty,
        Duration::from_secs(60),
        |server, _, net| {
            let now = net.now();
            framed_turn(
                &mut conn,
                &mut net.client.sockets,
                now,
                &[],
                &mut 0,
                &mut got,
            );
            (server.stats().closed == 1 && server.active() == 0).then_some(())
        },
    )
    .unwrap();
    assert_eq!(got.len(), frames.len(), "nothing more came");
    assert!(
        finished(&mut conn, &mut net.client.sockets),
        "the server closed cleanly"
    );
}

#[test]
fn raw_echo_echoes_a_large_send_exactly() {
    let (mut s_store, mut c_store) = ([SocketStorage::EMPTY; 1], [SocketStorage::EMPTY; 1]);
    let mut net = sim_net(SimConfig::new(5), &mut s_store, &mut c_store);
    let s1 = net.server.sockets.add(tcp_socket());
    let mut server = TcpServer::new(&mut net.server.sockets, 7, [s1], [Echo::new()]).unwrap();
    let c = net.client.sockets.add(tcp_socket());
    let mut client = connect(&mut net, c, 7, 2);
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
    let (mut off, mut back) = (0, Vec::new());
    let mut empty = ();
    net.run_services(
        &mut server,
        &mut empty,
        Duration::from_secs(60),
        |_, _, net| {
            let now = net.now();
            let sock = net.client.sockets.get_mut::<tcp::Socket>(c);
            if client.poll(sock, now) != ClientState::Connected {
                return None;
            }
            off += sock.send_slice(&data[off..]).unwrap();
            let mut buf = [0u8; 1024];
            while let Ok(n @ 1..) = sock.recv_slice(&mut buf) {
                back.extend_from_slice(&buf[..n]);
            }
            (back.len() == data.len()).then_some(())
        },
    )
    .unwrap();
    assert_eq!(back, data);
    assert_eq!(server.sessions()[0].bytes, data.len() as u64);
}

#[test]
fn http_get_gets_the_page_and_garbage_gets_400() {
    use smolsock::http::{HttpResponder, StatusSite};
    let status = |w: &mut dyn core::fmt::Write| w.write_str("all good");
    let site = StatusSite::new("smolsock", &status);
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
        let (mut s_store, mut c_store) = ([SocketStorage::EMPTY; 1], [SocketStorage::EMPTY; 1]);
        let mut net = sim_net(SimConfig::new(9), &mut s_store, &mut c_store);
        let s1 = net.server.sockets.add(tcp_socket());
        let responder = HttpResponder::<_, 512, 1024>::new(&site);
        let mut server = TcpServer::new(&mut net.server.sockets, 80, [s1], [responder]).unwrap();
        let c = net.client.sockets.add(tcp_socket());
        let mut client = connect(&mut net, c, 80, 3);
        let mut response = Vec::new();
        let mut sent = false;
        let mut empty = ();
        net.run_services(
            &mut server,
            &mut empty,
            Duration::from_secs(30),
            |_, _, net| {
                let now = net.now();
                let sock = net.client.sockets.get_mut::<tcp::Socket>(c);
                if client.poll(sock, now) != ClientState::Connected && !sent {
                    return None;
                }
                if !sent {
                    sock.send_slice(request).unwrap();
                    sent = true;
                }
                let mut buf = [0u8; 512];
                while let Ok(n @ 1..) = sock.recv_slice(&mut buf) {
                    response.extend_from_slice(&buf[..n]);
                }
                (!sock.may_recv()).then_some(())
            },
        )
        .unwrap();
        let text = String::from_utf8_lossy(&response);
        assert!(text.starts_with(expect), "{text}");
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(body.len(), len, "{text}");
        if expect.contains("200") {
            assert!(body.contains("all good"));
        }
    }
}

#[test]
fn close_waits_for_a_half_written_frame_and_the_peer_gets_every_frame_then_the_end() {
    let (mut s_store, mut c_store) = ([SocketStorage::EMPTY; 1], [SocketStorage::EMPTY; 1]);
    let mut net = sim_net(SimConfig::new(11), &mut s_store, &mut c_store);
    let format = HeaderFormat::NETWORK.with_max_len(8192).unwrap();
    let mut server = framed_echo_server(&mut net, format);
    let c = net.client.sockets.add(tcp_socket());
    let mut conn = framed_conn(c, format);
    let mut client = connect(&mut net, c, 9000, 4);

    // Two frames; the second is larger than the 4 KiB send buffer, so it goes
    // out over several polls, and the close asked for right after queueing it
    // must wait: no FIN while part of it is still the session's.
    let frames = [vec![1u8; 100], vec![2u8; 7000]];
    let (mut sent, mut closed) = (0, false);
    let (mut held_open, mut fin_early) = (0, false);
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut empty = ();
    net.run_services(
        &mut server,
        &mut empty,
        Duration::from_secs(30),
        |_, _, net| {
            let now = net.now();
            let sock = net.client.sockets.get_mut::<tcp::Socket>(c);
            if client.poll(sock, now) != ClientState::Connected && !closed {
                return None;
            }
            let status = framed_turn(
                &mut conn,
                &mut net.client.sockets,
                now,
                &frames,
                &mut sent,
                &mut got,
            );
            if sent == frames.len() && !closed {
                conn.session_mut().close();
                closed = true;
            }
            if closed && !conn.session().is_flushed() {
                // The big frame is half written: the session stays open, and
                // the socket has not closed its sending half.
                held_open += 1;
                let sock = net.client.sockets.get::<tcp::Socket>(c);
                fin_early |= status != Status::Open || !sock.may_send();
            }
            finished(&mut conn, &mut net.client.sockets).then_some(())
        },
    )
    .unwrap();
    assert!(
        held_open > 0,
        "the close came while the big frame was half written"
    );
    assert!(!fin_early, "no FIN before the whole frame was out");
    assert_eq!(sent, frames.len());
    assert_eq!(got, frames, "the server echoed both frames whole");
    assert_eq!(
        conn.session().stats().read.truncated,
        0,
        "then the server closed cleanly"
    );
    assert_eq!((server.stats().resets, server.stats().aborted), (0, 0));
}

#[test]
fn streaming_frames_go_through_the_rings_in_pieces_over_a_rough_link() {
    let (mut s_store, mut c_store) = ([SocketStorage::EMPTY; 1], [SocketStorage::EMPTY; 1]);
    let mut net = sim_net(
        SimConfig::new(5).with_faults(FaultConfig::ROUGH),
        &mut s_store,
        &mut c_store,
    );
    let format = HeaderFormat::NETWORK.with_max_len(8192).unwrap();
    let s1 = net.server.sockets.add(tcp_socket());
    let handler = Framed::new(FramedEcho::new(), vec![0u8; 8196], vec![0u8; 8196], format).unwrap();
    let mut server = TcpServer::new(&mut net.server.sockets, 9000, [s1], [handler]).unwrap();
    let c = net.client.sockets.add(tcp_socket());
    // No frame storage on the client: bodies are produced and checked in place.
    let mut stream = StreamingFrames::new(format);
    StreamingFrames::configure(net.client.sockets.get_mut::<tcp::Socket>(c));
    let mut client = connect(&mut net, c, 9000, 2);

    // Frames up to 8 KiB through 4 KiB buffers, one of them empty.
    let lens: Vec<usize> = (0..30usize).map(|i| (i * 1999) % 8193).collect();
    let byte = |frame: usize, offset: usize| (frame * 31 + offset * 7) as u8;
    let (mut sent, mut closed, mut calls) = (0, false, 0usize);
    let mut got = Gathered::new(&lens);
    let mut empty = ();
    let end = net
        .run_services(
            &mut server,
            &mut empty,
            Duration::from_secs(120),
            |_, _, net| {
                let now = net.now();
                let sock = net.client.sockets.get_mut::<tcp::Socket>(c);
                if client.poll(sock, now) != ClientState::Connected && !closed {
                    return None;
                }
                while sent < lens.len() {
                    let frame = sent;
                    match stream.send_with(sock, lens[frame], |offset, space| {
                        for (i, b) in space.iter_mut().enumerate() {
                            *b = byte(frame, offset + i);
                        }
                        space.len()
                    }) {
                        Ok(()) => sent += 1,
                        Err(SendError::WouldBlock) => break,
                        Err(e) => panic!("{e}"),
                    }
                }
                if sent == lens.len() && !closed {
                    stream.close(sock).unwrap();
                    closed = true;
                }
                loop {
                    // Take at most 700 bytes per call and then stop: back-pressure.
                    calls += 1;
                    let mut budget = 700;
                    let result = stream.recv_pieces(sock, |piece| {
                        let n = got.take(piece, budget);
                        budget -= n;
                        n
                    });
                    match result {
                        Ok(0) => return None,
                        Ok(_) => {}
                        Err(e) => return Some(e),
                    }
                }
            },
        )
        .unwrap();
    assert_eq!(end, RecvError::Finished);
    got.assert_all(byte);
    assert!(calls > lens.len(), "the receiver stopped early and resumed");
    let stats = stream.stats();
    assert_eq!(stats.read.frames, lens.len() as u64);
    assert_eq!(stats.write.frames, lens.len() as u64);
    assert!(stats.write.split_frames > 0);
}

/// Frames `next..lens.len()` of lengths `lens`, byte `offset` of frame `i`
/// being `byte(i, offset)`.
struct Numbered<'a> {
    lens: &'a [usize],
    next: usize,
}

fn numbered_byte(frame: usize, offset: usize) -> u8 {
    (frame * 13 + offset * 5) as u8
}

impl FrameSource for Numbered<'_> {
    fn next_len(&mut self) -> Option<usize> {
        self.lens.get(self.next).copied()
    }

    fn fill(&mut self, offset: usize, space: &mut [u8]) -> usize {
        for (i, b) in space.iter_mut().enumerate() {
            *b = numbered_byte(self.next, offset + i);
        }
        space.len()
    }

    fn sent(&mut self) {
        self.next += 1;
    }
}

#[test]
fn many_small_frames_go_out_several_to_a_send_over_a_rough_link() {
    let (mut s_store, mut c_store) = ([SocketStorage::EMPTY; 1], [SocketStorage::EMPTY; 1]);
    let mut net = sim_net(
        SimConfig::new(8).with_faults(FaultConfig::ROUGH),
        &mut s_store,
        &mut c_store,
    );
    let format = HeaderFormat::NETWORK.with_max_len(2000).unwrap();
    let mut server = framed_echo_server(&mut net, format);
    let c = net.client.sockets.add(tcp_socket());
    let mut stream = StreamingFrames::new(format);
    StreamingFrames::configure(net.client.sockets.get_mut::<tcp::Socket>(c));
    let mut client = connect(&mut net, c, 9000, 2);

    // 600 frames of 0 to 60 bytes, and a few of 2000, through 4 KiB buffers.
    let lens: Vec<usize> = (0..600usize)
        .map(|i| if i % 97 == 50 { 2000 } else { (i * 37) % 61 })
        .collect();
    let mut source = Numbered {
        lens: &lens,
        next: 0,
    };
    // Calls that queued at least one frame whole, and the most one call queued.
    let (mut closed, mut sends, mut most, mut blocked) = (false, 0usize, 0usize, 0usize);
    let mut got = Gathered::new(&lens);
    let mut empty = ();
    let end = net
        .run_services(
            &mut server,
            &mut empty,
            Duration::from_secs(120),
            |_, _, net| {
                let now = net.now();
                let sock = net.client.sockets.get_mut::<tcp::Socket>(c);
                if client.poll(sock, now) != ClientState::Connected && !closed {
                    return None;
                }
                if !closed {
                    let before = source.next;
                    let result = stream.send_frames(sock, &mut source);
                    if source.next > before {
                        sends += 1;
                        most = most.max(source.next - before);
                    }
                    match result {
                        Ok(()) => {
                            assert_eq!(source.next, lens.len(), "Ok: every frame is queued");
                            stream.close(sock).unwrap();
                            closed = true;
                        }
                        Err(SendError::WouldBlock) => blocked += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
                let result = stream.recv_pieces(sock, |piece| got.take(piece, usize::MAX));
                result.err()
            },
        )
        .unwrap();
    assert_eq!(end, RecvError::Finished);
    got.assert_all(numbered_byte);
    assert!(blocked > 0, "the ring filled and the sender waited");
    assert!(
        sends * 4 < lens.len() && most >= 20,
        "{sends} calls queued {} frames, at most {most} in one: several to a call",
        lens.len()
    );
    let stats = stream.stats();
    assert_eq!(stats.write.frames, lens.len() as u64);
    assert!(stats.write.split_frames > 0);
    assert!(stats.send_full > 0);
}

/// A peer that sends raw `bytes` and closes; the server reads them with
/// `StreamingFrames::recv_pieces` until it reports an error, which is returned.
fn streaming_server_reads(bytes: &'static [u8], format: HeaderFormat) -> (RecvError, u64) {
    let (mut s_store, mut c_store) = ([SocketStorage::EMPTY; 1], [SocketStorage::EMPTY; 1]);
    let mut net = sim_net(SimConfig::new(9), &mut s_store, &mut c_store);
    let s = net.server.sockets.add(tcp_socket());
    net.server
        .sockets
        .get_mut::<tcp::Socket>(s)
        .listen(9000)
        .unwrap();
    let c = net.client.sockets.add(tcp_socket());
    let (sock, cx) = net.client.socket_and_context::<tcp::Socket>(c).unwrap();
    sock.connect(cx, (SERVER_V4, 9000), 49152).unwrap();
    let mut stream = StreamingFrames::new(format);
    let mut sent = false;
    let mut body = 0u64;
    let error = net
        .run_until(Duration::from_secs(30), |net| {
            let sock = net.client.sockets.get_mut::<tcp::Socket>(c);
            if !sent && sock.may_send() {
                assert_eq!(sock.send_slice(bytes), Ok(bytes.len()));
                sock.close();
                sent = true;
            }
            let sock = net.server.sockets.get_mut::<tcp::Socket>(s);
            stream
                .recv_pieces(sock, |piece| {
                    body += piece.bytes.len() as u64;
                    piece.bytes.len()
                })
                .err()
        })
        .unwrap();
    (error, body)
}

#[test]
fn streaming_frames_report_a_truncated_frame_and_an_oversize_header() {
    let format = HeaderFormat::NETWORK.with_max_len(100).unwrap();
    // A whole frame, then one announcing 100 bytes that brings 10 before the close.
    let (error, body) = streaming_server_reads(b"\0\0\0\x02hi\0\0\0\x640123456789", format);
    assert_eq!(
        error,
        RecvError::Frame(ReadError::Truncated {
            received: 14,
            expected: Some(104)
        })
    );
    assert_eq!(body, 12, "every byte that came was handed out");
    // A header over the maximum stops the reader there.
    let (error, body) = streaming_server_reads(b"\0\0\0\x01!\0\0\x01\0garbage", format);
    assert_eq!(
        error,
        RecvError::Frame(ReadError::Oversize { len: 256, max: 100 })
    );
    assert_eq!(body, 1);
    // A clean close on a frame boundary is the end of the stream.
    let (error, body) = streaming_server_reads(b"\0\0\0\x01!\0\0\0\0", format);
    assert_eq!(error, RecvError::Finished);
    assert_eq!(body, 1);
}

#[test]
fn a_streaming_frame_refused_before_any_byte_went_out_is_not_owed() {
    let (mut s_store, mut c_store) = ([SocketStorage::EMPTY; 1], [SocketStorage::EMPTY; 1]);
    let mut net = sim_net(SimConfig::new(3), &mut s_store, &mut c_store);
    let c = connected_to_echo(&mut net);
    let mut stream = StreamingFrames::new(HeaderFormat::NETWORK);
    let sock = net.client.sockets.get_mut::<tcp::Socket>(c);
    // The send ring full to the last byte, with no poll to empty it.
    let filler = vec![0u8; sock.send_capacity() - sock.send_queue()];
    assert_eq!(sock.send_slice(&filler), Ok(filler.len()));
    let fill = |_: usize, space: &mut [u8]| space.len();
    assert_eq!(stream.send_with(sock, 10, fill), Err(SendError::WouldBlock));
    assert!(!stream.send_pending(), "nothing of the frame went out");
    // Another frame may be offered instead, and the stream may close.
    assert_eq!(stream.send_with(sock, 20, fill), Err(SendError::WouldBlock));
    assert_eq!(stream.close(sock), Ok(()));
    assert_eq!(stream.stats().write.frames, 0);
    assert_eq!(stream.stats().send_full, 2);
}

#[test]
fn an_overrun_in_the_rings_second_piece_leaves_the_first_queued_and_the_rest_owed() {
    // A 64-byte send ring whose free space is 24 bytes to its end and 30 after
    // its wrap: 30 bytes out, acknowledged while 10 more wait.
    let faults = FaultConfig::CLEAN.with_delay(Duration::from_millis(10));
    let mut net: SimNet<'static> = SimNet::new(
        SimConfig::new(1).with_faults(faults),
        SocketSet::new(vec![]),
        SocketSet::new(vec![]),
    );
    let socket = |rx: usize, tx: usize| {
        tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; rx]),
            tcp::SocketBuffer::new(vec![0; tx]),
        )
    };
    let server = net.server.sockets.add(socket(1024, 1024));
    let client = net.client.sockets.add(socket(1024, 64));
    let listening = net.server.sockets.get_mut::<tcp::Socket>(server);
    listening.listen(5000).unwrap();
    let (s, cx) = net
        .client
        .socket_and_context::<tcp::Socket>(client)
        .unwrap();
    s.connect(cx, (SERVER_V4, 5000), 49500).unwrap();
    net.run_until(Duration::from_secs(10), |net| {
        let established = |h| net.server.sockets.get::<tcp::Socket>(h).state();
        let c = net.client.sockets.get::<tcp::Socket>(client);
        (established(server) == tcp::State::Established && c.state() == tcp::State::Established)
            .then_some(())
    })
    .unwrap();
    StreamingFrames::configure(net.server.sockets.get_mut::<tcp::Socket>(server));
    let c = net.client.sockets.get_mut::<tcp::Socket>(client);
    StreamingFrames::configure(c);
    assert_eq!(c.send_slice(&[1; 30]), Ok(30));
    net.poll();
    net.run_for(Duration::from_millis(5));
    let c = net.client.sockets.get_mut::<tcp::Socket>(client);
    assert_eq!(c.send_slice(&[2; 10]), Ok(10));
    net.run_until(Duration::from_secs(1), |net| {
        let c = net.client.sockets.get::<tcp::Socket>(client);
        (c.send_queue() == 10).then_some(())
    })
    .unwrap();

    let mut frames = StreamingFrames::new(HeaderFormat::NETWORK);
    let c = net.client.sockets.get_mut::<tcp::Socket>(client);
    let mut asked = Vec::new();
    let result = frames.send_with(c, 50, |offset, space| {
        asked.push((offset, space.len()));
        // The second piece claims a byte more than it was given.
        space.len() + usize::from(offset > 0)
    });
    assert_eq!(asked, [(0, 20), (20, 30)], "both pieces of the ring");
    assert!(
        matches!(result, Err(SendError::Frame(WriteError::Overrun { .. }))),
        "{result:?}"
    );
    // The header and the first piece stay queued; the rest is owed, asked
    // for from where it stopped.
    assert_eq!(c.send_queue(), 10 + 4 + 20);
    assert!(frames.send_pending());
    let mut asked = Vec::new();
    let result = frames.send_with(c, 50, |offset, space| {
        asked.push((offset, space.len()));
        space.len()
    });
    assert_eq!((result, asked), (Ok(()), vec![(20, 30)]));
    assert!(!frames.send_pending());
}

#[test]
fn send_frames_on_a_full_ring_owes_nothing_and_a_drained_source_is_done() {
    let (mut s_store, mut c_store) = ([SocketStorage::EMPTY; 1], [SocketStorage::EMPTY; 1]);
    let mut net = sim_net(SimConfig::new(3), &mut s_store, &mut c_store);
    let c = connected_to_echo(&mut net);
    let mut stream = StreamingFrames::new(HeaderFormat::NETWORK);
    let sock = net.client.sockets.get_mut::<tcp::Socket>(c);
    // Room for one frame and four bytes of the next: its header.
    let room = 4 + 10 + 4;
    let filler = vec![0u8; sock.send_capacity() - sock.send_queue() - room];
    assert_eq!(sock.send_slice(&filler), Ok(filler.len()));
    let lens = [10, 20];
    let mut source = Numbered {
        lens: &lens,
        next: 0,
    };
    assert_eq!(
        stream.send_frames(sock, &mut source),
        Err(SendError::WouldBlock)
    );
    assert_eq!(source.next, 1, "the first frame is queued whole");
    assert!(
        stream.send_pending(),
        "the second is begun: its header went out"
    );
    // The ring is full: the half-written frame is owed, and closing waits for it.
    assert_eq!(
        stream.close(sock),
        Err(SendError::Frame(WriteError::Busy { in_progress: 20 }))
    );
    assert_eq!(
        stream.send_frames(sock, &mut source),
        Err(SendError::WouldBlock)
    );
    // A source with nothing to send has nothing to wait for, full ring or not.
    let mut stream = StreamingFrames::new(HeaderFormat::NETWORK);
    let mut nothing = Numbered { lens: &[], next: 0 };
    assert_eq!(stream.send_frames(sock, &mut nothing), Ok(()));
    // One with a frame, on a full ring, owes nothing: another stream may close.
    let mut one = Numbered {
        lens: &[5],
        next: 0,
    };
    assert_eq!(
        stream.send_frames(sock, &mut one),
        Err(SendError::WouldBlock)
    );
    assert!(!stream.send_pending());
    assert_eq!(stream.close(sock), Ok(()));
    assert_eq!(stream.stats().send_full, 1);
}

#[test]
fn a_full_ring_refuses_at_once_a_frame_that_could_never_go() {
    let (mut s_store, mut c_store) = ([SocketStorage::EMPTY; 1], [SocketStorage::EMPTY; 1]);
    let mut net = sim_net(SimConfig::new(3), &mut s_store, &mut c_store);
    let c = connected_to_echo(&mut net);
    let format = HeaderFormat::NETWORK.with_max_len(100).unwrap();
    let mut stream = StreamingFrames::new(format);
    let sock = net.client.sockets.get_mut::<tcp::Socket>(c);
    // Room for one frame's header and two of its body bytes, then none.
    let room = 4 + 2;
    let filler = vec![0u8; sock.send_capacity() - sock.send_queue() - room];
    assert_eq!(sock.send_slice(&filler), Ok(filler.len()));
    let too_large = SendError::Frame(WriteError::TooLarge { len: 101, max: 100 });
    let fill = |_: usize, space: &mut [u8]| space.len();
    // Over the maximum: refused whether or not there is room, never owed.
    assert_eq!(stream.send_with(sock, 101, fill), Err(too_large));
    let mut oversize = Numbered {
        lens: &[101],
        next: 0,
    };
    assert_eq!(stream.send_frames(sock, &mut oversize), Err(too_large));
    let mut source = Numbered {
        lens: &[10, 101],
        next: 0,
    };
    assert_eq!(
        stream.send_frames(sock, &mut source),
        Err(SendError::WouldBlock)
    );
    assert!(stream.send_pending(), "the first frame is half written");
    assert_eq!(sock.send_queue(), sock.send_capacity(), "the ring is full");
    // On the full ring, the refusals room would bring come at once: the frame
    // half written is the source's, not `send_with`'s, and is not to be left.
    let busy = SendError::Frame(WriteError::Busy { in_progress: 10 });
    assert_eq!(stream.send_with(sock, 10, fill), Err(busy));
    let mut quiet = Numbered { lens: &[], next: 0 };
    assert_eq!(stream.send_frames(sock, &mut quiet), Err(busy));
    // The source whose frame it is still waits for room.
    assert_eq!(
        stream.send_frames(sock, &mut source),
        Err(SendError::WouldBlock)
    );
    let stats = stream.stats();
    assert_eq!((stats.write.too_large, stats.send_full), (2, 2));
    // With nothing half written, a frame over the maximum is refused on the
    // full ring as with room, and counted.
    let mut other = StreamingFrames::new(format);
    assert_eq!(other.send_with(sock, 101, fill), Err(too_large));
    assert_eq!(other.send_frames(sock, &mut oversize), Err(too_large));
    assert_eq!(other.send_with(sock, 100, fill), Err(SendError::WouldBlock));
    let stats = other.stats();
    assert_eq!((stats.write.too_large, stats.send_full), (2, 1));
}

#[test]
fn send_frames_never_finishes_a_frame_send_with_began() {
    let (mut s_store, mut c_store) = ([SocketStorage::EMPTY; 1], [SocketStorage::EMPTY; 1]);
    let mut net = sim_net(SimConfig::new(5), &mut s_store, &mut c_store);
    let c = connected_to_echo(&mut net);
    let mut stream = StreamingFrames::new(HeaderFormat::NETWORK);
    let sock = net.client.sockets.get_mut::<tcp::Socket>(c);
    // Frame X: 4 body bytes, of which `fill` has only 2 yet.
    let half = |offset: usize, space: &mut [u8]| {
        let n = 2usize.saturating_sub(offset).min(space.len());
        space[..n].fill(b'X');
        n
    };
    assert_eq!(stream.send_with(sock, 4, half), Err(SendError::WouldBlock));
    assert!(stream.send_pending(), "frame X is owed");
    // A source whose frame has X's length must not finish X with its bytes.
    let lens = [4];
    let mut source = Numbered {
        lens: &lens,
        next: 0,
    };
    assert_eq!(
        stream.send_frames(sock, &mut source),
        Err(SendError::Frame(WriteError::Busy { in_progress: 4 }))
    );
    assert_eq!(source.next, 0, "the source's frame did not go out");
    let queued = sock.send_queue();
    assert_eq!(
        queued,
        4 + 2,
        "X's header and its first two bytes, nothing more"
    );
}

/// Answers the first frame with `bye` and closes, or resets at once.
struct Bye {
    reset: bool,
}

impl FrameHandler for Bye {
    fn on_frame(&mut self, _frame: &[u8], out: &mut FrameOut<'_>) -> Flow {
        if self.reset {
            return Flow::Abort;
        }
        match out.send(b"bye") {
            Ok(()) => Flow::Close,
            Err(_) => Flow::Wait,
        }
    }
}

/// A client's framed connection to a server of one [`Bye`] slot: sends `hi`,
/// takes what comes after every poll, and runs while its poll says
/// [`Status::Open`]. Returns the frames taken and the status that ended the run.
fn talk_to_bye(reset: bool) -> (Vec<Vec<u8>>, Status, tcp::State) {
    let (mut s_store, mut c_store) = ([SocketStorage::EMPTY; 1], [SocketStorage::EMPTY; 1]);
    let mut net = sim_net(SimConfig::new(5), &mut s_store, &mut c_store);
    let format = HeaderFormat::NETWORK.with_max_len(64).unwrap();
    let s1 = net.server.sockets.add(tcp_socket());
    let bye = Framed::new(Bye { reset }, vec![0u8; 68], vec![0u8; 68], format).unwrap();
    let mut server = TcpServer::new(&mut net.server.sockets, 9000, [s1], [bye]).unwrap();
    let c = net.client.sockets.add(tcp_socket());
    let mut conn = framed_conn(c, format);
    let mut client = connect(&mut net, c, 9000, 2);
    let (mut sent, mut got) = (0, Vec::new());
    let frames = [b"hi".to_vec()];
    let status = net
        .run_services(
            &mut server,
            &mut (),
            Duration::from_secs(60),
            |_, _, net| {
                let now = net.now();
                let sock = net.client.sockets.get_mut::<tcp::Socket>(c);
                if client.poll(sock, now) != ClientState::Connected && sent == 0 {
                    return None;
                }
                let status = framed_turn(
                    &mut conn,
                    &mut net.client.sockets,
                    now,
                    &frames,
                    &mut sent,
                    &mut got,
                );
                (status != Status::Open).then_some(status)
            },
        )
        .unwrap_or_else(|timeout| {
            let state = net.client.sockets.get::<tcp::Socket>(c).state();
            panic!("the client's poll still says Open (socket {state}): {timeout}")
        });
    assert!(conn.is_ended() || status == Status::Close);
    // The client's FIN goes out and the connection ends both ways.
    net.run_services(
        &mut server,
        &mut (),
        Duration::from_secs(60),
        |server, _, net| {
            let now = net.now();
            let status = conn.poll(&mut net.client.sockets, now).unwrap();
            (conn.is_ended() && server.active() == 0).then_some(status)
        },
    )
    .expect("the connection ends both ways");
    let state = net.client.sockets.get::<tcp::Socket>(c).state();
    (got, status, state)
}

#[test]
fn a_client_closes_when_the_answer_and_the_servers_fin_come_together() {
    // The server's answer and its FIN reach the client in one poll; the client
    // takes the answer after that poll. Taking it must lead to the client's close.
    let (got, status, state) = talk_to_bye(false);
    assert_eq!(got, [b"bye".to_vec()]);
    assert_eq!(status, Status::Close);
    assert!(
        matches!(state, tcp::State::TimeWait | tcp::State::Closed),
        "{state}"
    );
}

#[test]
fn a_reset_by_the_server_ends_the_clients_poll_loop_with_abort() {
    let (got, status, state) = talk_to_bye(true);
    assert!(got.is_empty());
    assert_eq!(status, Status::Abort);
    assert_eq!(state, tcp::State::Closed);
}

#[test]
fn a_reconnect_refused_before_its_syn_says_so_not_the_old_connection() {
    let (mut s_store, mut c_store) = ([SocketStorage::EMPTY; 1], [SocketStorage::EMPTY; 1]);
    let mut net = sim_net(SimConfig::new(11), &mut s_store, &mut c_store);
    let s1 = net.server.sockets.add(tcp_socket());
    let mut server = TcpServer::new(&mut net.server.sockets, 7, [s1], [Echo::new()]).unwrap();
    let c = net.client.sockets.add(tcp_socket());
    let mut client = connect(&mut net, c, 7, 4);
    net.run_services(
        &mut server,
        &mut (),
        Duration::from_secs(10),
        |_, _, net| {
            let now = net.now();
            let sock = net.client.sockets.get_mut::<tcp::Socket>(c);
            (client.poll(sock, now) == ClientState::Connected).then_some(())
        },
    )
    .unwrap();
    net.client.sockets.get_mut::<tcp::Socket>(c).abort();
    net.run_for(Duration::from_millis(10));
    // Port 0 is no address to connect to: this attempt fails before its SYN.
    let mut ports = PortAllocator::<4>::new(5);
    let now = net.now();
    let (sock, cx) = net.client.socket_and_context::<tcp::Socket>(c).unwrap();
    assert_eq!(sock.state(), tcp::State::Closed);
    let refused = client.connect(cx, sock, (SERVER_V4, 0), &mut ports, now);
    assert_eq!(refused, Err(ConnectError::Unaddressable));
    let failed = ClientState::Failed(ConnectError::Unaddressable);
    assert_eq!(client.state(), failed);
    assert_eq!(client.poll(sock, now), failed);
}

#[test]
fn a_link_mtu_written_below_the_minimum_is_taken_as_the_minimum() {
    let mut faults = FaultConfig::CLEAN;
    // The public field, past the builder's clamp.
    faults.mtu = 0;
    assert_eq!(faults.max_frame_len(), usize::from(MIN_MTU) + 14);
    let (mut s_store, mut c_store) = ([SocketStorage::EMPTY; 1], [SocketStorage::EMPTY; 1]);
    let mut net = sim_net(
        SimConfig::new(12).with_faults(faults),
        &mut s_store,
        &mut c_store,
    );
    let c = connected_to_echo(&mut net);
    let sock = net.client.sockets.get_mut::<tcp::Socket>(c);
    assert_eq!(sock.send_slice(&[7; 1000]), Ok(1000));
    // Carried in segments that fit the minimum, and acknowledged.
    net.run_until(Duration::from_secs(10), |net| {
        let sock = net.client.sockets.get_mut::<tcp::Socket>(c);
        (sock.send_queue() == 0).then_some(())
    })
    .unwrap();
}
