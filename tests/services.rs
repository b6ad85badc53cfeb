//! Every service end to end over the in-process link: raw echo, framed echo, UDP
//! echo and HTTP, over IPv4 and IPv6, on a clean link and on a rough one (10 %
//! loss, duplication, reordering, MTU 576); then the server pool, bad input from
//! peers, the client's connect and ports, and UDP's edges. Virtual time only.

use std::sync::atomic::{AtomicUsize, Ordering};

mod common_sim;

use common_sim::*;
use smolsock::http::{HttpConfig, HttpResponder, Site, StatusSite};
use smolsock::net::{
    ClientState, ConnectError, EPHEMERAL_FIRST, EPHEMERAL_LAST, EVICT_ALIVE_AFTER, End,
    HandleError, PortAllocator, RecvError, ServerConfig, ServerError, ServerStats, Service,
    TcpClient, TcpServer, TcpSession, UdpEcho, UdpService, UdpStats,
};
use smolsock::runner::sim::{Direction, FaultConfig, SERVER_V4, SERVER_V6, SimConfig, SimStats};
use smolsock::session::{
    Echo, Flow, FrameHandler, FrameOut, Framed, FramedEcho, FramedStats, Session, Status,
    StreamingEcho,
};
use smolsock::trace::{Conn, Probe, Record, Tally, TraceSink};
use smolsock::wire::frame::{HeaderFormat, ReadError};
use smolsock::wire::http::{ResponseHead, StatusCode};
use smoltcp::iface::{SocketHandle, SocketSet, SocketStorage};
use smoltcp::socket::{AnySocket, tcp, udp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{ArpOperation, IpAddress, Ipv4Address, TcpControl};

/// How long any exchange may take in virtual time before the test fails.
const LIMIT: Duration = Duration::from_secs(600);

/// One cell of the matrix every service is tested over.
struct Case {
    name: &'static str,
    server: IpAddress,
    faults: FaultConfig,
}

const CASES: [Case; 4] = [
    Case {
        name: "IPv4, clean link",
        server: IpAddress::Ipv4(SERVER_V4),
        faults: FaultConfig::CLEAN,
    },
    Case {
        name: "IPv6, clean link",
        server: IpAddress::Ipv6(SERVER_V6),
        faults: FaultConfig::CLEAN,
    },
    Case {
        name: "IPv4, rough link",
        server: IpAddress::Ipv4(SERVER_V4),
        faults: FaultConfig::ROUGH,
    },
    Case {
        name: "IPv6, rough link",
        server: IpAddress::Ipv6(SERVER_V6),
        faults: FaultConfig::ROUGH,
    },
];

impl Case {
    /// The server settings for the case: on the rough link, deadlines that a live
    /// peer's retransmissions cannot miss.
    fn server_config(&self) -> ServerConfig {
        if self.faults == FaultConfig::CLEAN {
            SERVER
        } else {
            PATIENT
        }
    }
}

/// Runs `check` on every case with a seed of its own (`base` + the case's index).
/// `SMOLSOCK_SEEDS=n` runs every case with `n` seeds instead of one, for a soak.
fn for_each_case(base: u64, check: impl Fn(&Case, u64)) {
    let seeds: u64 = std::env::var("SMOLSOCK_SEEDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    for round in 0..seeds {
        for (i, case) in CASES.iter().enumerate() {
            let seed = base + i as u64 + round * 1000;
            // Shown with the failure: the last line is the case that failed.
            println!("{}, seed {seed}", case.name);
            check(case, seed);
        }
    }
}

/// On a rough case, the link must really have lost, duplicated and reordered
/// frames, or the case proved nothing. (Checked on the default seeds only: a
/// short exchange on a soak seed may be spared one kind of fault.)
fn assert_link_was_rough(case: &Case, seed: u64, stats: SimStats) {
    if case.faults != FaultConfig::ROUGH || seed >= 1000 {
        return;
    }
    let (a, b) = (stats.client_to_server, stats.server_to_client);
    assert!(
        a.lost + b.lost > 0 && a.duplicated + b.duplicated > 0 && a.reordered + b.reordered > 0,
        "{}: the link was not rough: {stats:?}",
        case.name
    );
}

#[test]
fn raw_echo_returns_every_byte_over_ipv4_ipv6_clean_and_rough() {
    for_each_case(100, |case, seed| {
        let mut net = sim(seed, case.faults, 2, 2);
        let mut server = serve(
            &mut net,
            7,
            (4096, 4096),
            [Echo::new(), Echo::new()],
            case.server_config(),
        );
        let mut ports = PortAllocator::new(seed);
        let mut clients = Clients(
            (0..2)
                .map(|i| {
                    Client::new(&mut net, (4096, 4096), RawEcho::new(bytes(40_000 + i)))
                        .closing_when_done()
                })
                .collect(),
        );
        for client in &mut clients.0 {
            client.connect(&mut net, (case.server, 7), &mut ports);
        }
        net.run_services(&mut server, &mut clients, LIMIT, |server, clients, _| {
            let done = clients.0.iter().all(Client::done);
            (done && server.stats().closed == 2).then_some(())
        })
        .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        for client in &clients.0 {
            assert!(client.driver.back == client.driver.data, "{}", case.name);
        }
        let echoed: u64 = server.sessions().iter().map(|h| h.bytes).sum();
        assert_eq!(echoed, 80_001, "{}", case.name);
        assert_link_was_rough(case, seed, net.stats());
    });
}

#[test]
fn framed_echo_returns_every_frame_whole_over_ipv4_ipv6_clean_and_rough() {
    for_each_case(200, |case, seed| {
        let mut net = sim(seed, case.faults, 2, 2);
        let handler =
            || Framed::new(FramedEcho::new(), [0u8; 1028], [0u8; 1028], format()).unwrap();
        // Socket buffers smaller than the largest frame: a frame goes out over
        // several polls, sendall-style, from the session's queue.
        let mut server = serve(
            &mut net,
            9000,
            (1024, 700),
            [handler(), handler()],
            case.server_config(),
        );
        let mut ports = PortAllocator::new(seed);
        let mut clients = Clients(
            (0..2)
                .map(|i| {
                    let frames = frames(80 + i, MAX_FRAME as usize);
                    Client::new(&mut net, (4096, 4096), FramedPeer::new(frames)).closing_when_done()
                })
                .collect(),
        );
        for client in &mut clients.0 {
            client.connect(&mut net, (case.server, 9000), &mut ports);
        }
        net.run_services(&mut server, &mut clients, LIMIT, |server, clients, _| {
            let finished = clients.0.iter().all(|c| c.driver.end.is_some());
            (finished && server.stats().closed == 2).then_some(())
        })
        .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        for client in &clients.0 {
            let peer = &client.driver;
            assert!(peer.got == peer.frames, "{}", case.name);
            assert_eq!(peer.end, Some(RecvError::Finished), "{}", case.name);
        }
        let echoed: u64 = server.sessions().iter().map(|h| h.handler().frames).sum();
        assert_eq!(echoed, 161, "{}", case.name);
        // Frames larger than the server's send buffer reached the clients in
        // pieces: the server handed each out over several polls.
        let read = clients.0.iter().map(|c| c.driver.framed().stats().read);
        assert!(
            read.map(|r| r.split_frames).sum::<u64>() > 0,
            "{}",
            case.name
        );
        let stats = server.sessions().iter().map(|h| h.stats().read);
        assert_eq!(stats.map(|r| r.oversize + r.truncated).sum::<u64>(), 0);
        assert_link_was_rough(case, seed, net.stats());
    });
}

#[test]
fn udp_echo_returns_every_datagram_whole_over_ipv4_ipv6_clean_and_rough() {
    for_each_case(300, |case, seed| {
        let mut net = sim(seed, case.faults, 1, 1);
        let socket = net.server.sockets.add(udp_socket(16, 16 * 1024));
        let mut server = UdpService::<_, 1500>::new(socket, 7, UdpEcho);
        // The largest datagram that crosses the link unfragmented over IPv6
        // (less the two bytes of index the client puts in front).
        let max = usize::from(case.faults.mtu) - 40 - 8 - 2;
        let mut client = UdpWindow::new(&mut net, (case.server, 7), frames(100, max));
        net.run_services(&mut server, &mut client, LIMIT, |_, client, _| {
            client.done().then_some(())
        })
        .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert!(
            client.strays.is_empty(),
            "{}: {:?}",
            case.name,
            client.strays
        );
        let stats = server.stats();
        assert_eq!(stats.oversize, 0, "{}", case.name);
        assert!(stats.datagrams_in >= 100 && stats.datagrams_out == stats.datagrams_in);
        assert_link_was_rough(case, seed, net.stats());
    });
}

/// The exact bytes the HTTP responder sends: head (with `Connection: close`) and
/// the body unless `with_body` is false (a HEAD request).
fn http_response(status: StatusCode, kind: &str, body: &[u8], with_body: bool) -> Vec<u8> {
    let mut head = ResponseHead::new(status, Some(kind), body.len());
    head.close = true;
    let mut out = [0u8; 256];
    let len = head.emit(&mut out).unwrap();
    let mut response = out[..len].to_vec();
    if with_body {
        response.extend_from_slice(body);
    }
    response
}

/// A request cut into `parts` pieces, sent one per poll.
fn pieces(request: &[u8], parts: usize) -> Vec<Vec<u8>> {
    let size = request.len().div_ceil(parts);
    request.chunks(size).map(<[u8]>::to_vec).collect()
}

#[test]
fn http_answers_exact_pages_over_ipv4_ipv6_clean_and_rough() {
    // A page of about 1.5 KiB: more than the server's 512-byte send buffer.
    let status = |w: &mut dyn core::fmt::Write| {
        (0..40).try_for_each(|i| writeln!(w, "counter {i:2}: {}", i * 4242))
    };
    let site = StatusSite::new("smolsock", &status);
    let (mut page, mut stats) = (String::new(), String::new());
    let html = site.render("/", &mut page).unwrap().unwrap();
    let text = site.render("/stats", &mut stats).unwrap().unwrap();
    let not_found = format!("{}\n", StatusCode::NOT_FOUND);
    let exchanges: [(&[u8], Vec<u8>); 5] = [
        (
            b"GET / HTTP/1.1\r\nHost: 10.0.0.1\r\nUser-Agent: test\r\nAccept: */*\r\n\r\n",
            http_response(StatusCode::OK, html, page.as_bytes(), true),
        ),
        (
            b"GET /stats HTTP/1.0\r\n\r\n",
            http_response(StatusCode::OK, text, stats.as_bytes(), true),
        ),
        (
            b"HEAD /index.html HTTP/1.1\r\nHost: x\r\n\r\n",
            http_response(StatusCode::OK, html, page.as_bytes(), false),
        ),
        (
            b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n",
            http_response(
                StatusCode::NOT_FOUND,
                "text/plain",
                not_found.as_bytes(),
                true,
            ),
        ),
        (
            b"GET / HTTP/1.1\r\nHost: again\r\n\r\n",
            http_response(StatusCode::OK, html, page.as_bytes(), true),
        ),
    ];
    for_each_case(400, |case, seed| {
        let mut net = sim(seed, case.faults, 2, exchanges.len());
        // On the rough link a lost piece of a head, or of the answer, goes again
        // only after smoltcp's backed-off retransmission timeout: a live client,
        // not the slow one the 5 s head and 10 s send deadlines are for (the head
        // deadline is pinned with the bad requests below).
        let http = match case.faults {
            FaultConfig::CLEAN => HttpConfig::DEFAULT,
            _ => HttpConfig {
                head_timeout: smolsock::time::Duration::from_secs(300),
                send_timeout: smolsock::time::Duration::from_secs(300),
            },
        };
        let responder = || HttpResponder::<_, 1024, 2048>::with_config(&site, http);
        let mut server = serve(
            &mut net,
            80,
            (2048, 512),
            [responder(), responder()],
            case.server_config(),
        );
        let mut ports = PortAllocator::new(seed);
        for (i, (request, expected)) in exchanges.iter().enumerate() {
            // Each request in as many pieces as its place in the list, one per poll.
            let mut client =
                Client::new(&mut net, (2048, 2048), HttpGet::new(pieces(request, i + 1)));
            client.connect(&mut net, (case.server, 80), &mut ports);
            // Done when both ends have closed cleanly.
            net.run_services(&mut server, &mut client, LIMIT, |server, client, _| {
                (client.done() && server.stats().closed == i as u64 + 1).then_some(())
            })
            .unwrap_or_else(|e| panic!("{}, request {i}: {e}", case.name));
            let response = &client.driver.response;
            assert!(
                response == expected,
                "{}, request {i}:\n{}",
                case.name,
                String::from_utf8_lossy(response)
            );
        }
        let ok: u64 = server.sessions().iter().map(|h| h.stats().ok).sum();
        let not_found: u64 = server
            .sessions()
            .iter()
            .map(|h| h.stats().client_errors)
            .sum();
        assert_eq!((ok, not_found), (4, 1), "{}", case.name);
        assert_link_was_rough(case, seed, net.stats());
    });
}

// ---------------------------------------------------------------------------
// The server pool: listen(N) from construction, SYNs past N held by the backlog
// (refused by the bare stack), slots reused, idle peers and half-open handshakes
// dropped, foreign handles survived.

/// The pool size of the pool tests.
const POOL: usize = 4;

fn echo_pool(net: &mut Net, config: ServerConfig) -> TcpServer<Recording<Echo>, POOL> {
    let sessions = core::array::from_fn(|_| Recording::new(Echo::new()));
    serve(net, 7, (2048, 2048), sessions, config)
}

fn echo_client(net: &mut Net, len: usize) -> Client<RawEcho> {
    Client::new(net, (2048, 2048), RawEcho::new(bytes(len)))
}

#[test]
fn a_server_listens_from_construction_and_serves_a_client_before_its_first_poll() {
    let mut net = sim(510, FaultConfig::CLEAN, 1, 1);
    let mut server = serve(&mut net, 7, (2048, 2048), [Echo::new()], SERVER);
    let handle = net.server.sockets.iter().next().map(|(h, _)| h).unwrap();
    assert!(net.server.sockets.get::<tcp::Socket>(handle).is_listening());
    let mut ports = PortAllocator::new(510);
    let mut client = echo_client(&mut net, 3000).closing_when_done();
    client.connect(&mut net, (SERVER_V4, 7), &mut ports);
    // The network runs (ARP, SYN, SYN-ACK, ACK, the data) with no server poll:
    // the handshake completes on the socket the constructor put in LISTEN.
    net.run_services(&mut (), &mut client, LIMIT, |_, client, net| {
        let server_socket = net.server.sockets.get::<tcp::Socket>(handle);
        let established = server_socket.state() == tcp::State::Established;
        (established && client.state() == ClientState::Connected).then_some(())
    })
    .unwrap();
    assert_eq!(server.stats().accepted, 0, "the server was never polled");
    // Then the server is polled for the first time and serves it in full.
    net.run_services(&mut server, &mut client, LIMIT, |server, client, _| {
        (client.done() && server.stats().closed == 1).then_some(())
    })
    .unwrap();
    assert!(client.driver.back == client.driver.data);
    assert_eq!(server.stats().accepted, 1);
    assert_eq!(server.stats().resets, 0);
    assert_eq!(
        net.server.backlog.stats().syns_held,
        0,
        "no SYN had to wait"
    );
}

#[test]
fn close_all_counts_the_connections_it_drops_before_they_were_accepted() {
    let mut net = sim(513, FaultConfig::CLEAN, 1, 1);
    let mut server = serve(&mut net, 7, (2048, 2048), [Echo::new()], SERVER);
    let handle = net.server.sockets.iter().next().map(|(h, _)| h).unwrap();
    let mut ports = PortAllocator::new(513);
    let mut client = echo_client(&mut net, 100);
    client.connect(&mut net, (SERVER_V4, 7), &mut ports);
    net.run_services(&mut (), &mut client, LIMIT, |_, client, net| {
        let established =
            net.server.sockets.get::<tcp::Socket>(handle).state() == tcp::State::Established;
        (established && client.state() == ClientState::Connected).then_some(())
    })
    .unwrap();
    let now = net.now();
    server.close_all(&mut net.server.sockets, now);
    let stats = *server.stats();
    assert_eq!((stats.unaccepted, stats.accepted), (1, 0), "{stats}");
    // The client gets the RST; the server keeps no connection and listens no more.
    net.run_services(&mut server, &mut (), LIMIT, |_, _, net| {
        (!client.socket(net).is_open()).then_some(())
    })
    .unwrap();
    assert_eq!(server.active(), 0);
    assert_eq!(server.stats().unaccepted, 1);
}

#[test]
fn a_full_pool_serves_n_clients_at_once_and_the_rest_as_slots_free_refusing_none() {
    let mut net = sim(500, FaultConfig::CLEAN, POOL, POOL + 5);
    let mut server = echo_pool(&mut net, SERVER);
    let mut ports = PortAllocator::new(500);
    let mut clients = Clients(
        (0..POOL + 5)
            .map(|i| echo_client(&mut net, 3000 + i).closing_when_done())
            .collect(),
    );
    for client in &mut clients.0 {
        client.connect(&mut net, (SERVER_V4, 7), &mut ports);
    }
    // The first N get in at once; the SYNs of the rest are held by the backlog,
    // not refused.
    net.run_services(&mut server, &mut clients, LIMIT, |_, clients, _| {
        let connected = clients
            .0
            .iter()
            .filter(|c| c.state() == ClientState::Connected);
        (connected.count() == POOL).then_some(())
    })
    .unwrap();
    let states: Vec<ClientState> = clients.0.iter().map(Client::state).collect();
    let waiting = states
        .iter()
        .filter(|&&s| s == ClientState::Connecting)
        .count();
    assert_eq!(waiting, 5, "{states:?}");
    assert!(net.now() < Instant::from_secs(1), "{}", net.now());
    assert_eq!(net.server.backlog.stats().syns_held, 5);

    // As each served client leaves, a waiting one takes its slot; never more
    // than N at once, and nobody is refused.
    let mut most = 0;
    net.run_services(&mut server, &mut clients, LIMIT, |server, clients, _| {
        most = most.max(server.active());
        let failed = clients
            .0
            .iter()
            .find(|c| matches!(c.state(), ClientState::Failed(_)));
        assert!(failed.is_none(), "{:?}", failed.map(Client::state));
        let done = clients.0.iter().all(Client::done);
        (done && server.stats().closed == POOL as u64 + 5).then_some(())
    })
    .unwrap();
    for client in &clients.0 {
        assert!(client.driver.back == client.driver.data);
    }
    assert!(most <= POOL, "{most} connections at once");
    assert_eq!(server.stats().accepted, POOL as u64 + 5);
    assert_eq!(server.stats().resets, 0);
}

#[test]
fn without_the_backlog_the_stack_refuses_syns_to_a_full_pool_with_a_reset() {
    // smoltcp's own behaviour, which the backlog exists to change: a SYN that
    // finds no socket listening is answered with a RST.
    let config = SimConfig::new(505)
        .with_faults(FaultConfig::CLEAN)
        .with_backlog(false);
    let mut net = sim_with(config, POOL, POOL + 5);
    let mut server = echo_pool(&mut net, SERVER);
    let mut ports = PortAllocator::new(505);
    let mut clients = Clients(
        (0..POOL + 5)
            .map(|i| echo_client(&mut net, 3000 + i))
            .collect(),
    );
    for client in &mut clients.0 {
        client.connect(&mut net, (SERVER_V4, 7), &mut ports);
    }
    net.run_services(&mut server, &mut clients, LIMIT, |_, clients, _| {
        let settled = clients
            .0
            .iter()
            .all(|c| c.state() != ClientState::Connecting);
        settled.then_some(())
    })
    .unwrap();
    let states: Vec<ClientState> = clients.0.iter().map(Client::state).collect();
    let served = states
        .iter()
        .filter(|&&s| s == ClientState::Connected)
        .count();
    let refused = states
        .iter()
        .filter(|&&s| s == ClientState::Failed(ConnectError::Refused))
        .count();
    assert_eq!((served, refused), (POOL, 5), "{states:?}");
    // The refusal was the stack's RST, at once: no client waited for a timeout.
    assert!(net.now() < Instant::from_secs(2), "{}", net.now());

    // The ones let in are served in full.
    net.run_services(&mut server, &mut clients, LIMIT, |_, clients, _| {
        let connected = clients
            .0
            .iter()
            .filter(|c| c.state() == ClientState::Connected);
        connected.clone().all(Client::done).then_some(())
    })
    .unwrap();
    for client in clients
        .0
        .iter()
        .filter(|c| c.state() == ClientState::Connected)
    {
        assert!(client.driver.back == client.driver.data);
    }
    assert_eq!(server.stats().accepted, POOL as u64);
    assert_eq!(server.active(), POOL);
}

#[test]
fn freed_slots_listen_again_and_serve_a_second_wave() {
    let mut net = sim(501, FaultConfig::CLEAN, POOL, POOL);
    let mut server = echo_pool(&mut net, SERVER);
    let mut ports = PortAllocator::new(501);
    let mut clients = Clients((0..POOL).map(|i| echo_client(&mut net, 5000 + i)).collect());
    for wave in 1..=2u64 {
        for (i, client) in clients.0.iter_mut().enumerate() {
            client.driver = RawEcho::new(bytes(5000 * wave as usize + i));
            client.connect(&mut net, (SERVER_V6, 7), &mut ports);
        }
        net.run_services(&mut server, &mut clients, LIMIT, |_, clients, _| {
            clients.0.iter().all(Client::done).then_some(())
        })
        .unwrap_or_else(|e| panic!("wave {wave}: {e}"));
        for client in &clients.0 {
            assert!(client.driver.back == client.driver.data, "wave {wave}");
        }
        // The clients leave; every slot closes and listens again (the first
        // listen, in the constructor, is not a relisten).
        for client in &clients.0 {
            client.socket(&mut net).close();
        }
        net.run_services(&mut server, &mut clients, LIMIT, |server, _, _| {
            let stats = server.stats();
            let relistened = stats.relistens == wave * POOL as u64;
            (stats.closed == wave * POOL as u64 && relistened).then_some(())
        })
        .unwrap_or_else(|e| panic!("wave {wave}: {e}"));
    }
    assert_eq!(server.stats().accepted, 2 * POOL as u64);
    assert_eq!(ends(&server), [End::Closed; 2 * POOL]);
    for (slot, session) in server.sessions().iter().enumerate() {
        assert_eq!(session.starts.len(), 2, "slot {slot} served each wave once");
        assert_eq!(session.ends.len(), 2, "slot {slot}");
    }
}

#[test]
fn an_idle_client_is_reset_after_the_idle_timeout_and_its_slot_serves_the_next() {
    let idle = Duration::from_secs(2);
    let config = ServerConfig {
        idle_timeout: Some(idle.into()),
        ..SERVER
    };
    let mut net = sim(502, FaultConfig::CLEAN, 1, 2);
    let sessions = [Recording::new(Echo::new())];
    let mut server = serve(&mut net, 7, (2048, 2048), sessions, config);
    let mut ports = PortAllocator::new(502);
    let silent = echo_client(&mut net, 0);
    let next = echo_client(&mut net, 10_000);
    let mut both = Pair(silent, next);
    both.0.connect(&mut net, (SERVER_V4, 7), &mut ports);
    net.run_services(&mut server, &mut both, LIMIT, |server, _, _| {
        (server.active() == 1).then_some(())
    })
    .unwrap();
    let accepted_at = Instant::from(server.sessions()[0].starts[0]);

    // While it holds the only slot, the next client's SYN waits in the backlog
    // (the bare stack would refuse it: see the test without the backlog).
    both.1.connect(&mut net, (SERVER_V4, 7), &mut ports);

    // Silent for the idle timeout: reset, and it sees the RST.
    net.run_services(&mut server, &mut both, LIMIT, |server, _, _| {
        (server.stats().idle_timeouts == 1).then_some(())
    })
    .unwrap();
    let dropped_after = net.now() - accepted_at;
    assert!(
        dropped_after >= idle && dropped_after <= idle + Duration::from_millis(10),
        "dropped after {dropped_after}"
    );
    assert_eq!(ends(&server), [End::IdleTimeout]);
    assert_eq!(
        both.1.state(),
        ClientState::Connecting,
        "waiting, not refused"
    );
    assert!(net.server.backlog.stats().syns_held > 0);

    // The slot listens again and serves the waiting client in full.
    net.run_services(&mut server, &mut both, LIMIT, |server, Pair(_, next), _| {
        (server.stats().relistens == 1 && next.done()).then_some(())
    })
    .unwrap();
    let Pair(silent, next) = &both;
    assert_eq!(silent.socket(&mut net).state(), tcp::State::Closed);
    assert!(next.driver.back == next.driver.data);
    assert_eq!(server.stats().accepted, 2);
}

#[test]
fn half_open_handshakes_free_their_slots_after_the_handshake_timeout() {
    // Without the backlog, so that only the pool's handshake deadline frees the
    // slots (with it, a real client's SYN evicts a forged handshake at once: see
    // the next test).
    let handshake = Duration::from(SERVER.handshake_timeout);
    let config = SimConfig::new(503)
        .with_faults(FaultConfig::CLEAN)
        .with_backlog(false);
    let mut net = sim_with(config, POOL, 1);
    let mut server = echo_pool(&mut net, SERVER);
    // A SYN flood from forged addresses: every slot answers with a SYN-ACK that
    // nobody will ever acknowledge.
    for i in 0..POOL as u8 {
        let syn = forged_syn(Ipv4Address::new(10, 0, 0, 100 + i), 40_000, 7);
        net.inject_frame(Direction::ClientToServer, &syn);
    }
    let mut ports = PortAllocator::new(503);
    let mut client = echo_client(&mut net, 1000);
    client.connect(&mut net, (SERVER_V4, 7), &mut ports);
    net.run_services(&mut server, &mut client, LIMIT, |_, client, _| {
        (client.state() != ClientState::Connecting).then_some(())
    })
    .unwrap();
    assert_eq!(
        client.state(),
        ClientState::Failed(ConnectError::Refused),
        "pool full"
    );

    // Refused while the handshakes hold every slot; after the handshake timeout
    // the slots listen again. The client tries again every second, as a real one
    // would; each round takes at least a second, and the bound below ends the loop.
    let flooded_at = net.now();
    while client.state() != ClientState::Connected {
        run_for(&mut net, &mut server, &mut (), Duration::from_secs(1));
        client.connect(&mut net, (SERVER_V4, 7), &mut ports);
        net.run_services(&mut server, &mut client, LIMIT, |_, client, _| {
            (client.state() != ClientState::Connecting).then_some(())
        })
        .unwrap();
        assert!(
            net.now() - flooded_at < handshake * 3,
            "the forged handshakes still hold the pool"
        );
    }
    assert!(
        net.now() - flooded_at >= handshake,
        "served before the deadline"
    );
    assert_eq!(server.stats().handshake_timeouts, POOL as u64);
    assert_eq!(server.stats().idle_timeouts, 0);
    // No connection ended yet and no backlog: each relisten is a handshake
    // timeout's (ServerStats::relistens).
    assert_eq!(server.stats().relistens, POOL as u64, "{}", server.stats());
    net.run_services(&mut server, &mut client, LIMIT, |_, client, _| {
        client.done().then_some(())
    })
    .unwrap();
    assert!(client.driver.back == client.driver.data);
    assert_eq!(
        server.stats().accepted,
        1,
        "half-open handshakes are never accepted"
    );
    assert!(ends(&server).is_empty(), "nor reported to a session");
    let started: usize = server.sessions().iter().map(|s| s.starts.len()).sum();
    assert_eq!(started, 1, "only the real client's session started");
}

/// Whether a TCP socket of the server host is in `state`.
fn server_socket_in(net: &Net, state: tcp::State) -> bool {
    net.server
        .sockets
        .iter()
        .filter_map(|(_, socket)| tcp::Socket::downcast(socket))
        .any(|socket| socket.state() == state)
}

#[test]
fn a_handshake_whose_syn_acks_are_lost_is_not_reset_while_smoltcp_resends_them() {
    // smoltcp resends an unanswered SYN-ACK after 1, 3, 7 and 15 s. On a lossy
    // link the first few can all be lost with a live client at the other end:
    // the default handshake deadline lets the one of 15 s be answered, where 3 s
    // reset the handshake as the third went out, and the client was refused.
    let link = FaultConfig::CLEAN.with_delay(Duration::from_millis(1));
    let mut net = sim(521, link, POOL, 2);
    let mut server = echo_pool(&mut net, SERVER);
    let mut ports = PortAllocator::new(521);
    // A first connection resolves the addresses both ways.
    let mut first = echo_client(&mut net, 100).closing_when_done();
    first.connect(&mut net, (SERVER_V4, 7), &mut ports);
    net.run_services(&mut server, &mut first, LIMIT, |server, first, _| {
        (first.done() && server.stats().closed == 1).then_some(())
    })
    .unwrap();

    // Every frame from the server is lost for 8 s from the SYN: the SYN-ACKs of
    // 0, 1, 3 and 7 s (and those answering the client's own SYN
    // retransmissions).
    net.set_faults(Direction::ServerToClient, link.with_loss(1000));
    let mut client = echo_client(&mut net, 100).closing_when_done();
    client.connect(&mut net, (SERVER_V4, 7), &mut ports);
    net.run_services(&mut server, &mut client, LIMIT, |_, _, net| {
        server_socket_in(net, tcp::State::SynReceived).then_some(())
    })
    .unwrap();
    run_for(&mut net, &mut server, &mut client, Duration::from_secs(8));
    net.set_faults(Direction::ServerToClient, link);
    net.run_services(&mut server, &mut client, LIMIT, |server, client, _| {
        let failed = matches!(client.state(), ClientState::Failed(_));
        (failed || client.done() && server.stats().closed == 2).then_some(())
    })
    .unwrap();
    let stats = server.stats();
    assert_eq!(client.state(), ClientState::Connected, "{stats}");
    assert!(client.driver.back == client.driver.data);
    assert_eq!(stats.handshake_timeouts, 0, "{stats}");
    assert_eq!((stats.accepted, stats.closed), (2, 2), "{stats}");
}

/// The one-way delay of the link of [`last_ack_losing_acks`].
const LINK_DELAY: Duration = Duration::from_millis(1);

/// An echo pool and a client that sends 100 bytes, takes them back and closes,
/// over a link of [`LINK_DELAY`]: once the server's socket is in LAST-ACK (the
/// echo has closed after the client's FIN), the link loses all the client
/// sends for `lost`. Gives the network, the pool and the client after that.
fn last_ack_losing_acks(
    seed: u64,
    lost: Duration,
) -> (Net, TcpServer<Recording<Echo>, POOL>, Client<RawEcho>) {
    let link = FaultConfig::CLEAN.with_delay(LINK_DELAY);
    let mut net = sim(seed, link, POOL, 1);
    let mut server = echo_pool(&mut net, SERVER);
    let mut ports = PortAllocator::new(seed);
    let mut client = echo_client(&mut net, 100).closing_when_done();
    client.connect(&mut net, (SERVER_V4, 7), &mut ports);
    net.run_services(&mut server, &mut client, LIMIT, |_, _, net| {
        server_socket_in(net, tcp::State::LastAck).then_some(())
    })
    .unwrap();
    assert!(client.driver.back == client.driver.data);
    net.set_faults(Direction::ClientToServer, link.with_loss(1000));
    run_for(&mut net, &mut server, &mut client, lost);
    (net, server, client)
}

#[test]
fn a_close_whose_acks_are_lost_ends_clean_while_smoltcp_resends_the_fin() {
    // The client closes, the echo closes too: the server's FIN waits for the
    // client's ACK, which the link loses for 8 s, as it does the ACKs that
    // answer the FIN resent after 1, 3 and 7 s. The one of 15 s is answered
    // within the default close deadline: a clean close, not a reset (a 5 s
    // deadline reset it).
    let (mut net, mut server, mut client) = last_ack_losing_acks(523, Duration::from_secs(8));
    net.set_faults(
        Direction::ClientToServer,
        FaultConfig::CLEAN.with_delay(LINK_DELAY),
    );
    net.run_services(&mut server, &mut client, LIMIT, |server, _, _| {
        (server.active() == 0).then_some(())
    })
    .unwrap();
    let stats = server.stats();
    assert_eq!(stats.close_timeouts, 0, "{stats}");
    assert_eq!((stats.accepted, stats.closed), (1, 1), "{stats}");
}

#[test]
fn a_close_whose_last_ack_never_comes_is_counted_closed_at_the_deadline() {
    // As above, but the link loses all the client sends for 30 s: its ACK of
    // the server's FIN, and its answers to the FINs resent after 1, 3, 7 and
    // 15 s. The peer has closed and has every byte: the close deadline frees
    // the slot, and the close counts as clean, not as a close timeout.
    let (_, server, _) = last_ack_losing_acks(524, Duration::from_secs(30));
    assert_eq!(server.active(), 0, "the close deadline freed the slot");
    let stats = server.stats();
    assert_eq!(stats.close_timeouts, 0, "{stats}");
    assert_eq!(
        (stats.accepted, stats.closed, stats.resets),
        (1, 1, 0),
        "{stats}"
    );
}

#[test]
fn a_close_whose_peer_never_takes_our_last_bytes_is_a_close_timeout() {
    // The client asks, closes at once and reads nothing through its 64-byte
    // window: the server's reply (100 bytes) and FIN wait with 36 bytes never
    // acknowledged. The peer's FIN is in, but more than the ACK of ours is
    // missing: the close deadline resets it, a close timeout.
    let mut net = sim(525, FaultConfig::CLEAN, 1, 1);
    let (mut server, client) = reply_to(&mut net, Reply::new(100, true), 2048, SERVER, 64);
    let mut asked = false;
    net.run_services(&mut server, &mut (), LIMIT, |server, _, net| {
        let socket = net.client.sockets.get_mut::<tcp::Socket>(client);
        if socket.may_send() && !asked {
            socket.send_slice(b"?").unwrap();
            socket.close();
            asked = true;
        }
        (asked && server.active() == 0).then_some(())
    })
    .unwrap();
    let stats = *server.stats();
    assert_eq!(ends(&server), [End::CloseTimeout], "{stats}");
}

#[test]
fn with_the_backlog_a_real_clients_syn_evicts_a_forged_handshake_before_its_deadline() {
    let mut net = sim(509, FaultConfig::CLEAN, POOL, 1);
    let mut server = echo_pool(&mut net, SERVER);
    for i in 0..POOL as u8 {
        let syn = forged_syn(Ipv4Address::new(10, 0, 0, 100 + i), 40_000, 7);
        net.inject_frame(Direction::ClientToServer, &syn);
    }
    let mut ports = PortAllocator::new(509);
    let mut client = echo_client(&mut net, 1000).closing_when_done();
    client.connect(&mut net, (SERVER_V4, 7), &mut ports);
    net.run_services(&mut server, &mut client, LIMIT, |_, client, _| {
        (client.state() != ClientState::Connecting).then_some(())
    })
    .unwrap();
    assert_eq!(client.state(), ClientState::Connected);
    // Before any handshake deadline: the SYN evicted the oldest forged handshake
    // once it was 100 ms old. (Not at once: smoltcp keeps the evicted socket
    // silent for up to a second, waiting on the forged peer's ARP, so the SYN-ACK
    // to the real client leaves a second late, or with the client's own SYN
    // retransmission.)
    assert!(
        net.now() < Instant::ZERO + Duration::from(SERVER.handshake_timeout),
        "served only after a deadline: {}",
        net.now()
    );
    assert_eq!(server.stats().handshake_timeouts, 0);
    let backlog = net.server.backlog.stats();
    assert!(
        backlog.syns_held >= 1 && backlog.evictions >= 1,
        "{backlog}"
    );
    net.run_services(&mut server, &mut client, LIMIT, |server, client, _| {
        (client.done() && server.stats().closed == 1).then_some(())
    })
    .unwrap();
    assert!(client.driver.back == client.driver.data);
    assert_eq!(server.stats().accepted, 1);
}

/// An ARP request from `src` (with the forged SYNs' MAC), broadcast, asking for
/// the server: one frame, and the backlog counts `src` as a host that is there.
fn arp_request(src: Ipv4Address) -> Vec<u8> {
    forged_arp(ArpOperation::Request, src)
}

/// Fills every slot of the pool with a handshake from an address that answered
/// ARP (one request and one SYN from each, once: none ever completes), then
/// connects a real client. Returns when its connect ended.
fn connect_past_half_open_handshakes_of_live_addresses(
    config: ServerConfig,
) -> (Net, TcpServer<Recording<Echo>, POOL>, Client<RawEcho>) {
    let mut net = sim(509, FaultConfig::CLEAN, POOL, 1);
    let mut server = echo_pool(&mut net, config);
    for i in 0..POOL as u8 {
        let src = Ipv4Address::new(10, 0, 0, 100 + i);
        net.inject_frame(Direction::ClientToServer, &arp_request(src));
        net.inject_frame(Direction::ClientToServer, &forged_syn(src, 40_000, 7));
    }
    let mut ports = PortAllocator::new(509);
    let mut client = echo_client(&mut net, 1000).closing_when_done();
    client.connect(&mut net, (SERVER_V4, 7), &mut ports);
    net.run_services(&mut server, &mut client, LIMIT, |_, client, _| {
        (client.state() != ClientState::Connecting).then_some(())
    })
    .unwrap();
    println!(
        "handshake_timeout {}: client {:?} at {} | server: {} | backlog: {}",
        Duration::from(config.handshake_timeout),
        client.state(),
        net.now(),
        server.stats(),
        net.server.backlog.stats()
    );
    (net, server, client)
}

#[test]
fn half_open_handshakes_of_addresses_that_answered_arp_do_not_hold_the_pool_past_a_few_seconds() {
    // Each forged address sent one ARP request, so the backlog knows it as
    // there and does not evict its handshake at once. Once the oldest is
    // `EVICT_ALIVE_AFTER` (4 s) old, its SYN-ACK sent at 0, 1 and 3 s, the
    // waiting SYN evicts it. (When such handshakes were never evicted, they
    // held the pool until their 20 s deadline, and the client's connect failed
    // at its 30 s timeout: its SYNs of 0, 1, 3, 7 and 15 s were each held 2 s
    // and dropped, and the next was due at 31 s.) A deadline of 3 s frees the
    // slots by itself.
    for handshake_timeout in [20, 3] {
        let config = ServerConfig {
            handshake_timeout: smolsock::time::Duration::from_secs(handshake_timeout),
            ..SERVER
        };
        let (mut net, mut server, mut client) =
            connect_past_half_open_handshakes_of_live_addresses(config);
        let backlog = net.server.backlog.stats();
        assert_eq!(
            client.state(),
            ClientState::Connected,
            "handshake timeout {handshake_timeout} s; server: {}; backlog: {backlog}",
            server.stats()
        );
        assert!(
            net.now() < Instant::from_secs(5),
            "connected at {}; backlog: {backlog}",
            net.now()
        );
        if handshake_timeout == 20 {
            // Not before the handshakes of live addresses had their grace.
            assert!(
                net.now() >= Instant::ZERO + EVICT_ALIVE_AFTER,
                "{}",
                net.now()
            );
            assert_eq!(server.stats().handshake_timeouts, 0, "{}", server.stats());
            assert_eq!(backlog.evictions, 1, "{backlog}");
        }
        net.run_services(&mut server, &mut client, LIMIT, |server, client, _| {
            (client.done() && server.stats().closed == 1).then_some(())
        })
        .unwrap();
        assert!(client.driver.back == client.driver.data);
        assert_eq!(server.stats().accepted, 1);
    }
}

#[test]
fn a_waiting_syn_evicts_the_handshake_of_an_address_never_seen_before_those_of_live_ones() {
    // Three slots held by addresses that answered ARP, the last (and youngest)
    // by one that never showed itself: the real client's SYN evicts that one,
    // and leaves the others their grace.
    let mut net = sim(511, FaultConfig::CLEAN, POOL, 1);
    let mut server = echo_pool(&mut net, SERVER);
    for i in 0..POOL as u8 {
        let src = Ipv4Address::new(10, 0, 0, 100 + i);
        if usize::from(i) + 1 < POOL {
            net.inject_frame(Direction::ClientToServer, &arp_request(src));
        }
        net.inject_frame(Direction::ClientToServer, &forged_syn(src, 40_000, 7));
    }
    let mut ports = PortAllocator::new(511);
    let mut client = echo_client(&mut net, 1000).closing_when_done();
    client.connect(&mut net, (SERVER_V4, 7), &mut ports);
    net.run_services(&mut server, &mut client, LIMIT, |_, client, _| {
        (client.state() != ClientState::Connecting).then_some(())
    })
    .unwrap();
    let backlog = net.server.backlog.stats();
    assert_eq!(client.state(), ClientState::Connected, "{backlog}");
    assert!(
        net.now() < Instant::ZERO + EVICT_ALIVE_AFTER,
        "{}",
        net.now()
    );
    assert_eq!(backlog.evictions, 1, "{backlog}");
    let mut half_open: Vec<IpAddress> = net
        .server
        .sockets
        .iter()
        .filter_map(|(_, socket)| tcp::Socket::downcast(socket))
        .filter(|socket| socket.state() == tcp::State::SynReceived)
        .filter_map(|socket| socket.remote_endpoint().map(|e| e.addr))
        .collect();
    half_open.sort();
    let live: Vec<IpAddress> = (0..POOL as u8 - 1)
        .map(|i| Ipv4Address::new(10, 0, 0, 100 + i).into())
        .collect();
    assert_eq!(half_open, live);
}

#[test]
fn a_slow_handshake_on_a_full_pool_is_not_evicted_when_no_other_syn_waits() {
    // A pool of one, its slot taken by a live client's handshake whose SYN-ACKs
    // are lost for 8 s: the client's own SYN retransmissions reach a full pool,
    // but they belong to the handshake (the stack answered that peer already),
    // so none is held, and the handshake, older than the grace of live peers,
    // is left to complete.
    let link = FaultConfig::CLEAN.with_delay(Duration::from_millis(1));
    let mut net = sim(527, link, 1, 2);
    let sessions = [Recording::new(Echo::new())];
    let mut server = serve(&mut net, 7, (2048, 2048), sessions, SERVER);
    let mut ports = PortAllocator::new(527);
    // A first connection resolves the addresses both ways.
    let mut first = echo_client(&mut net, 100).closing_when_done();
    first.connect(&mut net, (SERVER_V4, 7), &mut ports);
    net.run_services(&mut server, &mut first, LIMIT, |server, first, _| {
        (first.done() && server.stats().closed == 1 && server.free_slots() == 1).then_some(())
    })
    .unwrap();

    net.set_faults(Direction::ServerToClient, link.with_loss(1000));
    let mut client = echo_client(&mut net, 100).closing_when_done();
    client.connect(&mut net, (SERVER_V4, 7), &mut ports);
    let started = net.now();
    run_for(&mut net, &mut server, &mut client, Duration::from_secs(8));
    assert!(server_socket_in(&net, tcp::State::SynReceived));
    net.set_faults(Direction::ServerToClient, link);
    net.run_services(&mut server, &mut client, LIMIT, |server, client, _| {
        let failed = matches!(client.state(), ClientState::Failed(_));
        (failed || client.done() && server.stats().closed == 2).then_some(())
    })
    .unwrap();
    let (stats, backlog) = (*server.stats(), net.server.backlog.stats());
    println!(
        "slow handshake on a full pool of one: connected after {} | server: {stats} | \
         backlog: {backlog}",
        net.now() - started
    );
    assert_eq!(client.state(), ClientState::Connected, "{stats}; {backlog}");
    assert!(client.driver.back == client.driver.data);
    assert_eq!((backlog.syns_held, backlog.evictions), (0, 0), "{backlog}");
    assert_eq!(stats.handshake_timeouts, 0, "{stats}");
    assert_eq!((stats.accepted, stats.closed), (2, 2), "{stats}");
}

#[test]
fn a_duplicate_syn_held_while_its_connection_opened_is_dropped_not_replayed_once_it_ends() {
    // smoltcp reads every frame of a poll before it answers any: a SYN and its
    // duplicate arriving together find the first taking the only listener and
    // the second held, its connection not yet known to the backlog.
    let mut net = sim(9001, FaultConfig::CLEAN, 1, 2);
    let sessions = [Recording::new(Echo::new())];
    let mut server = serve(&mut net, 7, (2048, 2048), sessions, SERVER);
    let mut ports = PortAllocator::new(9001);
    let mut a = echo_client(&mut net, 100).closing_when_done();
    net.set_faults(
        Direction::ClientToServer,
        FaultConfig::CLEAN.with_duplication(1000),
    );
    a.connect(&mut net, (SERVER_V4, 7), &mut ports);
    net.run_services(&mut server, &mut a, LIMIT, |_, a, _| {
        (a.state() == ClientState::Connected).then_some(())
    })
    .unwrap();
    // The copy is dropped as soon as the backlog sees the socket with its
    // connection, before that connection ends.
    let backlog = net.server.backlog.stats();
    let held = (
        backlog.syns_held,
        backlog.syns_replayed,
        backlog.syns_dropped,
    );
    assert_eq!(held, (1, 0, 1), "{backlog}");
    net.set_faults(Direction::ClientToServer, FaultConfig::CLEAN);
    net.run_services(&mut server, &mut a, LIMIT, |server, a, _| {
        (a.done() && server.stats().closed == 1 && server.free_slots() == 1).then_some(())
    })
    .unwrap();
    let freed_at = net.now();
    assert!(freed_at < Instant::from_millis(500), "{freed_at}");

    // The slot freed by A's end is the next client's at once: the copy of A's SYN
    // is not replayed into it as a handshake for a connection that has ended.
    let mut b = echo_client(&mut net, 100).closing_when_done();
    b.connect(&mut net, (SERVER_V4, 7), &mut ports);
    let mut both = Pair(a, b);
    net.run_services(&mut server, &mut both, LIMIT, |_, Pair(_, b), _| {
        (b.state() == ClientState::Connected).then_some(())
    })
    .unwrap();
    let waited = net.now() - freed_at;
    let backlog = net.server.backlog.stats();
    assert!(
        waited < Duration::from_millis(500),
        "B waited {waited} for the only slot; backlog: {backlog}; server: {}",
        server.stats()
    );
    // B's SYN may have come before the slot listened again: held, then
    // replayed. Nothing else was.
    assert_eq!(backlog.syns_dropped, 1, "{backlog}");
    assert_eq!(backlog.syns_replayed, backlog.syns_held - 1, "{backlog}");
    assert_eq!(server.stats().handshake_timeouts, 0, "{}", server.stats());
    net.run_services(&mut server, &mut both, LIMIT, |server, Pair(_, b), _| {
        (b.done() && server.stats().closed == 2).then_some(())
    })
    .unwrap();
    assert_eq!(server.stats().accepted, 2);
}

/// Counts the log records whose message contains a text, whichever test logs them.
struct LogCounter {
    text: &'static str,
    seen: AtomicUsize,
}

impl log::Log for LogCounter {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        if record.args().to_string().contains(self.text) {
            self.seen.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn flush(&self) {}
}

static CANNOT_LISTEN: LogCounter = LogCounter {
    text: "cannot listen",
    seen: AtomicUsize::new(0),
};

#[test]
fn close_all_closes_every_connection_cleanly_and_stops_listening() {
    if log::set_logger(&CANNOT_LISTEN).is_ok() {
        log::set_max_level(log::LevelFilter::Warn);
    }
    let mut net = sim(504, FaultConfig::CLEAN, 2, 3);
    let mut server = framed_pool::<2>(&mut net, (4096, 4096), SERVER);
    let mut ports = PortAllocator::new(504);
    // One slot serves a client, the other is listening when the server closes.
    let mut client = framed_client(&mut net, frames(20, MAX_FRAME as usize));
    client.connect(&mut net, (SERVER_V4, 9000), &mut ports);
    net.run_services(&mut server, &mut client, LIMIT, |_, client, _| {
        client.done().then_some(())
    })
    .unwrap();
    assert_eq!(server.free_slots(), 1);
    let now = net.now();
    server.close_all(&mut net.server.sockets, now);
    // The listening slot is no longer free: it will not listen again.
    assert_eq!(server.free_slots(), 0);
    // A server shut down tells the backlog, or its port's SYNs would be held
    // for a pool that never listens again.
    net.server.backlog.forget(9000);
    net.run_services(&mut server, &mut client, LIMIT, |server, client, _| {
        let finished = client.driver.end == Some(RecvError::Finished);
        (finished && server.active() == 0).then_some(())
    })
    .unwrap();
    assert!(client.driver.got == client.driver.frames);
    assert_eq!(ends(&server), [End::Closed]);

    // Nobody listens any more: the next client is refused, and the server does
    // not keep trying to listen on port 0.
    let mut late = framed_client(&mut net, frames(1, 10));
    late.connect(&mut net, (SERVER_V4, 9000), &mut ports);
    net.run_services(&mut server, &mut late, LIMIT, |_, late, _| {
        (late.state() != ClientState::Connecting).then_some(())
    })
    .unwrap();
    assert_eq!(late.state(), ClientState::Failed(ConnectError::Refused));
    run_for(&mut net, &mut server, &mut (), Duration::from_secs(1));
    assert_eq!(server.port(), 0);
    assert_eq!(CANNOT_LISTEN.seen.load(Ordering::Relaxed), 0);
}

/// A socket set of its own, with room for `n` sockets.
fn socket_set(n: usize) -> SocketSet<'static> {
    SocketSet::new((0..n).map(|_| SocketStorage::EMPTY).collect::<Vec<_>>())
}

#[test]
fn a_foreign_socket_handle_is_an_error_or_a_count_never_a_panic() {
    // The server's set: two TCP sockets and a UDP one. Another set whose only
    // socket is a UDP one where the server's first TCP socket is, and nothing
    // where its second is; and an empty one. (A handle is an index into a set: a
    // TCP socket of another set at the same index cannot be told apart.)
    let mut ours = socket_set(3);
    let a = ours.add(tcp_socket(1024, 1024));
    let b = ours.add(tcp_socket(1024, 1024));
    let u = ours.add(udp_socket(4, 1024));
    let mut other = socket_set(3);
    other.add(udp_socket(4, 1024));
    let mut empty = socket_set(1);
    let mut far = socket_set(4);
    let nowhere = (0..4).map(|_| far.add(tcp_socket(64, 64))).last().unwrap();

    // The constructor refuses a handle not in the set, and a UDP socket's; a
    // refused server leaves every socket as it was (none listens for a server
    // that does not exist, and the same sockets make a server next time).
    for (handles, what) in [([a, nowhere], "not in the set"), ([a, u], "a UDP socket")] {
        let server = TcpServer::new(&mut ours, 7, handles, [Echo::new(), Echo::new()]);
        assert_eq!(
            server.err(),
            Some(ServerError::Handle(HandleError::NotFound)),
            "{what}"
        );
        assert!(
            !ours.get::<tcp::Socket>(a).is_open(),
            "{what}: left listening"
        );
    }
    assert_eq!(
        TcpServer::new(&mut ours, 7, [a, a], [Echo::new(), Echo::new()]).err(),
        Some(ServerError::DuplicateHandle)
    );
    // A socket that cannot listen (already in use) undoes the ones before it.
    ours.get_mut::<tcp::Socket>(b).listen(8).unwrap();
    let server = TcpServer::new(&mut ours, 7, [a, b], [Echo::new(), Echo::new()]);
    assert!(matches!(server.err(), Some(ServerError::Listen(_))));
    assert!(!ours.get::<tcp::Socket>(a).is_open(), "left listening");
    ours.get_mut::<tcp::Socket>(b).abort();

    // A server polled with the wrong set skips its slots and counts them.
    let mut server = TcpServer::new(&mut ours, 7, [a, b], [Echo::new(), Echo::new()]).unwrap();
    let now = Instant::from_secs(1);
    server.poll(&mut other, now);
    server.poll(&mut empty, now);
    assert_eq!(server.stats().missing_sockets, 4, "two slots, twice");
    assert_eq!(server.poll_at(&other), None);
    server.close_all(&mut empty, now);
    assert_eq!(server.stats().missing_sockets, 6);
    // Its own set has both sockets: nothing more is missing.
    server.poll(&mut ours, now);
    assert_eq!(server.stats().missing_sockets, 6);
    assert_eq!(server.stats().accepted, 0);
    assert!(
        server
            .stats()
            .to_string()
            .ends_with("6 polls with a socket missing")
    );

    // The UDP service: a poll with a set that lacks its socket is counted.
    let mut udp = UdpService::<_, 512>::new(u, 7, UdpEcho);
    udp.poll(&mut other, now);
    udp.poll(&mut empty, now);
    assert_eq!(udp.stats().missing_socket, 2);
    udp.poll(&mut ours, now);
    assert_eq!(udp.stats().missing_socket, 2, "its own set has it");
    assert!(
        udp.stats()
            .to_string()
            .ends_with("2 polls without its socket")
    );
    assert!(ours.get::<udp::Socket>(u).is_open(), "bound on its own set");

    // One session on one socket: an error, and the session is not started.
    let mut session = TcpSession::new(a, Recording::new(Echo::new()));
    assert_eq!(session.poll(&mut other, now), Err(HandleError::NotFound));
    assert_eq!(session.poll(&mut empty, now), Err(HandleError::NotFound));
    assert_eq!(session.poll_at(), None);
    assert!(session.session().starts.is_empty());
    let mut wrong_kind = TcpSession::new(u, Echo::new());
    assert_eq!(
        wrong_kind.poll(&mut ours, now),
        Err(HandleError::NotFound),
        "a UDP socket's"
    );
}

// ---------------------------------------------------------------------------
// Bad input: whatever one peer does, the server carries on serving the others.

type FramedEchoSlot = Recording<Framed<FramedEcho, [u8; 1028], [u8; 1028]>>;

fn framed_pool<const N: usize>(
    net: &mut Net,
    buffers: (usize, usize),
    config: ServerConfig,
) -> TcpServer<FramedEchoSlot, N> {
    let sessions = core::array::from_fn(|_| {
        Recording::new(Framed::new(FramedEcho::new(), [0u8; 1028], [0u8; 1028], format()).unwrap())
    });
    serve(net, 9000, buffers, sessions, config)
}

/// The frame counters of every slot, added up.
fn framed_stats<const N: usize>(server: &TcpServer<FramedEchoSlot, N>) -> FramedStats {
    let mut total = FramedStats::default();
    for session in server.sessions() {
        total.accumulate(&session.inner.stats());
    }
    total
}

/// Whether the server's socket of `client`'s connection has its send buffer full:
/// back-pressure from a peer that does not read.
fn send_buffer_full<D: Driver>(net: &Net, client: &Client<D>) -> bool {
    let port = client.tcp.local_port();
    net.server.sockets.iter().any(|(_, socket)| match socket {
        smoltcp::socket::Socket::Tcp(tcp) => {
            tcp.remote_endpoint().is_some_and(|peer| peer.port == port)
                && tcp.send_queue() == tcp.send_capacity()
        }
        _ => false,
    })
}

fn framed_client(net: &mut Net, frames: Vec<Vec<u8>>) -> Client<FramedPeer> {
    Client::new(net, (4096, 4096), FramedPeer::new(frames))
}

/// A client that sends raw bytes (a broken frame) and reads nothing.
fn raw_client(net: &mut Net, data: Vec<u8>) -> Client<RawEcho> {
    Client::new(net, (4096, 4096), RawEcho::new(data))
}

#[test]
fn an_oversize_frame_resets_that_connection_and_no_other() {
    let mut net = sim(600, FaultConfig::CLEAN, 2, 2);
    let mut server = framed_pool::<2>(&mut net, (4096, 4096), SERVER);
    let mut ports = PortAllocator::new(600);
    let mut good = framed_client(&mut net, frames(40, MAX_FRAME as usize));
    good.connect(&mut net, (SERVER_V4, 9000), &mut ports);
    // Let the good client get going first.
    net.run_services(&mut server, &mut good, LIMIT, |_, good, _| {
        (good.driver.got.len() >= 10).then_some(())
    })
    .unwrap();

    // A header announcing 4 KiB, over the 1 KiB maximum, then some body.
    let mut bad_bytes = 4096u32.to_be_bytes().to_vec();
    bad_bytes.extend_from_slice(&bytes(300));
    let mut bad = raw_client(&mut net, bad_bytes);
    bad.connect(&mut net, (SERVER_V4, 9000), &mut ports);
    let mut both = Pair(good, bad);
    net.run_services(&mut server, &mut both, LIMIT, |server, Pair(good, _), _| {
        (server.stats().aborted == 1 && good.done()).then_some(())
    })
    .unwrap();
    let Pair(good, bad) = both;
    net.run_for(Duration::from_millis(100));
    assert_eq!(bad.socket(&mut net).state(), tcp::State::Closed, "reset");
    assert!(
        bad.driver.back.is_empty(),
        "nothing of the bad frame echoed"
    );
    assert!(good.driver.got == good.driver.frames);
    assert_eq!(good.driver.end, None);
    assert_eq!(good.socket(&mut net).state(), tcp::State::Established);
    assert_eq!(ends(&server), [End::Aborted]);
    assert_eq!(framed_stats(&server).read.oversize, 1);
    let errors: u64 = server
        .sessions()
        .iter()
        .map(|h| h.inner.handler().errors)
        .sum();
    assert_eq!(errors, 1);
}

/// Sends `data` a byte every `gap` (each byte is progress for an idle
/// timeout), reads whatever comes back, and closes once the server has.
struct Trickle {
    data: Vec<u8>,
    sent: usize,
    gap: Duration,
    next: Option<Instant>,
}

impl Driver for Trickle {
    fn drive(&mut self, sockets: &mut SocketSet<'_>, handle: SocketHandle, now: Instant) {
        let socket = sockets.get_mut::<tcp::Socket>(handle);
        let due = *self.next.get_or_insert(now);
        if now >= due && socket.may_send() {
            let byte = self.data.get(self.sent..=self.sent).unwrap_or_default();
            self.sent += socket.send_slice(byte).unwrap_or(0);
            self.next = Some(now + self.gap);
        }
        while let Ok(1..) = socket.recv_slice(&mut [0u8; 256]) {}
        if !socket.may_recv() && socket.may_send() {
            socket.close();
        }
    }

    fn done(&self) -> bool {
        false
    }
}

/// A peer announcing a 1000-byte frame and sending its bytes one every 50 s,
/// against a pool of one `session`: how long the slot was held, how the
/// connection ended, and what `look` sees in the session.
fn trickle_a_frame<S: Session, R>(
    seed: u64,
    session: S,
    look: impl FnOnce(&S) -> R,
) -> (Duration, Vec<End>, R) {
    let mut net = sim(seed, FaultConfig::CLEAN, 1, 1);
    let mut server = serve(
        &mut net,
        9000,
        (2048, 2048),
        [Recording::new(session)],
        SERVER,
    );
    let mut data = 1000u32.to_be_bytes().to_vec();
    data.extend_from_slice(&bytes(1000));
    let driver = Trickle {
        data,
        sent: 0,
        gap: Duration::from_secs(50),
        next: None,
    };
    let mut peer = Client::new(&mut net, (2048, 2048), driver);
    peer.connect(&mut net, (SERVER_V4, 9000), &mut PortAllocator::new(seed));
    let start = net.now();
    // A frame at this pace takes 14 hours; the pool's idle timeout never comes.
    net.run_services(
        &mut server,
        &mut peer,
        Duration::from_secs(3600),
        |server, _, _| {
            let stats = server.stats();
            (stats.accepted == 1 && server.active() == 0).then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}: the trickling peer held the slot, {}", server.stats()));
    let [slot] = server.sessions();
    (net.now() - start, ends(&server), look(&slot.inner))
}

#[test]
fn a_peer_trickling_a_frame_is_closed_at_the_frame_deadline() {
    // The frame began with its first byte, at connection: 60 s, and 4 ms for
    // the 2 bytes received by then (a FIN and the peer's own: clean).
    let framed = Framed::new(FramedEcho::new(), [0u8; 1028], [0u8; 1028], format()).unwrap();
    let (held, end, (stalled, errors)) = trickle_a_frame(602, framed, |framed| {
        (framed.stats().read.stalled, framed.handler().errors)
    });
    assert!(held < Duration::from_secs(61), "held {held}");
    assert_eq!((end, stalled, errors), (vec![End::Closed], 1, 1));
    let streaming = StreamingEcho::new([0u8; 64], format()).unwrap();
    let (held, end, (stalled, errors)) = trickle_a_frame(603, streaming, |streaming| {
        (streaming.stats().stalled, streaming.errors)
    });
    assert!(held < Duration::from_secs(61), "held {held}");
    assert_eq!((end, stalled, errors), (vec![End::Closed], 1, 1));
}

#[test]
fn a_peer_reset_mid_frame_frees_its_slot_for_the_next_peer() {
    let mut net = sim(601, FaultConfig::CLEAN, 1, 2);
    let mut server = framed_pool::<1>(&mut net, (4096, 4096), SERVER);
    let mut ports = PortAllocator::new(601);
    // Half a frame: a header for 500 bytes, then 200 of them.
    let mut half = 500u32.to_be_bytes().to_vec();
    half.extend_from_slice(&bytes(200));
    let mut quitter = raw_client(&mut net, half);
    quitter.connect(&mut net, (SERVER_V4, 9000), &mut ports);
    net.run_services(&mut server, &mut quitter, LIMIT, |server, _, _| {
        (framed_stats(server).read.bytes == 204).then_some(())
    })
    .unwrap();
    quitter.socket(&mut net).abort();
    net.run_services(&mut server, &mut quitter, LIMIT, |server, _, _| {
        (server.stats().relistens == 1).then_some(())
    })
    .unwrap();
    assert_eq!(ends(&server), [End::Reset]);
    assert_eq!(server.stats().resets, 1);

    // The next peer's frames come back exact: nothing of the half frame is left.
    let mut next = framed_client(&mut net, frames(30, MAX_FRAME as usize));
    next.connect(&mut net, (SERVER_V4, 9000), &mut ports);
    net.run_services(&mut server, &mut next, LIMIT, |_, next, _| {
        next.done().then_some(())
    })
    .unwrap();
    assert!(next.driver.got == next.driver.frames);
    assert_eq!(next.driver.end, None);
}

#[test]
fn a_peer_that_closes_mid_frame_is_counted_truncated_and_closed() {
    let mut net = sim(606, FaultConfig::CLEAN, 1, 2);
    let mut server = framed_pool::<1>(&mut net, (4096, 4096), SERVER);
    let mut ports = PortAllocator::new(606);
    // One whole frame, then a header for 500 bytes and only 100 of them, then FIN.
    let mut cut = 3u32.to_be_bytes().to_vec();
    cut.extend_from_slice(b"abc");
    cut.extend_from_slice(&500u32.to_be_bytes());
    cut.extend_from_slice(&bytes(100));
    let mut quitter = raw_client(&mut net, cut);
    quitter.connect(&mut net, (SERVER_V4, 9000), &mut ports);
    net.run_services(&mut server, &mut quitter, LIMIT, |server, _, _| {
        (framed_stats(server).read.bytes == 111).then_some(())
    })
    .unwrap();
    quitter.socket(&mut net).close();
    net.run_services(&mut server, &mut quitter, LIMIT, |server, _, _| {
        (server.stats().relistens == 1).then_some(())
    })
    .unwrap();
    // The whole frame was echoed; the cut one was reported, not echoed.
    assert_eq!(quitter.driver.back, [0, 0, 0, 3, b'a', b'b', b'c']);
    assert_eq!(ends(&server), [End::Closed]);
    let stats = framed_stats(&server);
    assert_eq!((stats.read.frames, stats.read.truncated), (1, 1));
    assert_eq!(server.sessions()[0].inner.handler().errors, 1);
}

// Soaking this one over many seeds (SMOLSOCK_SEEDS=150) hangs about 4 % of the
// rough runs in smoltcp 0.14 itself: the client's FIN is never retransmitted.
// With only the FIN unacknowledged, three duplicate ACKs start a fast
// retransmit that finds no data to resend, cancels the retransmission timer and
// sends nothing, and the client sits in FIN-WAIT-1 for ever (first seen: IPv6,
// rough link, seed 5605). The server is unaffected: its idle timeout frees the slot.
#[test]
fn a_half_closed_client_gets_every_echo_then_the_server_closes() {
    for_each_case(602, |case, seed| {
        let mut net = sim(seed, case.faults, 1, 1);
        let mut server = framed_pool::<1>(&mut net, (4096, 4096), case.server_config());
        let mut ports = PortAllocator::new(seed);
        let mut client = framed_client(&mut net, frames(30, MAX_FRAME as usize));
        client.driver.half_close = true;
        client.connect(&mut net, (case.server, 9000), &mut ports);
        net.run_services(&mut server, &mut client, LIMIT, |server, client, _| {
            let finished = client.driver.end == Some(RecvError::Finished);
            (finished && server.stats().closed == 1).then_some(())
        })
        .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert!(client.driver.got == client.driver.frames, "{}", case.name);
        assert_eq!(ends(&server), [End::Closed], "{}", case.name);
    });
}

/// Echoes each frame a second after it arrived: a handler that waits for
/// something other than send space (a clock, a slow store).
#[derive(Default)]
struct DeferredEcho {
    since: Option<smolsock::time::Instant>,
}

impl FrameHandler for DeferredEcho {
    fn start(&mut self, _now: smolsock::time::Instant) {
        self.since = None;
    }

    fn on_frame(&mut self, frame: &[u8], out: &mut FrameOut<'_>) -> Flow {
        let since = *self.since.get_or_insert(out.now());
        if out.now() < since.saturating_add(smolsock::time::Duration::from_secs(1)) {
            return Flow::Wait;
        }
        let flow = Flow::from_send(out.send(frame));
        if flow == Flow::Continue {
            self.since = None;
        }
        flow
    }
}

#[test]
fn a_half_closed_client_still_gets_replies_its_frames_wait_for() {
    let mut net = sim(607, FaultConfig::CLEAN, 1, 1);
    let handler = Framed::new(DeferredEcho::default(), [0u8; 1028], [0u8; 1028], format()).unwrap();
    let mut server = serve(
        &mut net,
        9000,
        (4096, 4096),
        [Recording::new(handler)],
        SERVER,
    );
    let mut ports = PortAllocator::new(607);
    let mut client = framed_client(&mut net, frames(3, 100));
    client.driver.half_close = true;
    client.connect(&mut net, (SERVER_V4, 9000), &mut ports);
    net.run_services(&mut server, &mut client, LIMIT, |server, client, _| {
        let finished = client.driver.end == Some(RecvError::Finished);
        (finished && server.stats().closed == 1).then_some(())
    })
    .unwrap();
    assert!(
        client.driver.got == client.driver.frames,
        "got {} of 3",
        client.driver.got.len()
    );
    assert!(
        net.now() >= Instant::from_secs(3),
        "each reply waited its second"
    );
}

#[test]
fn a_peer_that_stops_reading_gets_back_pressure_without_loss_while_others_are_served() {
    let mut net = sim(603, FaultConfig::CLEAN, 2, 2);
    let mut server = framed_pool::<2>(&mut net, (2048, 2048), SERVER);
    let mut ports = PortAllocator::new(603);
    // A slow peer with a small receive window and plenty to send.
    let mut slow = Client::new(
        &mut net,
        (1024, 4096),
        FramedPeer::new(frames(40, MAX_FRAME as usize)),
    );
    slow.driver.reading = false;
    slow.connect(&mut net, (SERVER_V4, 9000), &mut ports);
    let mut fast = framed_client(&mut net, frames(100, MAX_FRAME as usize));
    fast.connect(&mut net, (SERVER_V4, 9000), &mut ports);
    let mut both = Pair(slow, fast);
    // The fast one is served in full while the slow one is stuck.
    net.run_services(&mut server, &mut both, LIMIT, |_, Pair(_, fast), _| {
        fast.done().then_some(())
    })
    .unwrap();
    run_for(&mut net, &mut server, &mut both, Duration::from_secs(5));
    let Pair(slow, fast) = &mut both;
    assert!(fast.driver.got == fast.driver.frames);
    let stuck_at = slow.driver.sent;
    assert!(stuck_at < 40, "the slow peer's sends are held back too");
    assert!(
        send_buffer_full(&net, slow),
        "the server's send buffer filled"
    );
    let waiting = server.sessions().iter().filter(|s| !s.inner.is_flushed());
    assert_eq!(
        waiting.count(),
        1,
        "a reply waits in the slow peer's session"
    );

    // It reads at last: everything arrives, exact, on the same connection.
    slow.driver.reading = true;
    net.run_services(&mut server, &mut both, LIMIT, |_, Pair(slow, _), _| {
        slow.done().then_some(())
    })
    .unwrap();
    let Pair(slow, _) = &both;
    assert!(slow.driver.got == slow.driver.frames);
    assert!(server.sessions().iter().all(|s| s.inner.is_flushed()));
    assert_eq!(server.stats().accepted, 2);
    assert!(ends(&server).is_empty(), "no connection was dropped");
}

#[test]
fn a_peer_that_never_reads_is_reset_after_the_idle_timeout_and_its_slot_serves_the_next() {
    let idle = Duration::from_secs(5);
    let config = ServerConfig {
        idle_timeout: Some(idle.into()),
        ..SERVER
    };
    let mut net = sim(604, FaultConfig::CLEAN, 1, 2);
    let mut server = framed_pool::<1>(&mut net, (2048, 2048), config);
    let mut ports = PortAllocator::new(604);
    let mut slow = Client::new(
        &mut net,
        (1024, 4096),
        FramedPeer::new(frames(40, MAX_FRAME as usize)),
    );
    slow.driver.reading = false;
    slow.connect(&mut net, (SERVER_V6, 9000), &mut ports);
    let mut filled = false;
    net.run_services(&mut server, &mut slow, LIMIT, |server, slow, net| {
        filled |= send_buffer_full(net, slow);
        (server.stats().idle_timeouts == 1).then_some(())
    })
    .unwrap();
    assert_eq!(ends(&server), [End::IdleTimeout]);
    assert!(filled, "the server's send buffer filled before the reset");
    net.run_services(&mut server, &mut slow, LIMIT, |server, _, _| {
        (server.stats().relistens == 1).then_some(())
    })
    .unwrap();
    assert_eq!(slow.socket(&mut net).state(), tcp::State::Closed, "reset");

    let mut next = framed_client(&mut net, frames(30, MAX_FRAME as usize));
    next.connect(&mut net, (SERVER_V6, 9000), &mut ports);
    net.run_services(&mut server, &mut next, LIMIT, |_, next, _| {
        next.done().then_some(())
    })
    .unwrap();
    assert!(next.driver.got == next.driver.frames);

    // Served, it stays silent: reset in turn. The reset reaches its session as
    // the end of the connection, not as the server's clean close of the stream.
    net.run_services(&mut server, &mut next, LIMIT, |server, _, _| {
        (server.stats().idle_timeouts == 2).then_some(())
    })
    .unwrap();
    net.run_for(Duration::from_millis(100));
    run_for(&mut net, &mut server, &mut next, Duration::from_millis(100));
    assert_eq!(next.socket(&mut net).state(), tcp::State::Closed, "reset");
    // The client's poll says the connection was lost, and the session was not
    // told the stream finished.
    assert_eq!(next.driver.end, Some(RecvError::NotConnected));
    assert_eq!(
        next.driver.framed().status(),
        Status::Open,
        "the session was told the stream finished"
    );
}

#[test]
fn bad_http_requests_get_their_error_status_and_the_slot_serves_the_next() {
    let status = |w: &mut dyn core::fmt::Write| w.write_str("ok");
    let site = StatusSite::new("smolsock", &status);
    let mut page = String::new();
    let html = site.render("/", &mut page).unwrap().unwrap();
    let error = |code: StatusCode| {
        let body = format!("{code}\n");
        http_response(code, "text/plain", body.as_bytes(), true)
    };
    let mut too_large = b"GET / HTTP/1.1\r\n".to_vec();
    while too_large.len() < 1500 {
        too_large.extend_from_slice(b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(1100)).into_bytes();
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
        (&long_uri, error(StatusCode::URI_TOO_LONG)),
        (
            b"GET / HTTP/2.0\r\n\r\n",
            error(StatusCode::VERSION_NOT_SUPPORTED),
        ),
        // A head that never ends: answered when its deadline passes.
        (
            b"GET / HTTP/1.1\r\nHost: slow\r\n",
            error(StatusCode::REQUEST_TIMEOUT),
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            http_response(StatusCode::OK, html, page.as_bytes(), true),
        ),
    ];
    let head_timeout = Duration::from(HttpConfig::DEFAULT.head_timeout);
    assert_eq!(head_timeout, Duration::from_secs(5));
    let mut net = sim(605, FaultConfig::CLEAN, 1, exchanges.len());
    let sessions = [Recording::new(HttpResponder::<_, 1024, 2048>::new(&site))];
    let mut server = serve(&mut net, 80, (2048, 2048), sessions, SERVER);
    let mut ports = PortAllocator::new(605);
    for (i, (request, expected)) in exchanges.iter().enumerate() {
        let mut client = Client::new(&mut net, (2048, 2048), HttpGet::new(vec![request.to_vec()]));
        client.connect(&mut net, (SERVER_V4, 80), &mut ports);
        net.run_services(&mut server, &mut client, LIMIT, |server, client, _| {
            let relistened = server.stats().relistens == i as u64 + 1;
            (client.done() && relistened).then_some(())
        })
        .unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert!(
            &client.driver.response == expected,
            "request {i}:\n{}",
            String::from_utf8_lossy(&client.driver.response)
        );
        let session = &server.sessions()[0];
        let served_for = Instant::from(session.ends[i]) - Instant::from(session.starts[i]);
        if expected.starts_with(b"HTTP/1.1 408") {
            assert!(served_for >= head_timeout, "408 after {served_for}");
        } else {
            assert!(
                served_for < Duration::from_secs(1),
                "request {i}: {served_for}"
            );
        }
    }
    let stats = server.sessions()[0].inner.stats();
    // 400, 400, 405, 431, 414, 408; 505; 200.
    assert_eq!(
        (stats.client_errors, stats.server_errors, stats.ok),
        (6, 1, 1)
    );
    assert_eq!((stats.oversize, stats.head_timeouts), (2, 1), "{stats}");
    assert_eq!(ends(&server), [End::Closed; 8]);
}

// ---------------------------------------------------------------------------
// TcpClient: connect timeout, refusal, ephemeral ports.

#[test]
fn connect_times_out_at_the_deadline_when_nothing_answers() {
    let timeout = Duration::from_secs(3);
    for (seed, server) in [
        (700, IpAddress::Ipv4(SERVER_V4)),
        (701, IpAddress::Ipv6(SERVER_V6)),
    ] {
        // Every frame lost: no ARP or neighbour answer, no SYN-ACK.
        let mut net = sim(seed, FaultConfig::CLEAN.with_loss(1000), 0, 1);
        let mut ports = PortAllocator::new(seed);
        let mut client = echo_client(&mut net, 100);
        client.tcp = TcpClient::new(timeout);
        let started = net.now();
        client.connect(&mut net, (server, 7), &mut ports);
        net.run_services(&mut (), &mut client, LIMIT, |_, client, _| {
            (client.state() != ClientState::Connecting).then_some(())
        })
        .unwrap();
        assert_eq!(
            client.state(),
            ClientState::Failed(ConnectError::Timeout),
            "{server}"
        );
        // Exactly at the deadline: the client's poll_at brought the clock there.
        assert_eq!(net.now() - started, timeout, "{server}");
        assert_eq!(client.socket(&mut net).state(), tcp::State::Closed);
    }
}

#[test]
fn connect_to_a_port_nobody_listens_on_is_refused() {
    for (seed, server) in [
        (702, IpAddress::Ipv4(SERVER_V4)),
        (703, IpAddress::Ipv6(SERVER_V6)),
    ] {
        let mut net = sim(seed, FaultConfig::CLEAN, 0, 1);
        let mut ports = PortAllocator::new(seed);
        let mut client = echo_client(&mut net, 100);
        client.connect(&mut net, (server, 7), &mut ports);
        net.run_services(&mut (), &mut client, LIMIT, |_, client, _| {
            (client.state() != ClientState::Connecting).then_some(())
        })
        .unwrap();
        assert_eq!(
            client.state(),
            ClientState::Failed(ConnectError::Refused),
            "{server}"
        );
        assert!(
            net.now() < Instant::from_secs(2),
            "{server}: refused at once"
        );
    }
}

#[test]
fn reconnects_never_reuse_a_port_in_quarantine() {
    let quarantine = Duration::from_secs(60);
    let mut net = sim(704, FaultConfig::CLEAN, 1, 1);
    let sessions = [Recording::new(Echo::new())];
    let mut server = serve(&mut net, 7, (2048, 2048), sessions, SERVER);
    let mut ports = PortAllocator::<16>::new(0).with_quarantine(quarantine);
    // The port each connection came from, as the server's socket saw it.
    let mut seen = Vec::new();
    let mut client = echo_client(&mut net, 100);
    let span = usize::from(EPHEMERAL_LAST - EPHEMERAL_FIRST) + 1;
    // One exchange on a fresh connection of the same socket; the client closes
    // first, so its end of the last connection is in TIME-WAIT when it reconnects.
    let mut exchange = |net: &mut Net, client: &mut Client<RawEcho>, ports: &mut PortAllocator| {
        client.driver = RawEcho::new(bytes(100));
        client.connect(net, (SERVER_V4, 7), ports);
        let accepted = server.stats().accepted;
        net.run_services(&mut server, client, LIMIT, |_, client, _| {
            client.done().then_some(())
        })
        .unwrap();
        let peer = net
            .server
            .sockets
            .iter()
            .find_map(|(_, socket)| match socket {
                smoltcp::socket::Socket::Tcp(tcp) => tcp.remote_endpoint(),
                _ => None,
            });
        seen.push(peer.unwrap().port);
        client.socket(net).close();
        net.run_services(&mut server, client, LIMIT, |server, _, _| {
            (server.stats().relistens == accepted + 1).then_some(())
        })
        .unwrap();
        assert_eq!(client.socket(net).state(), tcp::State::TimeWait);
        client.tcp.local_port()
    };
    let mut used = vec![
        exchange(&mut net, &mut client, &mut ports),
        exchange(&mut net, &mut client, &mut ports),
        exchange(&mut net, &mut client, &mut ports),
    ];
    assert_eq!(
        used,
        [EPHEMERAL_FIRST, EPHEMERAL_FIRST + 1, EPHEMERAL_FIRST + 2]
    );
    // Other connections take the rest of the range: the next turn would be the
    // first port again, within a quarantine of its use, so none is given.
    for _ in 0..span - 3 {
        ports.allocate(net.now()).unwrap();
    }
    assert_eq!(ports.allocate(net.now()), None);
    // Once the quarantine has passed since the range began, the first port
    // comes round again.
    net.run_for(quarantine);
    used.push(exchange(&mut net, &mut client, &mut ports));
    assert_eq!(used[3], EPHEMERAL_FIRST);
    // The server saw each connection come from the port the client used.
    assert_eq!(seen, used);
    assert_eq!(server.sessions()[0].starts.len(), used.len());
}

#[test]
fn a_port_released_at_its_connections_end_is_not_handed_out_while_in_time_wait() {
    // A connection that outlives the quarantine, from a client that does not
    // connect again: released when it ends, its port is quarantined from then
    // on, though the range went round since it went out.
    let quarantine = Duration::from_secs(60);
    let mut net = sim(705, FaultConfig::CLEAN, 1, 1);
    let sessions = [Recording::new(Echo::new())];
    let mut server = serve(&mut net, 7, (2048, 2048), sessions, SERVER);
    let mut ports = PortAllocator::<16>::new(0).with_quarantine(quarantine);
    let mut client = echo_client(&mut net, 100);
    client.connect(&mut net, (SERVER_V4, 7), &mut ports);
    net.run_services(&mut server, &mut client, LIMIT, |_, client, _| {
        client.done().then_some(())
    })
    .unwrap();
    let port = client.tcp.local_port();
    // Other connections take the rest of the range at once.
    let span = usize::from(EPHEMERAL_LAST - EPHEMERAL_FIRST) + 1;
    for _ in 1..span {
        ports.allocate(net.now()).unwrap();
    }
    // The connection lasts past the quarantine, then the client closes first.
    net.run_for(quarantine);
    client.socket(&mut net).close();
    net.run_services(&mut server, &mut client, LIMIT, |_, client, net| {
        (client.socket(net).state() == tcp::State::TimeWait).then_some(())
    })
    .unwrap();
    client.tcp.release(&mut ports, net.now());
    client.tcp.release(&mut ports, net.now());
    assert_eq!(client.tcp.local_port(), 0);
    // The range's first block may go out again, but not the port in TIME-WAIT.
    let next = ports.allocate(net.now());
    assert_eq!(client.socket(&mut net).state(), tcp::State::TimeWait);
    assert_eq!(next, Some(port + 1), "{port} is in TIME-WAIT");
    assert_eq!(ports.forgotten(), 0);
}

// ---------------------------------------------------------------------------
// UDP: boundaries kept, oversize datagrams counted not cut, replies wait for room.

#[test]
fn udp_datagrams_keep_their_boundaries() {
    let mut net = sim(800, FaultConfig::CLEAN, 1, 1);
    let socket = net.server.sockets.add(udp_socket(16, 16 * 1024));
    let mut server = UdpService::<_, 1500>::new(socket, 7, UdpEcho);
    // Sent back to back in one poll, so they sit together in both sockets' buffers.
    let sizes = [0, 1, 7, 1000, 3, 1400, 0, 50, 512];
    let datagrams: Vec<Vec<u8>> = sizes.iter().map(|&n| bytes(n + 1)[1..].to_vec()).collect();
    let mut client = UdpBurst::new(&mut net, (SERVER_V6, 7), datagrams.clone());
    net.run_services(&mut server, &mut client, LIMIT, |_, client, _| {
        (client.got.len() == sizes.len()).then_some(())
    })
    .unwrap();
    assert!(client.got == datagrams);
    assert_eq!(server.stats().datagrams_in, sizes.len() as u64);
    assert_eq!(server.stats().bytes_in, sizes.iter().sum::<usize>() as u64);
}

#[test]
fn a_udp_service_that_cannot_bind_counts_each_poll_and_serves_nothing() {
    let mut net = sim(802, FaultConfig::CLEAN, 1, 1);
    let socket = net.server.sockets.add(udp_socket(4, 2048));
    // Port 0 is no port: smoltcp refuses the bind.
    let mut server = UdpService::<_, 512>::new(socket, 0, UdpEcho);
    let now = net.now();
    for _ in 0..3 {
        server.poll(&mut net.server.sockets, now);
    }
    assert_eq!(server.stats().bind_errors, 3);
    assert!(!net.server.sockets.get::<udp::Socket>(socket).is_open());
    // A service on a real port binds at its first poll and counts nothing.
    let socket = net.server.sockets.add(udp_socket(4, 2048));
    let mut server = UdpService::<_, 512>::new(socket, 7, UdpEcho);
    server.poll(&mut net.server.sockets, now);
    assert_eq!(server.stats().bind_errors, 0);
    assert!(net.server.sockets.get::<udp::Socket>(socket).is_open());
}

#[test]
fn a_datagram_larger_than_the_buffer_is_dropped_and_counted_not_cut() {
    let mut net = sim(801, FaultConfig::CLEAN, 1, 1);
    let socket = net.server.sockets.add(udp_socket(16, 16 * 1024));
    let mut server = UdpService::<_, 512>::new(socket, 7, UdpEcho);
    let datagrams = vec![bytes(513), bytes(512), bytes(1400), bytes(100)];
    let mut client = UdpBurst::new(&mut net, (SERVER_V4, 7), datagrams.clone());
    net.run_services(&mut server, &mut client, LIMIT, |_, client, _| {
        (client.got.len() == 2).then_some(())
    })
    .unwrap();
    // Nothing more is on its way: the two oversize ones are gone, not cut.
    run_for(&mut net, &mut server, &mut client, Duration::from_secs(1));
    assert!(client.got == [datagrams[1].clone(), datagrams[3].clone()]);
    let stats = server.stats();
    assert_eq!(
        (stats.oversize, stats.datagrams_in, stats.datagrams_out),
        (2, 2, 2)
    );
}

#[test]
fn udp_replies_that_find_the_send_buffer_full_wait_and_all_arrive() {
    let mut net = sim(802, FaultConfig::CLEAN, 1, 1);
    // Room for many requests in, but only two replies (or 1 KiB) out at a time.
    let socket = net.server.sockets.add(udp::Socket::new(
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 32], vec![0; 32 * 1024]),
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 2], vec![0; 1024]),
    ));
    let mut server = UdpService::<_, 1500>::new(socket, 7, UdpEcho);
    let datagrams: Vec<Vec<u8>> = (0..12).map(|i| bytes(400 + i)).collect();
    let mut client = UdpBurst::new(&mut net, (SERVER_V4, 7), datagrams.clone());
    net.run_services(&mut server, &mut client, LIMIT, |_, client, _| {
        (client.got.len() == datagrams.len()).then_some(())
    })
    .unwrap();
    assert!(client.got == datagrams);
    let stats = server.stats();
    assert!(stats.send_full > 0, "{stats}");
    assert_eq!((stats.datagrams_out, stats.send_errors), (12, 0), "{stats}");
}

#[test]
fn udp_replies_go_back_to_each_sender() {
    let mut net = sim(803, FaultConfig::CLEAN, 1, 2);
    let socket = net.server.sockets.add(udp_socket(16, 16 * 1024));
    let mut server = UdpService::<_, 1500>::new(socket, 7, UdpEcho);
    let a = UdpBurst::new(
        &mut net,
        (SERVER_V4, 7),
        (0..5).map(|i| vec![b'a'; i]).collect(),
    );
    let mut b = UdpBurst::new(
        &mut net,
        (SERVER_V4, 7),
        (0..5).map(|i| vec![b'b'; i + 1]).collect(),
    );
    b.local_port = 40_002;
    let mut both = Pair(a, b);
    net.run_services(&mut server, &mut both, LIMIT, |_, Pair(a, b), _| {
        (a.got.len() == 5 && b.got.len() == 5).then_some(())
    })
    .unwrap();
    let Pair(a, b) = both;
    assert!(a.got == a.datagrams && b.got == b.datagrams);
}

#[test]
fn a_reply_that_can_never_leave_does_not_block_replies_to_others() {
    // A neighbour that never answers ARP, and an address with no route back.
    for forged in [
        Ipv4Address::new(10, 0, 0, 99),
        Ipv4Address::new(192, 168, 5, 5),
    ] {
        let mut net = sim(804, FaultConfig::CLEAN, 1, 1);
        let socket = net.server.sockets.add(udp_socket(16, 16 * 1024));
        let mut server = UdpService::<_, 1500>::new(socket, 7, UdpEcho);
        let now = net.now();
        server.poll(&mut net.server.sockets, now);
        net.inject_frame(
            Direction::ClientToServer,
            &forged_udp(forged, 5555, 7, b"from nowhere"),
        );
        // A client that sends again when no echo comes, as UDP clients must.
        let mut client = UdpWindow::new(&mut net, (SERVER_V4, 7), frames(5, 100));
        net.run_services(&mut server, &mut client, LIMIT, |_, client, _| {
            client.done().then_some(())
        })
        .unwrap_or_else(|e| panic!("{forged}: {e}: {}", server.stats()));
        assert!(client.strays.is_empty(), "{forged}");
        // Held up while the stuck reply blocked the queue, not for good.
        assert!(net.now() < Instant::from_secs(5), "{forged}: {}", net.now());
        assert_eq!(server.stats().stuck_flushes, 1, "{forged}");
    }
}

#[test]
fn datagrams_waiting_to_be_read_when_the_stuck_queue_is_emptied_are_counted() {
    // Two slots each way. Five datagrams from a neighbour that never answers
    // ARP, one at a time: two echoes fill the send queue, the third waits in
    // the service, and the last two wait in the socket to be read.
    let mut net = sim(804, FaultConfig::CLEAN, 1, 1);
    let socket = net.server.sockets.add(udp_socket(2, 4096));
    let mut server = UdpService::<_, 1500>::new(socket, 7, UdpEcho);
    let now = net.now();
    server.poll(&mut net.server.sockets, now);
    for n in 0..5u8 {
        net.inject_frame(
            Direction::ClientToServer,
            &forged_udp(Ipv4Address::new(10, 0, 0, 99), 5555, 7, &[n]),
        );
        net.poll();
        let now = net.now();
        server.poll(&mut net.server.sockets, now);
    }
    assert_eq!(server.stats().datagrams_in, 3, "{}", server.stats());
    // Emptying the stuck queue closes the socket: the two unread go with it.
    net.run_services(&mut server, &mut (), LIMIT, |server, _, _| {
        (server.stats().stuck_flushes > 0).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {}", server.stats()));
    let stats = server.stats();
    assert_eq!(
        (stats.datagrams_in, stats.unread_dropped),
        (3, 2),
        "{stats}"
    );
}

#[test]
fn empty_replies_that_can_never_leave_do_not_block_the_service_for_good() {
    let mut net = sim(804, FaultConfig::CLEAN, 1, 1);
    let socket = net.server.sockets.add(udp_socket(16, 16 * 1024));
    let mut server = UdpService::<_, 1500>::new(socket, 7, UdpEcho);
    let now = net.now();
    server.poll(&mut net.server.sockets, now);
    // Their echoes are empty: they take every slot of the send queue but none
    // of its bytes.
    for _ in 0..20 {
        net.inject_frame(
            Direction::ClientToServer,
            &forged_udp(Ipv4Address::new(10, 0, 0, 99), 5555, 7, b""),
        );
    }
    let mut client = UdpWindow::new(&mut net, (SERVER_V4, 7), frames(5, 100));
    net.run_services(
        &mut server,
        &mut client,
        Duration::from_secs(60),
        |_, client, _| client.done().then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}: {}", server.stats()));
    assert!(client.strays.is_empty(), "{:?}", client.strays);
    let stats = server.stats();
    // Held up while the stuck echoes took every slot, not for good.
    assert!(net.now() < Instant::from_secs(5), "{}: {stats}", net.now());
    // Every datagram read had its echo handed to the socket; one flush dropped
    // the 16 that could never leave.
    assert_eq!(stats.stuck_flushes, 1, "{stats}");
    assert_eq!(
        (stats.datagrams_out, stats.send_errors),
        (stats.datagrams_in, 0),
        "{stats}"
    );
    // The client's first echo waited 3 s behind them, many polls: a reply that
    // waits is counted once.
    assert!(
        (1..=stats.datagrams_out).contains(&stats.send_full),
        "{stats}"
    );
}

#[test]
fn a_reply_length_over_the_buffer_is_refused_not_cut() {
    struct Claims;
    impl smolsock::net::DatagramHandler for Claims {
        fn on_datagram(
            &mut self,
            _buf: &mut [u8],
            len: usize,
            _from: smoltcp::wire::IpEndpoint,
        ) -> Option<usize> {
            Some(len + 1000)
        }
    }
    let mut net = sim(805, FaultConfig::CLEAN, 1, 1);
    let socket = net.server.sockets.add(udp_socket(16, 16 * 1024));
    let mut server = UdpService::<_, 512>::new(socket, 7, Claims);
    let mut client = UdpBurst::new(&mut net, (SERVER_V4, 7), vec![bytes(100)]);
    let _ = net.run_services(
        &mut server,
        &mut client,
        Duration::from_secs(2),
        |_, client, _| (!client.got.is_empty()).then_some(()),
    );
    assert!(client.got.is_empty(), "{:?}", client.got);
    let stats = server.stats();
    assert_eq!((stats.datagrams_out, stats.bytes_out), (0, 0), "{stats}");
    // Read, answered with a length the buffer cannot hold: counted as a reply
    // that could not be sent.
    assert_eq!((stats.datagrams_in, stats.send_errors), (1, 1), "{stats}");
}

/// Answers each datagram with as many bytes as its first two say (big-endian).
struct Asks;

impl smolsock::net::DatagramHandler for Asks {
    fn on_datagram(
        &mut self,
        buf: &mut [u8],
        len: usize,
        _from: smoltcp::wire::IpEndpoint,
    ) -> Option<usize> {
        let want = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
        (len >= 2).then_some(want)
    }
}

fn asking(len: u16) -> Vec<u8> {
    len.to_be_bytes().to_vec()
}

#[test]
fn a_reply_longer_than_the_link_carries_is_refused_and_counted_once_the_mtu_is_known() {
    // smoltcp does not fragment: a reply over the link's 1,500-byte IP MTU
    // less 28 (IPv4) or 48 (IPv6) bytes is dropped on the way out, uncounted.
    for (told, server_addr, longest) in [
        (false, IpAddress::from(SERVER_V4), 1472),
        (true, IpAddress::from(SERVER_V4), 1472),
        (true, IpAddress::from(SERVER_V6), 1452),
    ] {
        let mut net = sim(806, FaultConfig::CLEAN, 1, 1);
        let socket = net.server.sockets.add(udp_socket(16, 16 * 1024));
        let mut server = UdpService::<_, 4096>::new(socket, 7, Asks);
        if told {
            server = server.with_link_mtu(1500);
        }
        let asked = vec![asking(longest), asking(longest + 1), asking(10)];
        let mut client = UdpBurst::new(&mut net, (server_addr, 7), asked);
        let _ = net.run_services(
            &mut server,
            &mut client,
            Duration::from_secs(2),
            |_, client, _| (client.got.len() == 2).then_some(()),
        );
        let lengths: Vec<usize> = client.got.iter().map(Vec::len).collect();
        assert_eq!(lengths, [longest as usize, 10], "told {told}");
        let stats = server.stats();
        if told {
            // The one too long for the link: refused, and said so.
            assert_eq!((stats.datagrams_out, stats.send_errors), (2, 1), "{stats}");
        } else {
            // Counted sent, and lost on the way out: what the MTU prevents.
            assert_eq!((stats.datagrams_out, stats.send_errors), (3, 0), "{stats}");
        }
    }
}

// ---------------------------------------------------------------------------
// Tracing a server: each slot records under the connection it serves.

/// One trace the server's slots share, in the order things happen.
#[derive(Clone, Default)]
struct SharedSink(std::rc::Rc<std::cell::RefCell<Vec<Record>>>);

impl TraceSink for SharedSink {
    fn record(&mut self, record: Record) {
        self.0.borrow_mut().push(record);
    }
}

#[test]
fn a_traced_pool_records_each_connection_under_its_own_ports() {
    let mut net = sim(601, FaultConfig::CLEAN, 2, 2);
    let sink = SharedSink::default();
    // The slots do not know their peers: the poll loop tells each its socket's
    // ports, and the probe records under them.
    let sessions: [_; 2] = core::array::from_fn(|_| {
        Framed::new(FramedEcho::new(), [0u8; 1028], [0u8; 1028], format())
            .unwrap()
            .traced(Probe::new(Conn::new(9000, 0), sink.clone()))
    });
    let mut server = serve(&mut net, 9000, (2048, 2048), sessions, SERVER);
    let mut ports = PortAllocator::new(601);
    let mut one = framed_client(&mut net, frames(30, MAX_FRAME as usize));
    let mut two = framed_client(&mut net, frames(12, MAX_FRAME as usize));
    one.connect(&mut net, (SERVER_V4, 9000), &mut ports);
    two.connect(&mut net, (SERVER_V4, 9000), &mut ports);
    let mut both = Pair(one, two);
    net.run_services(&mut server, &mut both, LIMIT, |_, Pair(one, two), _| {
        (one.done() && two.done()).then_some(())
    })
    .unwrap();
    let Pair(mut one, mut two) = both;
    let records = sink.0.borrow().clone();
    let mut frames_seen = 0;
    for (client, sent) in [(&mut one, 30u64), (&mut two, 12)] {
        let port = client.socket(&mut net).local_endpoint().unwrap().port;
        let tally = Tally::of(records.iter(), Conn::new(9000, port));
        assert_eq!(
            tally.frames, sent,
            "port {port}: every frame, under its ports"
        );
        assert!(tally.reads > 0 && tally.sends > 0, "{tally:?}");
        assert!(tally.samples > 0, "the poll loop sampled the buffers");
        assert_eq!(tally.out_of_order, 0);
        frames_seen += tally.frames;
    }
    // Nothing was recorded under the name the slots started with.
    assert_eq!(Tally::of(records.iter(), Conn::new(9000, 0)).frames, 0);
    let counted: u64 = server
        .sessions()
        .iter()
        .map(|s| s.stats().read.frames)
        .sum();
    assert_eq!(frames_seen, counted);
}

/// Answers the first bytes it gets with `len` bytes of its own, all handed to
/// the socket at once, then closes (`close`) or waits for more (keep-alive).
struct Reply {
    len: usize,
    close: bool,
    sent: usize,
    asked: bool,
}

impl Reply {
    fn new(len: usize, close: bool) -> Self {
        Self {
            len,
            close,
            sent: 0,
            asked: false,
        }
    }
}

impl Session for Reply {
    fn start(&mut self, _now: smolsock::time::Instant) {
        (self.sent, self.asked) = (0, false);
    }

    fn receive(&mut self, input: &[u8], _now: smolsock::time::Instant) -> usize {
        self.asked |= !input.is_empty();
        input.len()
    }

    fn receive_finished(&mut self, _now: smolsock::time::Instant) {}

    fn transmit(&mut self, space: &mut [u8], _now: smolsock::time::Instant) -> usize {
        let n = if self.asked {
            space.len().min(self.len - self.sent)
        } else {
            0
        };
        space[..n].fill(0x42);
        self.sent += n;
        n
    }

    fn status(&self) -> Status {
        if self.close && self.asked && self.sent == self.len {
            Status::Close
        } else {
            Status::Open
        }
    }
}

const REPLY: usize = 32 * 1024;

/// A server of one [`Reply`] slot on port 7 (2 KiB receive buffer, `tx` bytes
/// of send buffer, `config`), and a client with a receive window of `window`
/// bytes connecting to it from port 49152.
fn reply_to(
    net: &mut Net,
    reply: Reply,
    tx: usize,
    config: ServerConfig,
    window: usize,
) -> (TcpServer<Recording<Reply>, 1>, SocketHandle) {
    let server = serve(net, 7, (2048, tx), [Recording::new(reply)], config);
    let client = net.client.sockets.add(tcp_socket(window, 1024));
    let (socket, cx) = net
        .client
        .socket_and_context::<tcp::Socket>(client)
        .unwrap();
    socket.connect(cx, (SERVER_V4, 7), 49152).unwrap();
    (server, client)
}

/// A server of one [`Reply`] slot whose send buffer holds the whole reply, and
/// a client with a 2 KiB window that asks, then reads 1 KiB every 300 ms (11 s
/// for the reply, longer than the server's 5 s deadlines) and closes once it
/// has everything and the server's FIN. Returns the bytes it got.
fn read_slowly(close: bool) -> (usize, ServerStats, Vec<End>) {
    let mut net = sim(610, FaultConfig::CLEAN, 1, 1);
    let config = ServerConfig {
        idle_timeout: Some(smolsock::time::Duration::from_secs(5)),
        close_timeout: smolsock::time::Duration::from_secs(5),
        ..SERVER
    };
    let reply = Reply::new(REPLY, close);
    let (mut server, client) = reply_to(&mut net, reply, REPLY, config, 2048);
    let (mut got, mut asked, mut next_read) = (0, false, net.now());
    net.run_services(&mut server, &mut (), LIMIT, |server, _, net| {
        let now = net.now();
        let socket = net.client.sockets.get_mut::<tcp::Socket>(client);
        if socket.may_send() && !asked {
            socket.send_slice(b"?").unwrap();
            asked = true;
        }
        if now >= next_read && socket.can_recv() {
            got += socket.recv_slice(&mut [0; 1024]).unwrap();
            next_read = now + Duration::from_millis(300);
        }
        if got == REPLY && !socket.may_recv() {
            socket.close();
        }
        let done = if close {
            server.active() == 0
        } else {
            got == REPLY || server.active() == 0
        };
        done.then_some(())
    })
    .unwrap();
    (got, *server.stats(), ends(&server))
}

#[test]
fn a_client_reading_its_answer_slowly_after_the_server_closed_gets_all_of_it() {
    // The close deadline counts again from each KiB the peer acknowledged (or
    // the rest), not only from the close: a reader is not cut off, a stalled
    // one still would be.
    let (got, stats, ends) = read_slowly(true);
    assert_eq!(got, REPLY, "{stats}");
    assert_eq!(ends, [End::Closed], "{stats}");
}

#[test]
fn a_client_reading_its_answer_slowly_is_not_reset_as_idle() {
    // Its acknowledgments are progress: the idle deadline waits.
    let (got, stats, ends) = read_slowly(false);
    assert_eq!(got, REPLY, "{stats}");
    assert!(ends.is_empty(), "{ends:?}, {stats}");
    assert_eq!(stats.idle_timeouts, 0);
}

#[test]
fn a_reset_while_the_server_closes_with_bytes_unsent_is_counted_a_reset() {
    let mut net = sim(611, FaultConfig::CLEAN, 1, 1);
    let reply = Reply::new(REPLY, true);
    let (mut server, client) = reply_to(&mut net, reply, REPLY, SERVER, 2048);
    // The client asks, reads nothing, and a second later gives up with a RST.
    let mut asked_at = None;
    net.run_services(&mut server, &mut (), LIMIT, |server, _, net| {
        let now = net.now();
        let socket = net.client.sockets.get_mut::<tcp::Socket>(client);
        match asked_at {
            None if socket.may_send() => {
                socket.send_slice(b"?").unwrap();
                asked_at = Some(now);
            }
            Some(at) if now >= at + Duration::from_secs(1) && socket.is_open() => socket.abort(),
            _ => {}
        }
        (server.stats().accepted == 1 && server.active() == 0).then_some(())
    })
    .unwrap();
    let stats = *server.stats();
    assert_eq!(ends(&server), [End::Reset], "{stats}");
    assert_eq!((stats.closed, stats.resets), (0, 1));
}

#[test]
fn a_client_taking_its_answer_a_byte_at_a_time_is_reset_after_one_timeout() {
    // A 1-byte window, a byte read every 4.5 s: each acknowledgment moves
    // something, but not enough to earn another 5 s, so the slot is freed;
    // also when the answer is longer than the send buffer, and the session
    // refills each byte the peer takes.
    for (close, len) in [(true, 2048), (false, 2048), (false, 16 * 1024)] {
        let mut net = sim(612, FaultConfig::CLEAN, 1, 1);
        let config = ServerConfig {
            idle_timeout: Some(smolsock::time::Duration::from_secs(5)),
            close_timeout: smolsock::time::Duration::from_secs(5),
            ..SERVER
        };
        let reply = Reply::new(len, close);
        let (mut server, client) = reply_to(&mut net, reply, 2048, config, 1);
        let (mut got, mut asked_at, mut next_read) = (0, None, net.now());
        let freed_at = net
            .run_services(&mut server, &mut (), LIMIT, |server, _, net| {
                let now = net.now();
                let socket = net.client.sockets.get_mut::<tcp::Socket>(client);
                if socket.may_send() && asked_at.is_none() {
                    socket.send_slice(b"?").unwrap();
                    asked_at = Some(now);
                }
                if now >= next_read && socket.can_recv() {
                    got += socket.recv_slice(&mut [0; 1]).unwrap();
                    next_read = now + Duration::from_millis(4500);
                }
                let freed = asked_at.is_some() && server.active() == 0;
                freed.then_some(now)
            })
            .unwrap();
        let held = freed_at - asked_at.unwrap();
        let stats = *server.stats();
        let end = if close {
            End::CloseTimeout
        } else {
            End::IdleTimeout
        };
        assert_eq!(ends(&server), [end], "{len} B: {stats}");
        assert!(got < 2048, "it took {got} bytes");
        assert!(
            held < Duration::from_secs(11),
            "{len} B: held {held} ({stats})"
        );
    }
}

/// Hands out `len` bytes, then closes; takes and counts whatever arrives.
struct Upload {
    len: usize,
    sent: usize,
    received: usize,
}

impl Session for Upload {
    fn start(&mut self, _now: smolsock::time::Instant) {
        self.sent = 0;
    }

    fn receive(&mut self, input: &[u8], _now: smolsock::time::Instant) -> usize {
        self.received += input.len();
        input.len()
    }

    fn receive_finished(&mut self, _now: smolsock::time::Instant) {}

    fn transmit(&mut self, space: &mut [u8], _now: smolsock::time::Instant) -> usize {
        let n = space.len().min(self.len - self.sent);
        space[..n].fill(7);
        self.sent += n;
        n
    }

    fn status(&self) -> Status {
        if self.sent == self.len {
            Status::Close
        } else {
            Status::Open
        }
    }
}

/// A server socket listening on tcp/7 with a receive window of `window`, and a
/// client connecting to it whose `TcpSession` runs `session`: the server's
/// socket, the client's, its `TcpClient` and its session.
fn client_session<S: Session>(
    net: &mut Net,
    seed: u64,
    window: usize,
    session: S,
) -> (SocketHandle, SocketHandle, TcpClient, TcpSession<S>) {
    let server = bare_listener(net, (window, 256));
    let (handle, client) = connect_client(net, seed, (1024, 8192));
    (server, handle, client, TcpSession::new(handle, session))
}

/// [`client_session`] with a session that hands out `len` bytes and closes.
fn upload_client(
    net: &mut Net,
    seed: u64,
    window: usize,
    len: usize,
) -> (SocketHandle, SocketHandle, TcpClient, TcpSession<Upload>) {
    let session = Upload {
        len,
        sent: 0,
        received: 0,
    };
    client_session(net, seed, window, session)
}

/// Sends 100 bytes, and one more once it sees (in `observe`) the first 100
/// acknowledged: a session that paces itself by its socket's buffers.
struct Paced {
    sent: usize,
    pending: bool,
}

impl Session for Paced {
    fn start(&mut self, _now: smolsock::time::Instant) {}

    fn receive(&mut self, input: &[u8], _now: smolsock::time::Instant) -> usize {
        input.len()
    }

    fn receive_finished(&mut self, _now: smolsock::time::Instant) {}

    fn transmit(&mut self, space: &mut [u8], _now: smolsock::time::Instant) -> usize {
        let n = match (self.sent, self.pending) {
            (0, _) => 100,
            (_, true) => 1,
            _ => 0,
        }
        .min(space.len());
        space[..n].fill(b'x');
        self.sent += n;
        self.pending = false;
        n
    }

    fn wants_transmit(&self) -> bool {
        self.sent == 0 || self.pending
    }

    fn status(&self) -> Status {
        Status::Open
    }

    fn observe(&mut self, levels: smolsock::trace::Levels, _now: smolsock::time::Instant) {
        if self.sent == 100 && levels.send_queued == 0 {
            self.pending = true;
        }
    }
}

#[test]
fn a_poll_sends_what_the_session_s_observe_gave_it_to_send() {
    // The byte `observe` asks for goes out in the same poll, as it would from
    // any poll that moved bytes: a loop that polls only when something happens
    // would otherwise never send it.
    let mut net = sim(617, FaultConfig::CLEAN, 1, 1);
    let paced = Paced {
        sent: 0,
        pending: false,
    };
    let (server, handle, mut client, mut conn) = client_session(&mut net, 617, 1024, paced);
    net.run_until(LIMIT, |net| {
        let now = net.now();
        let socket = net.client.sockets.get_mut::<tcp::Socket>(handle);
        if client.poll(socket, now) != ClientState::Connected {
            return None;
        }
        conn.poll(&mut net.client.sockets, now).unwrap();
        assert!(
            !conn.session().pending,
            "a poll at {now} left unsent the byte its observe asked for"
        );
        (net.server.sockets.get::<tcp::Socket>(server).recv_queue() == 101).then_some(())
    })
    .unwrap();
}

#[test]
fn a_session_reset_while_closing_with_bytes_unacknowledged_reports_abort() {
    // The session hands all 8000 bytes to its socket and says Close; the peer,
    // with a 256-byte window it never reads, resets the connection 100 ms later.
    let mut net = sim(613, FaultConfig::CLEAN, 1, 1);
    let (server, handle, mut client, mut conn) = upload_client(&mut net, 613, 256, 8000);
    let mut closed_at = None;
    let status = net
        .run_until(LIMIT, |net| {
            let now = net.now();
            let socket = net.client.sockets.get_mut::<tcp::Socket>(handle);
            if client.poll(socket, now) != ClientState::Connected {
                return None;
            }
            let status = conn.poll(&mut net.client.sockets, now).unwrap();
            if status == Status::Close {
                closed_at.get_or_insert(now);
            }
            if closed_at.is_some_and(|at| now >= at + Duration::from_millis(100)) {
                let peer = net.server.sockets.get_mut::<tcp::Socket>(server);
                if peer.is_open() {
                    peer.abort();
                }
            }
            conn.is_ended().then_some(status)
        })
        .unwrap();
    let unacked = net.client.sockets.get::<tcp::Socket>(handle).send_queue();
    assert!(unacked > 4000, "{unacked} bytes unacknowledged");
    assert_eq!(
        status,
        Status::Abort,
        "{unacked} of 8000 bytes never delivered"
    );
    // And so it stays on later polls.
    let now = net.now();
    assert_eq!(conn.poll(&mut net.client.sockets, now), Ok(Status::Abort));
}

#[test]
fn a_session_reset_with_bytes_it_cannot_take_reports_abort_at_the_close_timeout() {
    // The peer sends to the client's echo and reads nothing back, so the echo
    // fills its socket's send buffer and its own, then the receive ring; 10 s
    // in, the peer resets. The echo's answers can no longer leave, so the
    // bytes left in the ring can never be taken: the session must not stay
    // open on them.
    let mut net = sim(618, FaultConfig::CLEAN, 1, 1);
    let (server, handle, mut client, mut conn) = client_session(&mut net, 618, 512, Echo::new());
    let mut connected = false;
    let mut reset_at = None;
    let (status, ended_at) = net
        .run_until(Duration::from_secs(120), |net| {
            let now = net.now();
            let peer = net.server.sockets.get_mut::<tcp::Socket>(server);
            if reset_at.is_none() && peer.may_send() {
                let _ = peer.send_slice(&[b'x'; 256]);
                if now >= Instant::from_secs(10) {
                    peer.abort();
                    reset_at = Some(now);
                }
            }
            let socket = net.client.sockets.get_mut::<tcp::Socket>(handle);
            connected |= client.poll(socket, now) == ClientState::Connected;
            if !connected {
                return None;
            }
            let status = conn.poll(&mut net.client.sockets, now).unwrap();
            (status != Status::Open).then_some((status, now))
        })
        .unwrap_or_else(|e| panic!("{e}: the session stayed open on a reset socket"));
    let socket = net.client.sockets.get::<tcp::Socket>(handle);
    let reset_at = reset_at.expect("the peer reset the connection");
    assert_eq!(socket.state(), tcp::State::Closed);
    assert!(socket.recv_queue() > 0, "nothing was left unread");
    assert_eq!(status, Status::Abort);
    // It had the close timeout to take them (20 s by default), no more.
    let waited = ended_at - reset_at;
    assert!(
        (Duration::from_secs(20)..Duration::from_secs(21)).contains(&waited),
        "ended {waited} after the reset"
    );
    assert!(conn.is_ended());
}

#[test]
fn a_framed_client_whose_peer_stalled_closes_cleanly_when_the_peer_then_finishes() {
    // The peer sends a header and one byte of a 1000-byte frame and is silent
    // past the frame deadline; on our FIN it sends the rest of the frame and
    // its own FIN. No longer a frame, those bytes are read and dropped
    // (counted), and the close is clean.
    let mut net = sim(731, FaultConfig::CLEAN, 1, 1);
    let format = HeaderFormat::NETWORK.with_max_len(1000).unwrap();
    let framed = Framed::new((), [0u8; 1004], [0u8; 1004], format).unwrap();
    let (server, handle, mut client, mut conn) = client_session(&mut net, 731, 4096, framed);
    let (mut connected, mut head_sent, mut rest) = (false, false, 999usize);
    let status = net
        .run_until(Duration::from_secs(300), |net| {
            let now = net.now();
            let peer = net.server.sockets.get_mut::<tcp::Socket>(server);
            if peer.may_send() && !head_sent {
                let head = [0, 0, 0x03, 0xe8, 0];
                head_sent = peer.send_slice(&head) == Ok(head.len());
            }
            // Our FIN came: the rest of the frame, then the peer's FIN.
            if head_sent && rest > 0 && !peer.may_recv() && peer.may_send() {
                rest -= peer.send_slice(&vec![0u8; rest]).unwrap_or(0);
                if rest == 0 {
                    peer.close();
                }
            }
            let socket = net.client.sockets.get_mut::<tcp::Socket>(handle);
            connected |= client.poll(socket, now) == ClientState::Connected;
            if !connected {
                return None;
            }
            let status = conn.poll(&mut net.client.sockets, now).unwrap();
            conn.is_ended().then_some(status)
        })
        .unwrap();
    let framed = conn.session();
    assert_eq!(rest, 0, "the peer never saw our FIN");
    assert!(matches!(framed.error(), Some(ReadError::Stalled { .. })));
    let read = framed.stats().read;
    assert_eq!((read.stalled, read.discarded), (1, 999));
    assert_eq!(status, Status::Close, "a clean close after the stall");
}

/// An echo (2 KiB receive and 512 B send buffer) and a client that sends it
/// 6000 bytes over 2 s and reads none of the echo: the server's send buffer
/// is full, the echo holds the rest. Gives the server, the client's socket,
/// the bytes and how many the client's socket took.
fn echo_answering_a_deaf_client(
    net: &mut Net,
) -> (TcpServer<Recording<Echo>, 1>, SocketHandle, Vec<u8>, usize) {
    let sessions = [Recording::new(Echo::new())];
    let mut server = serve(net, 7, (2048, 512), sessions, SERVER);
    let client = net.client.sockets.add(tcp_socket(512, 8192));
    let (socket, cx) = net
        .client
        .socket_and_context::<tcp::Socket>(client)
        .unwrap();
    socket.connect(cx, (SERVER_V4, 7), 49152).unwrap();
    let data = bytes(6000);
    let mut sent = 0;
    net.run_services(&mut server, &mut (), Duration::from_secs(2), |_, _, net| {
        let socket = net.client.sockets.get_mut::<tcp::Socket>(client);
        if socket.may_send() {
            sent += socket.send_slice(&data[sent..]).unwrap_or(0);
        }
        None::<()>
    })
    .unwrap_err();
    (server, client, data, sent)
}

/// The client reads everything and closes once the server has, until the
/// server's slots are free; gives what it read.
fn read_until_the_server_is_done<S: Session, const N: usize>(
    net: &mut Net,
    server: &mut TcpServer<S, N>,
    client: SocketHandle,
) -> Vec<u8> {
    let mut back = Vec::new();
    net.run_services(server, &mut (), LIMIT, |server, _, net| {
        let socket = net.client.sockets.get_mut::<tcp::Socket>(client);
        let mut buf = [0; 1024];
        while let Ok(n @ 1..) = socket.recv_slice(&mut buf) {
            back.extend_from_slice(&buf[..n]);
        }
        if !socket.may_recv() && socket.is_open() {
            socket.close();
        }
        (server.active() == 0).then_some(())
    })
    .unwrap();
    back
}

#[test]
fn close_all_sends_what_each_session_holds_before_the_fin() {
    // A client sends 6000 bytes to the echo and reads none for 2 s: the echo's
    // 1 KiB waits behind a full send buffer when the server shuts down. Then the
    // client reads everything and closes once the server has.
    let mut net = sim(614, FaultConfig::CLEAN, 1, 1);
    let (mut server, client, data, sent) = echo_answering_a_deaf_client(&mut net);
    let now = net.now();
    server.close_all(&mut net.server.sockets, now);
    let back = read_until_the_server_is_done(&mut net, &mut server, client);
    let stats = *server.stats();
    let took = sent - net.client.sockets.get::<tcp::Socket>(client).send_queue();
    assert_eq!(ends(&server), [End::Closed], "{stats}");
    // Every byte the echo took came back; what arrived after the shutdown was
    // read and dropped, and counted.
    assert!(
        back == data[..back.len()],
        "{} B back, not as sent",
        back.len()
    );
    assert_eq!(
        back.len() as u64 + stats.discarded,
        took as u64,
        "the server took {took} B, echoed {} B, dropped {} B",
        back.len(),
        stats.discarded
    );
}

/// Starts each connection holding 20 records of 100 B, and hands them out only
/// whole: it writes fewer bytes than the space offered, and still holds some.
struct Records {
    held: usize,
}

impl Session for Records {
    fn start(&mut self, _now: smolsock::time::Instant) {
        self.held = 20;
    }

    fn receive(&mut self, input: &[u8], _now: smolsock::time::Instant) -> usize {
        input.len()
    }

    fn receive_finished(&mut self, _now: smolsock::time::Instant) {}

    fn transmit(&mut self, space: &mut [u8], _now: smolsock::time::Instant) -> usize {
        let n = (space.len() / 100).min(self.held);
        self.held -= n;
        space[..n * 100].fill(b'r');
        n * 100
    }

    fn wants_transmit(&self) -> bool {
        self.held > 0
    }

    fn status(&self) -> Status {
        Status::Open
    }
}

#[test]
fn close_all_sends_every_record_a_session_holds_before_the_fin() {
    // The session's 2000 B wait behind a client that reads nothing for 2 s; its
    // send buffer keeps room for less than a record, so room is left while it
    // still holds records. Then the client reads everything.
    let mut net = sim(619, FaultConfig::CLEAN, 1, 1);
    let sessions = [Recording::new(Records { held: 0 })];
    let mut server = serve(&mut net, 7, (2048, 512), sessions, SERVER);
    let client = net.client.sockets.add(tcp_socket(256, 512));
    let (socket, cx) = net
        .client
        .socket_and_context::<tcp::Socket>(client)
        .unwrap();
    socket.connect(cx, (SERVER_V4, 7), 49152).unwrap();
    run_for(&mut net, &mut server, &mut (), Duration::from_secs(2));
    let now = net.now();
    server.close_all(&mut net.server.sockets, now);
    let back = read_until_the_server_is_done(&mut net, &mut server, client);
    let stats = *server.stats();
    assert_eq!(back.len(), 2000, "{stats}");
    assert!(back.iter().all(|&b| b == b'r'));
    assert_eq!(ends(&server), [End::Closed], "{stats}");
}

#[test]
fn close_all_resets_a_peer_that_takes_nothing_after_the_close_timeout() {
    // The echo holds bytes for a client that never reads: they cannot leave,
    // and the slot is freed at the close deadline, counted, not closed.
    let mut net = sim(617, FaultConfig::CLEAN, 1, 1);
    let (mut server, ..) = echo_answering_a_deaf_client(&mut net);
    let closed_at = net.now();
    server.close_all(&mut net.server.sockets, closed_at);
    let freed_at = net
        .run_services(&mut server, &mut (), LIMIT, |server, _, net| {
            (server.active() == 0).then(|| net.now())
        })
        .unwrap();
    let stats = *server.stats();
    assert_eq!(ends(&server), [End::CloseTimeout], "{stats}");
    let held = freed_at - closed_at;
    let deadline = Duration::from(SERVER.close_timeout);
    assert!(held <= deadline + Duration::from_secs(1), "held {held}");
}

#[test]
fn a_reset_after_the_peer_took_the_answer_and_our_fin_is_counted_a_reset() {
    // The client asks, takes the 100-byte answer and acknowledges the server's
    // FIN (FIN-WAIT-2), then resets instead of closing.
    let mut net = sim(615, FaultConfig::CLEAN, 1, 1);
    let (mut server, client) = reply_to(&mut net, Reply::new(100, true), 2048, SERVER, 4096);
    let handle = net.server.sockets.iter().next().map(|(h, _)| h).unwrap();
    let (mut asked, mut reset) = (false, false);
    net.run_services(&mut server, &mut (), LIMIT, |server, _, net| {
        let fin_wait_2 =
            net.server.sockets.get::<tcp::Socket>(handle).state() == tcp::State::FinWait2;
        let socket = net.client.sockets.get_mut::<tcp::Socket>(client);
        if socket.may_send() && !asked {
            socket.send_slice(b"?").unwrap();
            asked = true;
        }
        if fin_wait_2 && !reset {
            socket.abort();
            reset = true;
        }
        (reset && server.active() == 0).then_some(())
    })
    .unwrap();
    let stats = *server.stats();
    assert_eq!(ends(&server), [End::Reset], "{stats}");
    assert_eq!((stats.closed, stats.resets), (0, 1));
}

#[test]
fn a_client_that_closes_after_the_answer_and_our_fin_is_counted_closed() {
    // The same exchange with a FIN instead of the RST, and with the client's FIN
    // first: both are clean closes.
    for client_first in [false, true] {
        let mut net = sim(616, FaultConfig::CLEAN, 1, 1);
        let (mut server, client) = reply_to(&mut net, Reply::new(100, true), 2048, SERVER, 4096);
        let mut asked = false;
        net.run_services(&mut server, &mut (), LIMIT, |server, _, net| {
            let socket = net.client.sockets.get_mut::<tcp::Socket>(client);
            if socket.may_send() && !asked {
                socket.send_slice(b"?").unwrap();
                asked = true;
                if client_first {
                    socket.close();
                }
            }
            while let Ok(1..) = socket.recv_slice(&mut [0; 256]) {}
            if !socket.may_recv() && socket.is_open() {
                socket.close();
            }
            (asked && server.active() == 0).then_some(())
        })
        .unwrap();
        let stats = *server.stats();
        assert_eq!(ends(&server), [End::Closed], "{stats}");
    }
}

#[test]
fn a_peer_fin_then_a_reset_between_two_polls_is_counted_closed() {
    // The client takes the answer and the server's FIN, then closes; the
    // server's ACK of its FIN is lost, and the client, still in LAST-ACK,
    // resets. The server is not polled between: it never sees TIME-WAIT, only
    // CLOSED, yet the peer had closed cleanly.
    let mut net = sim(618, FaultConfig::CLEAN, 1, 1);
    let (mut server, client) = reply_to(&mut net, Reply::new(100, true), 2048, SERVER, 4096);
    let handle = net.server.sockets.iter().next().map(|(h, _)| h).unwrap();
    let state = |net: &Net| net.server.sockets.get::<tcp::Socket>(handle).state();
    let mut asked = false;
    net.run_services(&mut server, &mut (), LIMIT, |_, _, net| {
        let fin_wait_2 = state(net) == tcp::State::FinWait2;
        let socket = net.client.sockets.get_mut::<tcp::Socket>(client);
        if socket.may_send() && !asked {
            socket.send_slice(b"?").unwrap();
            asked = true;
        }
        while let Ok(1..) = socket.recv_slice(&mut [0; 256]) {}
        (fin_wait_2 && socket.state() == tcp::State::CloseWait).then_some(())
    })
    .unwrap();
    net.set_faults(
        Direction::ServerToClient,
        FaultConfig::CLEAN.with_loss(1000),
    );
    net.client.sockets.get_mut::<tcp::Socket>(client).close();
    net.run_until(LIMIT, |net| {
        (state(net) == tcp::State::TimeWait).then_some(())
    })
    .unwrap();
    net.client.sockets.get_mut::<tcp::Socket>(client).abort();
    net.run_until(LIMIT, |net| {
        (state(net) == tcp::State::Closed).then_some(())
    })
    .unwrap();
    net.run_services(&mut server, &mut (), LIMIT, |server, _, _| {
        (server.active() == 0).then_some(())
    })
    .unwrap();
    let stats = *server.stats();
    assert_eq!(ends(&server), [End::Closed], "{stats}");
}

/// A client's `TcpSession` whose session hands out `len` bytes and closes,
/// against a server socket (receive window `window`) that `peer` drives at
/// each step; `timeout` is the session's close timeout if set. Gives the
/// status the connection ended with, when the session said `Close`, when the
/// connection ended, and the bytes the session received.
fn close_against(
    seed: u64,
    len: usize,
    window: usize,
    timeout: Option<Duration>,
    mut peer: impl FnMut(&mut tcp::Socket<'_>, Instant),
) -> (Status, Instant, Instant, usize) {
    let mut net = sim(seed, FaultConfig::CLEAN, 1, 1);
    let (server, handle, mut client, mut conn) = upload_client(&mut net, seed, window, len);
    if let Some(timeout) = timeout {
        conn = conn.with_close_timeout(timeout.into());
    }
    let mut closed_at = None;
    net.run_until(LIMIT, |net| {
        let now = net.now();
        peer(net.server.sockets.get_mut::<tcp::Socket>(server), now);
        let socket = net.client.sockets.get_mut::<tcp::Socket>(handle);
        if client.poll(socket, now) != ClientState::Connected {
            return None;
        }
        let status = conn.poll(&mut net.client.sockets, now).unwrap();
        if status == Status::Close {
            closed_at.get_or_insert(now);
        }
        // The deadline is the session's to say: the loop wakes for it.
        if !conn.is_ended() {
            assert!(conn.poll_at().is_some() || closed_at.is_none());
        }
        conn.is_ended().then(|| {
            let received = conn.session().received;
            (status, closed_at.unwrap_or(now), now, received)
        })
    })
    .unwrap()
}

/// Reads and drops whatever the socket holds.
fn read_all(socket: &mut tcp::Socket<'_>) {
    while let Ok(n @ 1..) = socket.recv(|b| (b.len(), b.len())) {
        let _ = n;
    }
}

#[test]
fn a_closed_session_whose_peer_never_sends_its_fin_is_reset_at_the_close_timeout() {
    // The peer takes every byte and our FIN, and never closes: smoltcp would
    // keep the client's socket in FIN-WAIT-2 for ever.
    let (status, closed, ended, _) = close_against(615, 100, 1024, None, |peer, _| read_all(peer));
    let timeout = Duration::from_secs(20);
    assert_eq!(status, Status::Abort);
    assert!(
        ended >= closed + timeout && ended < closed + timeout + Duration::from_secs(1),
        "closed at {closed}, ended at {ended}"
    );
}

#[test]
fn a_closed_session_whose_peer_reads_nothing_is_reset_at_the_close_timeout() {
    // 8000 bytes against a 256-byte window the peer never reads.
    let timeout = Duration::from_secs(5);
    let (status, closed, ended, _) = close_against(616, 8000, 256, Some(timeout), |_, _| {});
    assert_eq!(status, Status::Abort);
    assert!(
        ended >= closed + timeout && ended < closed + timeout + Duration::from_secs(1),
        "closed at {closed}, ended at {ended}"
    );
}

#[test]
fn a_closed_session_whose_peer_reads_a_kilobyte_every_few_seconds_closes_clean() {
    // 8000 bytes, read a kilobyte every 3 s (about 24 s in all) with a close
    // timeout of 5 s: each kilobyte acknowledged puts the deadline off. The
    // peer closes once it has read everything and our FIN.
    let mut next = Instant::ZERO;
    let mut got = 0;
    let (status, closed, ended, _) = close_against(
        617,
        8000,
        1024,
        Some(Duration::from_secs(5)),
        |peer, now| {
            if now >= next && peer.can_recv() {
                got += peer
                    .recv(|b| (b.len().min(1024), b.len().min(1024)))
                    .unwrap();
                next = now + Duration::from_secs(3);
            }
            if got == 8000 && !peer.may_recv() && peer.may_send() {
                peer.close();
            }
        },
    );
    assert_eq!(status, Status::Close);
    assert!(
        ended > closed + Duration::from_secs(15),
        "closed at {closed}, ended at {ended}"
    );
}

#[test]
fn a_close_missing_only_the_ack_of_our_fin_ends_clean_at_the_close_timeout() {
    // The peer sends 100 bytes, takes the echo, then closes; the session
    // closes in turn (LAST-ACK), every byte of ours acknowledged. From then on
    // the link loses all the peer sends: the ACK of our FIN, and its answers to
    // the FINs smoltcp resends. The close timeout frees the socket; nothing
    // was lost, and the close is clean.
    let mut net = sim(632, FaultConfig::CLEAN, 1, 1);
    let (server, handle, mut client, mut conn) = client_session(&mut net, 632, 1024, Echo::new());
    let (mut sent, mut back) = (false, 0);
    let mut last_ack_at = None;
    let (status, ended) = net
        .run_until(LIMIT, |net| {
            let now = net.now();
            let peer = net.server.sockets.get_mut::<tcp::Socket>(server);
            if peer.may_send() && !sent {
                sent = peer.send_slice(&[7u8; 100]).unwrap() == 100;
            }
            while let Ok(n @ 1..) = peer.recv(|b| (b.len(), b.len())) {
                back += n;
            }
            if back == 100 && peer.may_send() {
                peer.close();
            }
            let socket = net.client.sockets.get_mut::<tcp::Socket>(handle);
            if client.poll(socket, now) != ClientState::Connected {
                return None;
            }
            let status = conn.poll(&mut net.client.sockets, now).unwrap();
            let socket = net.client.sockets.get::<tcp::Socket>(handle);
            if last_ack_at.is_none()
                && socket.state() == tcp::State::LastAck
                && socket.send_queue() == 0
            {
                last_ack_at = Some(now);
                net.set_faults(
                    Direction::ServerToClient,
                    FaultConfig::CLEAN.with_loss(1000),
                );
            }
            conn.is_ended().then_some((status, now))
        })
        .unwrap();
    let last_ack_at = last_ack_at.expect("the session's socket went through LAST-ACK");
    let timeout = Duration::from_secs(20);
    assert_eq!(back, 100);
    assert_eq!(status, Status::Close);
    assert!(
        ended >= last_ack_at + timeout && ended < last_ack_at + timeout + Duration::from_secs(1),
        "LAST-ACK at {last_ack_at}, ended at {ended}"
    );
}

/// Takes none of the peer's bytes, sends nothing, and closes once it has been
/// offered input (`offered`) or told to (`eager`).
struct Holder {
    offered: bool,
    eager: bool,
}

impl Session for Holder {
    fn start(&mut self, _now: smolsock::time::Instant) {}

    fn receive(&mut self, input: &[u8], _now: smolsock::time::Instant) -> usize {
        self.offered |= !input.is_empty();
        0
    }

    fn receive_finished(&mut self, _now: smolsock::time::Instant) {}

    fn transmit(&mut self, _space: &mut [u8], _now: smolsock::time::Instant) -> usize {
        0
    }

    fn status(&self) -> Status {
        if self.offered || self.eager {
            Status::Close
        } else {
            Status::Open
        }
    }
}

/// A `Holder` session on a client whose peer does `peer` at each step, over a
/// link of 5 ms each way. Once the client's socket is in LAST-ACK with nothing
/// of ours unacknowledged, the link loses all the peer sends if `lose`. Gives
/// the status the connection ended with, and the bytes the client's socket
/// held unread at that moment.
fn hold_until_closed(
    seed: u64,
    lose: bool,
    mut peer: impl FnMut(&mut tcp::Socket<'_>),
) -> (Status, usize) {
    let link = FaultConfig::CLEAN.with_delay(Duration::from_millis(5));
    let mut net = sim(seed, link, 1, 1);
    let session = Holder {
        offered: false,
        eager: false,
    };
    let (server, handle, mut client, mut conn) = client_session(&mut net, seed, 1024, session);
    let mut unread = None;
    let status = net
        .run_until(LIMIT, |net| {
            let now = net.now();
            peer(net.server.sockets.get_mut::<tcp::Socket>(server));
            let socket = net.client.sockets.get_mut::<tcp::Socket>(handle);
            if client.poll(socket, now) != ClientState::Connected {
                return None;
            }
            let status = conn.poll(&mut net.client.sockets, now).unwrap();
            let socket = net.client.sockets.get::<tcp::Socket>(handle);
            if unread.is_none() && socket.state() == tcp::State::LastAck && socket.send_queue() == 0
            {
                unread = Some(socket.recv_queue());
                if lose {
                    net.set_faults(Direction::ServerToClient, link.with_loss(1000));
                }
            }
            conn.is_ended().then_some(status)
        })
        .unwrap();
    (
        status,
        unread.expect("the client's socket reached the state"),
    )
}

#[test]
fn a_close_missing_the_ack_of_our_fin_with_the_peers_bytes_unread_is_lost() {
    // The peer sends 100 bytes and its FIN at once; the session takes none of
    // them and closes (LAST-ACK). Whether or not the peer's ACK of our FIN
    // comes, the 100 bytes are never read: the connection is lost both ways.
    for lose in [false, true] {
        let mut sent = false;
        let peer = |peer: &mut tcp::Socket<'_>| {
            if peer.may_send() && !sent {
                sent = peer.send_slice(&[7u8; 100]).unwrap() == 100;
                peer.close();
            }
        };
        let (status, unread) = hold_until_closed(633, lose, peer);
        assert_eq!(unread, 100);
        assert_eq!(status, Status::Abort, "the ACK of our FIN lost: {lose}");
    }
}

#[test]
fn a_simultaneous_close_missing_only_the_ack_of_our_fin_ends_clean_at_the_close_timeout() {
    // Nothing sent either way: both ends close in the same step, over a link of
    // 5 ms, so that each FIN crosses the other (CLOSING). From the next step,
    // once both FINs are out, the link loses all the peer sends, the ACK of
    // our FIN with it; nothing else was owed.
    let link = FaultConfig::CLEAN.with_delay(Duration::from_millis(5));
    let mut net = sim(634, link, 1, 1);
    let session = Holder {
        offered: false,
        eager: false,
    };
    let (server, handle, mut client, mut conn) = client_session(&mut net, 634, 1024, session);
    let (mut both_closed, mut closing) = (false, false);
    let status = net
        .run_until(LIMIT, |net| {
            let now = net.now();
            if both_closed && !closing {
                net.set_faults(Direction::ServerToClient, link.with_loss(1000));
            }
            let peer = net.server.sockets.get_mut::<tcp::Socket>(server);
            if peer.state() == tcp::State::Established {
                peer.close();
                conn.session_mut().eager = true;
            }
            let socket = net.client.sockets.get_mut::<tcp::Socket>(handle);
            if client.poll(socket, now) != ClientState::Connected {
                return None;
            }
            let status = conn.poll(&mut net.client.sockets, now).unwrap();
            let ours = net.client.sockets.get::<tcp::Socket>(handle).state();
            both_closed |= ours == tcp::State::FinWait1;
            closing |= ours == tcp::State::Closing;
            conn.is_ended().then_some(status)
        })
        .unwrap();
    assert!(closing, "the FINs crossed");
    assert_eq!(status, Status::Close);
}

#[test]
fn a_closed_session_whose_peer_resets_instead_of_sending_its_fin_reports_abort() {
    // The peer takes every byte and our FIN, then resets: nothing of ours was
    // lost, but the connection did not end cleanly (the peer's FIN never
    // came), as `TcpServer` counts it.
    let mut fin_at = None;
    let (status, ..) = close_against(618, 100, 1024, None, |peer, now| {
        read_all(peer);
        if peer.is_open() && !peer.may_recv() {
            // A second after our FIN: its ACK is long out.
            let at = *fin_at.get_or_insert(now);
            if now >= at + Duration::from_secs(1) {
                peer.abort();
            }
        }
    });
    assert_eq!(status, Status::Abort);
}

#[test]
fn a_half_closed_session_still_receiving_is_not_reset_at_the_close_timeout() {
    // The session sends its 100 bytes and closes its half (shutdown(SHUT_WR));
    // the peer then answers for 60 s, 256 bytes (its send buffer) every
    // 500 ms, and closes. The close timeout (5 s) counts from the last
    // progress, and every kilobyte received is progress: the answer arrives
    // whole and the close is clean.
    let mut next = Instant::ZERO;
    let mut answered = 0;
    let peer = |peer: &mut tcp::Socket<'_>, now: Instant| {
        read_all(peer);
        if !peer.may_recv() && answered < 30 * 1024 && now >= next && peer.can_send() {
            answered += peer.send_slice(&[1u8; 256]).unwrap();
            next = now + Duration::from_millis(500);
        }
        if answered == 30 * 1024 && peer.send_queue() == 0 && peer.may_send() {
            peer.close();
        }
    };
    let (status, closed, ended, received) =
        close_against(619, 100, 1024, Some(Duration::from_secs(5)), peer);
    assert_eq!(received, 30 * 1024);
    assert_eq!(status, Status::Close);
    assert!(
        ended > closed + Duration::from_secs(55),
        "closed at {closed}, ended at {ended}"
    );
}

#[test]
fn a_clean_close_first_seen_after_time_wait_ended_is_counted_closed() {
    // The server closes first; the client reads everything and closes too. The
    // pool is polled again only once the server's socket has left TIME-WAIT
    // (10 s in smoltcp, whose expiry forgets the FIN it received): the close
    // was clean all the same.
    let mut net = sim(630, FaultConfig::CLEAN, 1, 1);
    let (mut server, client) = reply_to(&mut net, Reply::new(100, true), 2048, SERVER, 2048);
    let mut asked = false;
    net.run_services(&mut server, &mut (), LIMIT, |_, _, net| {
        let socket = net.client.sockets.get_mut::<tcp::Socket>(client);
        if socket.may_send() && !asked {
            socket.send_slice(b"?").unwrap();
            asked = true;
        }
        while socket.can_recv() {
            socket.recv_slice(&mut [0; 1024]).unwrap();
        }
        if asked && !socket.may_recv() && socket.state() == tcp::State::CloseWait {
            socket.close();
            return Some(());
        }
        None
    })
    .unwrap();
    // The network runs on (our FIN, its ACK, TIME-WAIT) with no pool poll for 12 s.
    net.run_for(Duration::from_secs(12));
    assert!(!server_socket_in(&net, tcp::State::TimeWait));
    let now = net.now();
    server.poll(&mut net.server.sockets, now);
    let stats = *server.stats();
    assert_eq!(ends(&server), [End::Closed], "{stats}");
}

#[test]
fn a_held_syn_is_replayed_as_soon_as_the_backlog_asks_whatever_the_idle_step() {
    // A forged SYN takes the one listener; the client's SYN is held, and the
    // backlog evicts the forged handshake after 100 ms and replays it. The
    // backlog asks to be polled every 10 ms while it holds a SYN: with a long
    // idle step the client connects as soon as with the default one.
    let established_at = |max_idle_step: Duration| {
        let config = SimConfig::new(1).with_max_idle_step(max_idle_step);
        let mut net = sim_with(config, 2, 2);
        let listener = net.server.sockets.add(tcp_socket(4096, 4096));
        net.server
            .sockets
            .get_mut::<tcp::Socket>(listener)
            .listen(7)
            .unwrap();
        net.inject_frame(
            Direction::ClientToServer,
            &forged_syn(Ipv4Address::new(10, 0, 0, 9), 40000, 7),
        );
        net.poll();
        let client = net.client.sockets.add(tcp_socket(4096, 4096));
        let (socket, cx) = net
            .client
            .socket_and_context::<tcp::Socket>(client)
            .unwrap();
        socket.connect(cx, (SERVER_V4, 7), 49152).unwrap();
        net.run_until(Duration::from_secs(30), |net| {
            let server = net.server.sockets.get_mut::<tcp::Socket>(listener);
            if server.state() == tcp::State::Closed {
                server.listen(7).unwrap();
            }
            let state = net.client.sockets.get::<tcp::Socket>(client).state();
            (state == tcp::State::Established).then(|| net.now())
        })
        .unwrap()
    };
    let default_step = established_at(Duration::from_millis(10));
    let long_step = established_at(Duration::from_secs(1));
    assert!(
        long_step <= default_step + Duration::from_millis(10),
        "established at {long_step} with a 1 s idle step, {default_step} with 10 ms"
    );
}

/// A pool of two echo slots 300 ms (one way) from its clients, whose
/// addresses a first connection resolved. A host A (answering ARP) holds slot 0
/// in a handshake for `held`, then gives up (its RST, the exact sequence
/// number) as a client B connects: both reach the server in one interface poll
/// 300 ms later, and smoltcp hands B's SYN to slot 0, LISTEN again. Returns the
/// network, the pool and B, just connecting.
fn a_gives_way_to_b(seed: u64, held: Duration) -> (Net, TcpServer<Echo, 2>, Client<RawEcho>) {
    let link = FaultConfig::CLEAN.with_delay(Duration::from_millis(300));
    let mut net = sim(seed, link, 2, 2);
    let sessions = [Echo::new(), Echo::new()];
    let mut server: TcpServer<Echo, 2> = serve(&mut net, 7, (2048, 2048), sessions, SERVER);
    let mut ports = PortAllocator::new(seed);
    let mut first = echo_client(&mut net, 100).closing_when_done();
    first.connect(&mut net, (SERVER_V4, 7), &mut ports);
    net.run_services(&mut server, &mut first, LIMIT, |server, first, _| {
        (first.done() && server.stats().closed == 1 && server.free_slots() == 2).then_some(())
    })
    .unwrap();
    let a = Ipv4Address::new(10, 0, 0, 100);
    net.inject_frame(
        Direction::ClientToServer,
        &forged_arp(ArpOperation::Request, a),
    );
    net.inject_frame(
        Direction::ClientToServer,
        &forged_segment(a, 40000, 7, TcpControl::Syn, 1000),
    );
    net.run_services(&mut server, &mut (), LIMIT, |_, _, net| {
        server_socket_in(net, tcp::State::SynReceived).then_some(())
    })
    .unwrap();
    run_for(&mut net, &mut server, &mut (), held);
    net.inject_frame(
        Direction::ClientToServer,
        &forged_segment(a, 40000, 7, TcpControl::Rst, 1001),
    );
    let mut b = echo_client(&mut net, 100).closing_when_done();
    b.connect(&mut net, (SERVER_V4, 7), &mut ports);
    (net, server, b)
}

/// A's handshake holds slot 0 for 19.5 s before B's SYN takes it: had the
/// pool not seen that B's handshake is another one, B would inherit A's start and
/// be cut at A's deadline, half a second into its own 20 s.
#[test]
fn a_new_handshake_on_a_slot_does_not_inherit_the_age_of_the_one_before() {
    let (mut net, mut server, mut b) = a_gives_way_to_b(7001, Duration::from_millis(19_200));
    net.run_services(&mut server, &mut b, LIMIT, |_, b, _| {
        (b.state() != ClientState::Connecting).then_some(())
    })
    .unwrap();
    net.run_services(&mut server, &mut b, Duration::from_secs(5), |_, b, _| {
        b.done().then_some(())
    })
    .ok();
    let stats = *server.stats();
    assert_eq!(
        stats.handshake_timeouts, 0,
        "B's handshake was cut at A's deadline: {stats}"
    );
    assert!(b.done(), "B was not served: {:?}; {stats}", b.state());
}

/// The backlog's side of the same: had it kept a handshake's start by socket
/// alone, B's handshake would be as old as A's (over `EVICT_ALIVE_AFTER`) and
/// evicted by the next held SYN 10 ms into its own handshake.
#[test]
fn the_backlog_does_not_evict_a_fresh_handshake_as_old_as_the_one_before_on_its_socket() {
    let (mut net, mut server, mut b) = a_gives_way_to_b(7002, Duration::from_secs(5));
    // 1 ms later two SYNs from addresses never seen: one takes slot 1, the other
    // is held for the full pool.
    run_for(&mut net, &mut server, &mut b, Duration::from_millis(1));
    for host in [150, 151] {
        let src = Ipv4Address::new(10, 0, 0, host);
        net.inject_frame(
            Direction::ClientToServer,
            &forged_segment(src, 41000, 7, TcpControl::Syn, 5000),
        );
    }
    let served = net.run_services(&mut server, &mut b, Duration::from_secs(10), |_, b, _| {
        b.done().then_some(())
    });
    let backlog = net.server.backlog.stats();
    assert!(
        served.is_ok(),
        "B, 600 ms away, was not served: {:?}; {backlog}",
        b.state()
    );
}

/// A client socket (`rx` and `tx` bytes of buffers) connecting to tcp/7 on
/// the server host through a `TcpClient`: its handle, and the client.
fn connect_client(net: &mut Net, seed: u64, (rx, tx): (usize, usize)) -> (SocketHandle, TcpClient) {
    let handle = net.client.sockets.add(tcp_socket(rx, tx));
    let mut ports = PortAllocator::<16>::new(seed);
    let mut client = TcpClient::new(Duration::from_secs(5));
    let now = net.now();
    let (socket, cx) = net
        .client
        .socket_and_context::<tcp::Socket>(handle)
        .unwrap();
    client
        .connect(cx, socket, (SERVER_V4, 7), &mut ports, now)
        .unwrap();
    (handle, client)
}

/// A bare socket (`rx` and `tx` bytes of buffers) listening on tcp/7 of the
/// server host: a peer the test drives by hand.
fn bare_listener(net: &mut Net, (rx, tx): (usize, usize)) -> SocketHandle {
    let server = net.server.sockets.add(tcp_socket(rx, tx));
    net.server
        .sockets
        .get_mut::<tcp::Socket>(server)
        .listen(7)
        .unwrap();
    server
}

/// A pool of one `Framed` slot for `handler` on tcp/7: 1 KiB frames, a 1 KiB
/// receive and a 256-byte send buffer, a 5 s idle timeout.
fn one_framed_slot<H: FrameHandler>(
    net: &mut Net,
    handler: H,
) -> TcpServer<Framed<H, [u8; 1028], [u8; 1028]>, 1> {
    let format = HeaderFormat::NETWORK.with_max_len(1024).unwrap();
    let framed = Framed::new(handler, [0u8; 1028], [0u8; 1028], format).unwrap();
    let config = ServerConfig {
        idle_timeout: Some(smolsock::time::Duration::from_secs(5)),
        ..SERVER
    };
    serve(net, 7, (1024, 256), [framed], config)
}

/// Echoes each frame; on "bye" answers "ok" and closes gracefully.
struct ByeCloses;
impl FrameHandler for ByeCloses {
    fn on_frame(&mut self, frame: &[u8], out: &mut FrameOut<'_>) -> Flow {
        if frame == b"bye" {
            return match out.send(b"ok") {
                Ok(()) => Flow::Close,
                Err(_) => Flow::Wait,
            };
        }
        Flow::from_send(out.send(frame))
    }
}

fn frame_of(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

#[test]
fn a_handlers_close_ends_cleanly_though_the_peer_sent_more_frames_before_its_fin() {
    let mut net = sim(4242, FaultConfig::CLEAN, 1, 1);
    let format = HeaderFormat::NETWORK.with_max_len(16).unwrap();
    let framed = Framed::new(ByeCloses, [0u8; 20], [0u8; 20], format).unwrap();
    let server = bare_listener(&mut net, (4096, 4096));
    let (handle, mut client) = connect_client(&mut net, 4242, (1024, 1024));
    let mut conn = TcpSession::new(handle, framed);
    // The peer pipelines "bye" and ten more 16-byte frames, then its FIN, and
    // reads everything it is sent.
    let mut stream = frame_of(b"bye");
    for i in 0..10u8 {
        stream.extend(frame_of(&[i; 16]));
    }
    let (mut sent, mut fin, mut connected, mut back) = (0usize, false, false, Vec::new());
    let result = net.run_until(Duration::from_secs(120), |net| {
        let now = net.now();
        let peer = net.server.sockets.get_mut::<tcp::Socket>(server);
        if peer.may_send() && sent < stream.len() {
            sent += peer.send_slice(&stream[sent..]).unwrap_or(0);
        }
        if sent == stream.len() && !fin && peer.may_send() {
            peer.close();
            fin = true;
        }
        while peer.can_recv() {
            let _ = peer.recv(|b| {
                back.extend_from_slice(b);
                (b.len(), ())
            });
        }
        let socket = net.client.sockets.get_mut::<tcp::Socket>(handle);
        connected |= client.poll(socket, now) == ClientState::Connected;
        if !connected {
            return None;
        }
        let status = conn.poll(&mut net.client.sockets, now).unwrap();
        conn.is_ended().then_some((status, now))
    });
    let (status, at) = result.expect("the connection never ended");
    assert_eq!(back, frame_of(b"ok"), "the answer to bye");
    assert_eq!(
        status,
        Status::Close,
        "a graceful close (handler's Flow::Close, peer acknowledged all and sent its FIN) ended as {status:?} at {at}"
    );
}

#[test]
fn a_handlers_close_whose_peer_keeps_sending_and_never_fins_is_reset_at_the_close_timeout() {
    // As above, but after "bye" the peer streams frames for ever and never
    // sends its FIN. The session's close must still be bounded by the close
    // timeout (20 s): bytes the session only reads to drop are no sign the
    // peer is answering.
    let mut net = sim(4243, FaultConfig::CLEAN, 1, 1);
    let format = HeaderFormat::NETWORK.with_max_len(16).unwrap();
    let framed = Framed::new(ByeCloses, [0u8; 20], [0u8; 20], format).unwrap();
    let server = bare_listener(&mut net, (4096, 4096));
    let (handle, mut client) = connect_client(&mut net, 4243, (1024, 1024));
    let mut conn = TcpSession::new(handle, framed);
    let bye = frame_of(b"bye");
    // After "bye", 1100 bytes every 5 s (a trickle, far under the close
    // timeout's pace of 20 s), for ever.
    let more = [7u8; 1100];
    let mut next = Instant::ZERO;
    let (mut sent_bye, mut connected, mut closed_at) = (false, false, None);
    let result = net.run_until(Duration::from_secs(60), |net| {
        let now = net.now();
        let peer = net.server.sockets.get_mut::<tcp::Socket>(server);
        if peer.may_send() {
            if !sent_bye {
                sent_bye = peer.send_slice(&bye).unwrap_or(0) == bye.len();
                next = now + Duration::from_secs(1);
            } else if now >= next && peer.send_capacity() - peer.send_queue() >= more.len() {
                peer.send_slice(&more).unwrap();
                next = now + Duration::from_secs(5);
            }
        }
        read_all(peer);
        let socket = net.client.sockets.get_mut::<tcp::Socket>(handle);
        connected |= client.poll(socket, now) == ClientState::Connected;
        if !connected {
            return None;
        }
        let status = conn.poll(&mut net.client.sockets, now).unwrap();
        if status == Status::Close {
            closed_at.get_or_insert(now);
        }
        conn.is_ended().then_some((status, now))
    });
    let closed = closed_at.expect("the handler never closed");
    let (status, ended) = result.unwrap_or_else(|_| {
        panic!(
            "closed at {closed}, not ended after 60 s; discarded {}",
            conn.session().stats().read.discarded
        )
    });
    assert_eq!(status, Status::Abort);
    assert!(
        ended < closed + Duration::from_secs(21),
        "closed at {closed}, ended at {ended}"
    );
}

/// On "bye", answers a 1000-byte frame and closes gracefully.
struct BigByeCloses;
impl FrameHandler for BigByeCloses {
    fn on_frame(&mut self, frame: &[u8], out: &mut FrameOut<'_>) -> Flow {
        if frame == b"bye" {
            return match out.send(&[b'z'; 1000]) {
                Ok(()) => Flow::Close,
                Err(_) => Flow::Wait,
            };
        }
        Flow::from_send(out.send(frame))
    }
}

#[test]
fn a_pool_slot_whose_handler_closed_is_not_held_by_a_peer_that_only_sends() {
    // The handler answers "bye" and closes; the peer never reads the answer
    // (its window closes, the answer waits in the session) and sends 100
    // bytes a second, which the session only drops. Nothing moves that
    // anybody takes: the idle timeout (5 s) must free the slot.
    let mut net = sim(4244, FaultConfig::CLEAN, 1, 1);
    let mut server = one_framed_slot(&mut net, BigByeCloses);
    let (handle, mut client) = connect_client(&mut net, 4244, (64, 4096));
    let bye = frame_of(b"bye");
    let (mut sent_bye, mut next, mut trickled) = (false, Instant::ZERO, 0usize);
    let result = net.run_services(
        &mut server,
        &mut (),
        Duration::from_secs(120),
        |server, _, net| {
            let now = net.now();
            let stats = server.stats();
            if stats.idle_timeouts + stats.close_timeouts + stats.resets + stats.closed > 0 {
                return Some((*stats, now));
            }
            let socket = net.client.sockets.get_mut::<tcp::Socket>(handle);
            if client.poll(socket, now) != ClientState::Connected || !socket.may_send() {
                return None;
            }
            if !sent_bye {
                sent_bye = socket.send_slice(&bye).unwrap_or(0) == bye.len();
                next = now + Duration::from_secs(1);
            } else if now >= next {
                trickled += socket.send_slice(&[7u8; 100]).unwrap_or(0);
                next = now + Duration::from_secs(1);
            }
            None
        },
    );
    let discarded = server.sessions()[0].stats().read.discarded;
    let (stats, at) = result.unwrap_or_else(|_| {
        panic!("the slot was still held after 120 s; the peer trickled {trickled} bytes, {discarded} dropped")
    });
    assert!(at < Instant::from_secs(30), "ended at {at}: {stats:?}");
}

#[test]
fn a_pool_slot_counts_the_closing_frame_itself_as_the_peers_progress() {
    // The peer sends a 600-byte frame, whose echo fills the server's 256-byte
    // send buffer (the peer's 128-byte window closes; it reads nothing yet).
    // 4 s later it sends "bye": a real frame, read and answered ("ok" queued
    // behind the echo), on which the handler closes. 2 s after "bye" the peer
    // reads everything and closes. "bye" is the peer's progress: the idle
    // timeout (5 s) runs from it, so the slot must close cleanly, not be
    // reset 5 s after the first frame.
    let mut net = sim(4245, FaultConfig::CLEAN, 1, 1);
    let mut server = one_framed_slot(&mut net, ByeCloses);
    let (handle, mut client) = connect_client(&mut net, 4245, (128, 4096));
    let first = frame_of(&[b'x'; 600]);
    let bye = frame_of(b"bye");
    let (mut first_at, mut bye_at, mut back, mut fin) = (None, None, 0usize, false);
    let result = net.run_services(
        &mut server,
        &mut (),
        Duration::from_secs(60),
        |server, _, net| {
            let now = net.now();
            let stats = *server.stats();
            if stats.idle_timeouts + stats.close_timeouts + stats.resets + stats.closed > 0 {
                return Some((stats, now));
            }
            let socket = net.client.sockets.get_mut::<tcp::Socket>(handle);
            if client.poll(socket, now) != ClientState::Connected {
                return None;
            }
            match (first_at, bye_at) {
                (None, _) if socket.may_send() => {
                    assert_eq!(socket.send_slice(&first).unwrap(), first.len());
                    first_at = Some(now);
                }
                (Some(at), None) if now >= at + Duration::from_secs(4) => {
                    assert_eq!(socket.send_slice(&bye).unwrap(), bye.len());
                    bye_at = Some(now);
                }
                (Some(_), Some(at)) if now >= at + Duration::from_secs(2) => {
                    while let Ok(n @ 1..) = socket.recv(|b| (b.len(), b.len())) {
                        back += n;
                    }
                    if back == first.len() + 6 && !fin {
                        socket.close();
                        fin = true;
                    }
                }
                _ => {}
            }
            None
        },
    );
    let (stats, at) = result.expect("the slot never ended");
    assert_eq!(
        (stats.closed, stats.idle_timeouts),
        (1, 0),
        "first frame at {first_at:?}, bye at {bye_at:?}, ended at {at}, {back} bytes read: {stats:?}"
    );
}

/// The status lines of the pool's and the UDP service's stats: every counter
/// a line shows with its own value, and the count of polls with a socket
/// missing only once there are some (the destructuring names every field: a
/// new one must be placed here too).
#[test]
fn stats_display_their_counters() {
    let mut server = ServerStats {
        accepted: 101,
        closed: 102,
        resets: 103,
        idle_timeouts: 104,
        handshake_timeouts: 105,
        close_timeouts: 106,
        aborted: 107,
        discarded: 108,
        relistens: 109,
        unaccepted: 110,
        missing_sockets: 0,
    };
    let ServerStats {
        accepted,
        closed,
        resets,
        idle_timeouts,
        handshake_timeouts,
        close_timeouts,
        aborted,
        // Fields only.
        discarded: _,
        relistens: _,
        unaccepted,
        missing_sockets: _,
    } = server;
    let counters = [
        accepted,
        closed,
        resets,
        idle_timeouts,
        handshake_timeouts,
        close_timeouts,
        aborted,
        unaccepted,
    ];
    shows_each(&server, &counters, "missing");
    server.missing_sockets = 111;
    let shown = server.to_string();
    assert!(
        shown.ends_with("; 111 polls with a socket missing"),
        "{shown}"
    );

    let mut udp = UdpStats {
        datagrams_in: 201,
        bytes_in: 202,
        datagrams_out: 203,
        bytes_out: 204,
        oversize: 205,
        send_full: 206,
        send_errors: 207,
        stuck_flushes: 208,
        unread_dropped: 209,
        missing_socket: 0,
        bind_errors: 211,
    };
    let UdpStats {
        datagrams_in,
        bytes_in,
        datagrams_out,
        bytes_out,
        oversize,
        send_full,
        send_errors,
        stuck_flushes,
        unread_dropped,
        missing_socket: _,
        bind_errors,
    } = udp;
    let counters = [
        datagrams_in,
        bytes_in,
        datagrams_out,
        bytes_out,
        oversize,
        send_full,
        send_errors,
        stuck_flushes,
        unread_dropped,
        bind_errors,
    ];
    shows_each(&udp, &counters, "without");
    udp.missing_socket = 210;
    let shown = udp.to_string();
    assert!(shown.ends_with(", 210 polls without its socket"), "{shown}");
}

/// `stats` shown hold each of `counters` and not the word `absent`.
fn shows_each(stats: &dyn std::fmt::Display, counters: &[u64], absent: &str) {
    let shown = stats.to_string();
    for value in counters {
        assert!(shown.contains(&value.to_string()), "{value} not in {shown}");
    }
    assert!(!shown.contains(absent), "{shown}");
}
