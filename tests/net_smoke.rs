//! First end-to-end checks of the net layer over the in-process link.

use smolsock::net::{
    ClientState, Framed, FramedStream, PortAllocator, RecvError, SendError, Service,
    StreamingFrames, TcpClient, TcpServer,
};
use smolsock::runner::sim::{FaultConfig, SERVER_V4, SimConfig, SimNet};
use smolsock::service::echo::Echo;
use smolsock::service::framed_echo::FramedEcho;
use smolsock::wire::frame::{HeaderFormat, ReadError, WriteError};
use smoltcp::iface::{SocketHandle, SocketSet, SocketStorage};
use smoltcp::socket::tcp;
use smoltcp::time::Duration;

fn tcp_socket<'a>() -> tcp::Socket<'a> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 4096]),
        tcp::SocketBuffer::new(vec![0; 4096]),
    )
}

/// Starts `server` listening and the client socket `c` connecting to it on `port`
/// (IPv4), from an ephemeral port drawn with `seed`; poll the client until it is
/// connected.
fn connect(
    net: &mut SimNet<'_>,
    server: &mut impl Service,
    c: SocketHandle,
    port: u16,
    seed: u64,
) -> TcpClient {
    let now = net.now();
    server.poll(&mut net.server.sockets, now);
    let mut ports = PortAllocator::<4>::new(seed);
    let mut client = TcpClient::new(Duration::from_secs(5));
    let (sock, cx) = net.client.socket_and_context::<tcp::Socket>(c).unwrap();
    client
        .connect(cx, sock, (SERVER_V4, port), &mut ports, now)
        .unwrap();
    client
}

#[test]
fn framed_echo_returns_every_frame_whole_over_a_rough_link() {
    let mut s_store = [SocketStorage::EMPTY; 2];
    let mut c_store = [SocketStorage::EMPTY; 1];
    let mut net: SimNet = SimNet::new(
        SimConfig::new(3).with_faults(FaultConfig::ROUGH),
        SocketSet::new(&mut s_store[..]),
        SocketSet::new(&mut c_store[..]),
    );
    let format = HeaderFormat::NETWORK.with_max_len(8192).unwrap();
    let s1 = net.server.sockets.add(tcp_socket());
    let s2 = net.server.sockets.add(tcp_socket());
    let handler = || Framed::new(FramedEcho::new(), vec![0u8; 8196], format).unwrap();
    let mut server = TcpServer::new(9000, [s1, s2], [handler(), handler()]);
    let c = net.client.sockets.add(tcp_socket());
    let mut stream = FramedStream::new(vec![0u8; 8196], format).unwrap();

    let mut client = connect(&mut net, &mut server, c, 9000, 1);

    let frames: Vec<Vec<u8>> = (0..60usize)
        .map(|i| vec![i as u8; (i * 137) % 8000])
        .collect();
    let mut sent = 0;
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut empty = ();
    net.run_services(
        &mut server,
        &mut empty,
        Duration::from_secs(120),
        |_, _, net| {
            let now = net.now();
            let sock = net.client.sockets.get_mut::<tcp::Socket>(c);
            if client.poll(sock, now) != ClientState::Connected {
                return None;
            }
            while sent < frames.len() && stream.send_frame(sock, &frames[sent]).is_ok() {
                sent += 1;
            }
            loop {
                match stream.recv_frame(sock) {
                    Ok(Some(f)) => got.push(f.to_vec()),
                    Ok(None) => break,
                    Err(e) => panic!("{e}"),
                }
            }
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
    net.client.sockets.get_mut::<tcp::Socket>(c).close();
    net.run_services(
        &mut server,
        &mut empty,
        Duration::from_secs(60),
        |server, _, _| (server.stats().closed == 1 && server.active() == 0).then_some(()),
    )
    .unwrap();
    let sock = net.client.sockets.get_mut::<tcp::Socket>(c);
    assert_eq!(stream.recv_frame(sock).err(), Some(RecvError::Finished));
}

#[test]
fn raw_echo_echoes_a_large_send_exactly() {
    let mut s_store = [SocketStorage::EMPTY; 1];
    let mut c_store = [SocketStorage::EMPTY; 1];
    let mut net: SimNet = SimNet::new(
        SimConfig::new(5),
        SocketSet::new(&mut s_store[..]),
        SocketSet::new(&mut c_store[..]),
    );
    let s1 = net.server.sockets.add(tcp_socket());
    let mut server = TcpServer::new(7, [s1], [Echo::new()]);
    let c = net.client.sockets.add(tcp_socket());
    let mut client = connect(&mut net, &mut server, c, 7, 2);
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
}

#[test]
fn http_get_gets_the_page_and_garbage_gets_400() {
    use smolsock::service::http::{HttpResponder, StatusSite};
    let status = |w: &mut dyn core::fmt::Write| w.write_str("all good");
    let site = StatusSite::new("smolsock", &status);
    for (request, expect) in [
        (&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], "HTTP/1.1 200 OK"),
        (b"GET /nope HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 405 Method Not Allowed",
        ),
        (b"\x16\x03\x01 garbage\r\n\r\n", "HTTP/1.1 400 Bad Request"),
    ] {
        let mut s_store = [SocketStorage::EMPTY; 1];
        let mut c_store = [SocketStorage::EMPTY; 1];
        let mut net: SimNet = SimNet::new(
            SimConfig::new(9),
            SocketSet::new(&mut s_store[..]),
            SocketSet::new(&mut c_store[..]),
        );
        let s1 = net.server.sockets.add(tcp_socket());
        let mut server = TcpServer::new(80, [s1], [HttpResponder::<_, 512, 1024>::new(&site)]);
        let c = net.client.sockets.add(tcp_socket());
        let mut client = connect(&mut net, &mut server, c, 80, 3);
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
    let mut s_store = [SocketStorage::EMPTY; 1];
    let mut c_store = [SocketStorage::EMPTY; 1];
    let mut net: SimNet = SimNet::new(
        SimConfig::new(11),
        SocketSet::new(&mut s_store[..]),
        SocketSet::new(&mut c_store[..]),
    );
    let format = HeaderFormat::NETWORK.with_max_len(8192).unwrap();
    let s1 = net.server.sockets.add(tcp_socket());
    let handler = Framed::new(FramedEcho::new(), vec![0u8; 8196], format).unwrap();
    let mut server = TcpServer::new(9000, [s1], [handler]);
    let c = net.client.sockets.add(tcp_socket());
    let mut stream = FramedStream::new(vec![0u8; 8196], format).unwrap();
    let mut client = connect(&mut net, &mut server, c, 9000, 4);

    // Two frames; the second is larger than the 4 KiB send buffer, so it goes
    // out over several polls and a close in between must be refused.
    let frames = [vec![1u8; 100], vec![2u8; 7000]];
    let (mut sent, mut closed, mut refused) = (0, false, 0);
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut empty = ();
    let end = net
        .run_services(
            &mut server,
            &mut empty,
            Duration::from_secs(30),
            |_, _, net| {
                let now = net.now();
                let sock = net.client.sockets.get_mut::<tcp::Socket>(c);
                if client.poll(sock, now) != ClientState::Connected && !closed {
                    return None;
                }
                while sent < frames.len() {
                    match stream.send_frame(sock, &frames[sent]) {
                        Ok(()) => sent += 1,
                        Err(SendError::WouldBlock) => break,
                        Err(e) => panic!("{e}"),
                    }
                }
                if !closed {
                    match stream.close(sock) {
                        Ok(()) => closed = true,
                        Err(SendError::Frame(WriteError::Busy { in_progress })) => {
                            assert_eq!(in_progress, 7000, "the body length of the frame owed");
                            refused += 1;
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                loop {
                    match stream.recv_frame(sock) {
                        Ok(Some(frame)) => got.push(frame.to_vec()),
                        Ok(None) => return None,
                        Err(e) => return Some(e),
                    }
                }
            },
        )
        .unwrap();
    assert!(
        refused > 0,
        "the close came while the big frame was half written"
    );
    assert_eq!(sent, frames.len());
    assert_eq!(got, frames, "the server echoed both frames whole");
    assert_eq!(end, RecvError::Finished, "then the server closed cleanly");
    assert_eq!((server.stats().resets, server.stats().aborted), (0, 0));
}

#[test]
fn streaming_frames_go_through_the_rings_in_pieces_over_a_rough_link() {
    let mut s_store = [SocketStorage::EMPTY; 1];
    let mut c_store = [SocketStorage::EMPTY; 1];
    let mut net: SimNet = SimNet::new(
        SimConfig::new(5).with_faults(FaultConfig::ROUGH),
        SocketSet::new(&mut s_store[..]),
        SocketSet::new(&mut c_store[..]),
    );
    let format = HeaderFormat::NETWORK.with_max_len(8192).unwrap();
    let s1 = net.server.sockets.add(tcp_socket());
    let handler = Framed::new(FramedEcho::new(), vec![0u8; 8196], format).unwrap();
    let mut server = TcpServer::new(9000, [s1], [handler]);
    let c = net.client.sockets.add(tcp_socket());
    // No frame storage on the client: bodies are produced and checked in place.
    let mut stream = StreamingFrames::new(format);
    StreamingFrames::configure(net.client.sockets.get_mut::<tcp::Socket>(c));
    let mut client = connect(&mut net, &mut server, c, 9000, 2);

    // Frames up to 8 KiB through 4 KiB buffers, one of them empty.
    let lens: Vec<usize> = (0..30usize).map(|i| (i * 1999) % 8193).collect();
    let byte = |frame: usize, offset: usize| (frame * 31 + offset * 7) as u8;
    let (mut sent, mut closed, mut calls) = (0, false, 0usize);
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut open = false;
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
                        if !open {
                            assert_eq!(piece.frame_len, lens[got.len()]);
                            got.push(Vec::new());
                            open = true;
                        }
                        let frame = got.last_mut().unwrap();
                        assert_eq!(piece.offset, frame.len());
                        let n = piece.bytes.len().min(budget);
                        budget -= n;
                        frame.extend_from_slice(&piece.bytes[..n]);
                        if piece.ends_frame && n == piece.bytes.len() {
                            open = false;
                        }
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
    assert_eq!(got.len(), lens.len());
    for (i, frame) in got.iter().enumerate() {
        assert_eq!(frame.len(), lens[i]);
        assert!(
            frame.iter().enumerate().all(|(o, &b)| b == byte(i, o)),
            "frame {i}"
        );
    }
    assert!(calls > lens.len(), "the receiver stopped early and resumed");
    let stats = stream.stats();
    assert_eq!(stats.read.frames, lens.len() as u64);
    assert_eq!(stats.write.frames, lens.len() as u64);
    assert!(stats.write.split_frames > 0);
}

/// A peer that sends raw `bytes` and closes; the server reads them with
/// `StreamingFrames::recv_pieces` until it reports an error, which is returned.
fn streaming_server_reads(bytes: &'static [u8], format: HeaderFormat) -> (RecvError, u64) {
    let mut s_store = [SocketStorage::EMPTY; 1];
    let mut c_store = [SocketStorage::EMPTY; 1];
    let mut net: SimNet = SimNet::new(
        SimConfig::new(9),
        SocketSet::new(&mut s_store[..]),
        SocketSet::new(&mut c_store[..]),
    );
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
