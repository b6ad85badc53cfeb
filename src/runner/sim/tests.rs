//! End-to-end behaviour of the simulated network: real smoltcp sockets on both hosts.

use smoltcp::iface::SocketHandle;
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::IpAddress;

use super::*;

const PORT: u16 = 5000;
const CLIENT_PORT: u16 = 49500;

fn net<const SLOTS: usize>(config: SimConfig) -> SimNet<'static, SLOTS> {
    SimNet::new(config, SocketSet::new(vec![]), SocketSet::new(vec![]))
}

fn tcp_socket(buffer: usize) -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; buffer]),
        tcp::SocketBuffer::new(vec![0; buffer]),
    )
}

fn udp_socket(bound_to: u16) -> udp::Socket<'static> {
    let buffer = || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 64], vec![0; 16384]);
    let mut socket = udp::Socket::new(buffer(), buffer());
    socket.bind(bound_to).unwrap();
    socket
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 251) as u8).collect()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

struct Transfer {
    received: Vec<u8>,
    stats: SimStats,
    connected_at: Instant,
    finished_at: Instant,
}

/// Connects client to server over `server_addr`, sends `data` client to server with
/// `buffer`-byte socket buffers, and returns what arrived and how.
fn tcp_transfer<const SLOTS: usize>(
    config: SimConfig,
    server_addr: IpAddress,
    data: &[u8],
    buffer: usize,
) -> Transfer {
    let mut net = net::<SLOTS>(config);
    let (server, client) = connect(&mut net, server_addr, buffer);
    let connected_at = net.now();
    let mut sent = 0;
    let mut received = Vec::with_capacity(data.len());
    let finished_at = net
        .run_until(secs(900), |net| {
            let c = net.client.sockets.get_mut::<tcp::Socket>(client);
            if sent < data.len() && c.can_send() {
                sent += c.send_slice(&data[sent..]).unwrap();
            }
            let s = net.server.sockets.get_mut::<tcp::Socket>(server);
            while s.can_recv() {
                s.recv(|bytes| {
                    received.extend_from_slice(bytes);
                    (bytes.len(), ())
                })
                .unwrap();
            }
            (received.len() >= data.len()).then(|| net.now())
        })
        .unwrap();
    Transfer {
        received,
        stats: net.stats(),
        connected_at,
        finished_at,
    }
}

/// Adds a listening server socket and a connecting client socket, runs until both
/// are established, and returns their handles.
fn connect<const SLOTS: usize, P: PcapSink>(
    net: &mut SimNet<'static, SLOTS, P>,
    server_addr: IpAddress,
    buffer: usize,
) -> (SocketHandle, SocketHandle) {
    let server = net.server.sockets.add(tcp_socket(buffer));
    let client = net.client.sockets.add(tcp_socket(buffer));
    net.server
        .sockets
        .get_mut::<tcp::Socket>(server)
        .listen(PORT)
        .unwrap();
    let (socket, cx) = net
        .client
        .socket_and_context::<tcp::Socket>(client)
        .unwrap();
    socket
        .connect(cx, (server_addr, PORT), CLIENT_PORT)
        .unwrap();
    net.run_until(secs(60), |net| {
        let established = |sockets: &SocketSet<'_>, h| {
            sockets.get::<tcp::Socket>(h).state() == tcp::State::Established
        };
        (established(&net.server.sockets, server) && established(&net.client.sockets, client))
            .then_some(())
    })
    .unwrap();
    (server, client)
}

#[test]
fn clean_link_carries_200_kib_exactly_over_ipv4() {
    let data = pattern(200 * 1024);
    let t = tcp_transfer::<64>(SimConfig::new(1), SERVER_V4.into(), &data, 32 * 1024);
    assert!(t.received == data, "bytes differ");
    let s = t.stats.client_to_server;
    assert_eq!(
        (s.lost, s.duplicated, s.reordered, s.dropped_queue_full),
        (0, 0, 0, 0)
    );
    assert_eq!(s.sent, s.delivered);
}

#[test]
fn clean_link_carries_200_kib_exactly_over_ipv6() {
    let data = pattern(200 * 1024);
    let t = tcp_transfer::<64>(SimConfig::new(1), SERVER_V6.into(), &data, 32 * 1024);
    assert!(t.received == data, "bytes differ");
    assert_eq!(
        t.stats.client_to_server.sent,
        t.stats.client_to_server.delivered
    );
}

fn assert_faults_happened(stats: &LinkStats) {
    assert!(stats.lost > 0, "no loss: {stats}");
    assert!(stats.duplicated > 0, "no duplicates: {stats}");
    assert!(stats.reordered > 0, "no reordering: {stats}");
    assert_eq!(
        stats.dropped_mtu, 0,
        "smoltcp should size frames to the MTU"
    );
}

#[test]
fn rough_link_carries_200_kib_exactly_over_ipv4() {
    let data = pattern(200 * 1024);
    let config = SimConfig::new(2).with_faults(FaultConfig::ROUGH);
    let t = tcp_transfer::<64>(config, SERVER_V4.into(), &data, 16 * 1024);
    assert!(t.received == data, "bytes differ");
    assert_faults_happened(&t.stats.client_to_server);
    // 200 KiB in segments that fit a 576-byte MTU is at least 390 frames.
    assert!(t.stats.client_to_server.sent > 390);
}

#[test]
fn rough_link_carries_200_kib_exactly_over_ipv6() {
    let data = pattern(200 * 1024);
    let config = SimConfig::new(3).with_faults(FaultConfig::ROUGH);
    let t = tcp_transfer::<64>(config, SERVER_V6.into(), &data, 16 * 1024);
    assert!(t.received == data, "bytes differ");
    assert_faults_happened(&t.stats.client_to_server);
}

#[test]
fn same_seed_gives_the_same_run_and_another_seed_a_different_one() {
    let data = pattern(64 * 1024);
    let run = |seed| {
        let config = SimConfig::new(seed).with_faults(FaultConfig::ROUGH);
        let t = tcp_transfer::<64>(config, SERVER_V4.into(), &data, 8 * 1024);
        assert!(t.received == data);
        (t.stats, t.finished_at)
    };
    let first = run(11);
    assert_eq!(first, run(11));
    let other = run(12);
    assert_ne!(first.0, other.0);
    assert_ne!(first.1, other.1);
}

#[test]
fn interfaces_are_seeded_from_the_sim_seed() {
    // The client's SYN carries its initial sequence number; smoltcp's default seed
    // of 0 would make it the same in every run.
    let syn_seq = |seed| {
        let mut net = net::<64>(SimConfig::new(seed)).with_pcap(Vec::new());
        connect(&mut net, SERVER_V4.into(), 1024);
        let frames = pcap_frames(net.capture());
        let syn = frames
            .iter()
            .find(|f| f.len() >= 54 && f[12..14] == [0x08, 0x00] && f[23] == 6)
            .expect("a TCP frame");
        u32::from_be_bytes(syn[38..42].try_into().unwrap())
    };
    assert_eq!(syn_seq(5), syn_seq(5));
    assert_ne!(syn_seq(5), syn_seq(6));
}

#[test]
fn udp_datagrams_cross_and_keep_their_boundaries() {
    let mut net = net::<64>(SimConfig::new(4));
    let server = net.server.sockets.add(udp_socket(7000));
    let client = net.client.sockets.add(udp_socket(7001));
    let sizes = [1, 500, 1200, 3];
    for (i, &size) in sizes.iter().enumerate() {
        let payload = vec![i as u8; size];
        net.client
            .sockets
            .get_mut::<udp::Socket>(client)
            .send_slice(&payload, (IpAddress::from(SERVER_V4), 7000))
            .unwrap();
    }
    let mut got = Vec::new();
    net.run_until(secs(5), |net| {
        let s = net.server.sockets.get_mut::<udp::Socket>(server);
        while let Ok((data, meta)) = s.recv() {
            assert_eq!(meta.endpoint.addr, IpAddress::from(CLIENT_V4));
            got.push(data.to_vec());
        }
        (got.len() == sizes.len()).then_some(())
    })
    .unwrap();
    for (i, datagram) in got.iter().enumerate() {
        assert_eq!(datagram, &vec![i as u8; sizes[i]]);
    }
}

#[test]
fn frames_over_the_mtu_are_dropped_and_counted() {
    let mut net = net::<64>(SimConfig::new(5));
    let server = net.server.sockets.add(udp_socket(7000));
    let client = net.client.sockets.add(udp_socket(7001));
    let send = |net: &mut SimNet<'static>, len: usize| {
        net.client
            .sockets
            .get_mut::<udp::Socket>(client)
            .send_slice(&vec![7; len], (IpAddress::from(SERVER_V4), 7000))
            .unwrap();
    };
    let mut count = 0;
    let mut arrivals = |net: &mut SimNet<'static>| {
        let s = net.server.sockets.get_mut::<udp::Socket>(server);
        while s.recv().is_ok() {
            count += 1;
        }
        count
    };
    send(&mut net, 1000);
    net.run_for(secs(1));
    assert_eq!(arrivals(&mut net), 1);

    // The path MTU drops below what the stacks were built with: a black hole.
    net.set_faults(Direction::ClientToServer, FaultConfig::CLEAN.with_mtu(576));
    send(&mut net, 1000);
    send(&mut net, 500);
    net.run_for(secs(1));
    assert_eq!(arrivals(&mut net), 2, "only the small datagram crosses");
    assert_eq!(net.link_stats(Direction::ClientToServer).dropped_mtu, 1);

    // A frame injected longer than any slot is counted the same way, never stored.
    net.inject_frame(Direction::ServerToClient, &[0xff; 2000]);
    assert_eq!(net.link_stats(Direction::ServerToClient).dropped_mtu, 1);
    assert_eq!(net.in_flight(Direction::ServerToClient), 0);
}

#[test]
fn bandwidth_makes_one_megabyte_take_about_0_8_s_at_10_mbit() {
    let data = pattern(1_000_000);
    let config = SimConfig::new(6).with_faults(FaultConfig::CLEAN.with_bandwidth(10_000_000));
    // A 48 KiB window is 34 full frames: the 64 slots never overflow.
    let t = tcp_transfer::<64>(config, SERVER_V4.into(), &data, 48 * 1024);
    assert!(t.received == data);
    let took = (t.finished_at - t.connected_at).total_micros();
    // 8 Mbit of payload plus 54 bytes of headers per 1460 is 0.83 s on the wire.
    assert!((800_000..900_000).contains(&took), "took {took} µs");
    assert_eq!(t.stats.client_to_server.dropped_queue_full, 0);
}

#[test]
fn unlimited_bandwidth_and_no_delay_take_no_virtual_time_per_frame() {
    let data = pattern(100_000);
    let t = tcp_transfer::<64>(SimConfig::new(6), SERVER_V4.into(), &data, 48 * 1024);
    assert!(t.received == data);
    // Only smoltcp's own timers (its 10 ms delayed ACK) move the clock.
    assert!((t.finished_at - t.connected_at).total_millis() < 100);
}

#[test]
fn a_full_queue_tail_drops_and_counts() {
    let config =
        SimConfig::new(7).with_faults(FaultConfig::CLEAN.with_delay(Duration::from_millis(10)));
    let mut net = net::<4>(config);
    let server = net.server.sockets.add(udp_socket(7000));
    let client = net.client.sockets.add(udp_socket(7001));
    for i in 0..10u8 {
        net.client
            .sockets
            .get_mut::<udp::Socket>(client)
            .send_slice(&[i; 100], (IpAddress::from(SERVER_V4), 7000))
            .unwrap();
    }
    let mut received = 0u64;
    net.run_until(secs(2), |net| {
        let s = net.server.sockets.get_mut::<udp::Socket>(server);
        while s.recv().is_ok() {
            received += 1;
        }
        None::<()>
    })
    .unwrap_err();
    let dropped = net.link_stats(Direction::ClientToServer).dropped_queue_full;
    assert!(dropped > 0, "no tail drop with 4 slots");
    assert_eq!(received + dropped, 10);
}

#[test]
fn jitter_alone_never_reorders() {
    let faults = FaultConfig::CLEAN
        .with_delay(Duration::from_millis(2))
        .with_jitter(Duration::from_millis(20));
    let order = udp_arrival_order(SimConfig::new(8).with_faults(faults), 40);
    assert_eq!(order, (0..40).collect::<Vec<u8>>());
}

#[test]
fn reordered_frames_are_overtaken_and_counted() {
    let faults = FaultConfig::CLEAN.with_reordering(300);
    let config = SimConfig::new(9).with_faults(faults);
    let mut order = udp_arrival_order(config, 40);
    assert_ne!(order, (0..40).collect::<Vec<u8>>());
    order.sort_unstable();
    assert_eq!(
        order,
        (0..40).collect::<Vec<u8>>(),
        "nothing lost or doubled"
    );
}

/// Sends `count` numbered datagrams, 1 ms apart, and returns the numbers in arrival order.
fn udp_arrival_order(config: SimConfig, count: u8) -> Vec<u8> {
    let mut net = net::<64>(config);
    let server = net.server.sockets.add(udp_socket(7000));
    let client = net.client.sockets.add(udp_socket(7001));
    let mut order = Vec::new();
    for i in 0..count {
        net.client
            .sockets
            .get_mut::<udp::Socket>(client)
            .send_slice(&[i], (IpAddress::from(SERVER_V4), 7000))
            .unwrap();
        net.run_for(Duration::from_millis(1));
    }
    net.run_until(secs(2), |net| {
        let s = net.server.sockets.get_mut::<udp::Socket>(server);
        while let Ok((data, _)) = s.recv() {
            order.push(data[0]);
        }
        (order.len() == usize::from(count)).then_some(())
    })
    .unwrap();
    // The link counts a reordering exactly when the datagrams came out of order.
    let in_order = order.windows(2).all(|pair| pair[0] < pair[1]);
    let reordered = net.link_stats(Direction::ClientToServer).reordered;
    assert_eq!(reordered == 0, in_order, "{reordered} reordered: {order:?}");
    order
}

#[test]
fn advance_jumps_to_the_next_delivery_and_never_goes_back() {
    let config = SimConfig::new(10)
        .with_faults(FaultConfig::CLEAN.with_delay(Duration::from_millis(50)))
        .with_max_idle_step(secs(1));
    let mut net = net::<8>(config);
    assert_eq!(net.now(), Instant::from_millis(0));
    net.inject_frame(Direction::ClientToServer, &[0; 60]);
    assert_eq!(net.advance(None), Instant::from_millis(50));
    // The frame is due now: a past hint and the due frame both keep the clock still.
    assert_eq!(
        net.advance(Some(Instant::from_millis(3))),
        Instant::from_millis(50)
    );
    net.poll();
    assert_eq!(net.link_stats(Direction::ClientToServer).delivered, 1);
    // Nothing scheduled: the idle step.
    assert_eq!(net.advance(None), Instant::from_millis(1050));
    assert_eq!(
        net.advance(Some(Instant::from_millis(1060))),
        Instant::from_millis(1060)
    );
}

#[test]
fn run_until_gives_up_exactly_at_its_limit() {
    let mut net = net::<8>(SimConfig::new(11));
    let mut asked = 0;
    let err = net
        .run_until(Duration::from_millis(95), |_| {
            asked += 1;
            None::<()>
        })
        .unwrap_err();
    assert_eq!(err.now, Instant::from_millis(95));
    assert_eq!(err.limit, Duration::from_millis(95));
    // 0, 10, ..., 90 and the limit itself.
    assert_eq!(asked, 11);
    assert!(err.to_string().contains("virtual time"));
}

/// A UDP echo, just enough to drive through `run_services`.
struct Echo {
    handle: SocketHandle,
    echoed: usize,
}

impl Service for Echo {
    fn poll(&mut self, sockets: &mut SocketSet<'_>, _now: Instant) {
        let socket = sockets.get_mut::<udp::Socket>(self.handle);
        let mut buf = [0; 2048];
        while let Ok((len, meta)) = socket.recv_slice(&mut buf) {
            socket.send_slice(&buf[..len], meta.endpoint).unwrap();
            self.echoed += 1;
        }
    }
}

#[test]
fn run_services_polls_each_side_and_stops_when_told() {
    let mut net = net::<64>(
        SimConfig::new(12).with_faults(FaultConfig::CLEAN.with_delay(Duration::from_millis(5))),
    );
    let mut echo = Echo {
        handle: net.server.sockets.add(udp_socket(7)),
        echoed: 0,
    };
    let client = net.client.sockets.add(udp_socket(7001));
    net.client
        .sockets
        .get_mut::<udp::Socket>(client)
        .send_slice(b"ping", (IpAddress::from(SERVER_V6), 7))
        .unwrap();
    let reply = net
        .run_services(&mut echo, &mut (), secs(5), |echo, (), net| {
            let socket = net.client.sockets.get_mut::<udp::Socket>(client);
            let (data, _) = socket.recv().ok()?;
            Some((data.to_vec(), echo.echoed, net.now()))
        })
        .unwrap();
    assert_eq!(reply.0, b"ping");
    assert_eq!(reply.1, 1);
    // Neighbour discovery (one round trip) plus the echo (one more), 5 ms each way.
    assert_eq!(reply.2, Instant::from_millis(20));
}

#[test]
fn socket_and_context_refuses_a_handle_of_another_type() {
    let mut net = net::<8>(SimConfig::new(13));
    let udp = net.client.sockets.add(udp_socket(9));
    assert!(net.client.socket_and_context::<tcp::Socket>(udp).is_none());
    assert!(net.client.socket_and_context::<udp::Socket>(udp).is_some());
    assert!(net.server.socket_and_context::<udp::Socket>(udp).is_none());
}

/// Splits a libpcap file into its frames, checking the headers on the way.
fn pcap_frames(capture: &[u8]) -> Vec<Vec<u8>> {
    let u32_at = |at: usize| u32::from_ne_bytes(capture[at..at + 4].try_into().unwrap());
    assert_eq!(u32_at(0), 0xa1b2_c3d4, "magic");
    assert_eq!(u32_at(20), 1, "Ethernet link type");
    let mut frames = Vec::new();
    let mut at = 24;
    let mut last_time = 0u64;
    while at < capture.len() {
        let time = u64::from(u32_at(at)) * 1_000_000 + u64::from(u32_at(at + 4));
        assert!(time >= last_time, "timestamps go forward");
        last_time = time;
        let len = u32_at(at + 8) as usize;
        assert_eq!(len, u32_at(at + 12) as usize, "nothing truncated");
        frames.push(capture[at + 16..at + 16 + len].to_vec());
        at += 16 + len;
    }
    frames
}

#[test]
fn capture_records_every_frame_put_on_the_wire() {
    let config = SimConfig::new(14).with_faults(FaultConfig::ROUGH);
    let mut net = net::<64>(config).with_pcap(Vec::new());
    let (server, client) = connect(&mut net, SERVER_V4.into(), 4096);
    let data = pattern(20_000);
    let mut sent = 0;
    net.run_until(secs(120), |net| {
        let c = net.client.sockets.get_mut::<tcp::Socket>(client);
        if sent < data.len() {
            sent += c.send_slice(&data[sent..]).unwrap();
        }
        let done = sent == data.len() && c.send_queue() == 0;
        let s = net.server.sockets.get_mut::<tcp::Socket>(server);
        while s.can_recv() {
            s.recv(|bytes| (bytes.len(), ())).unwrap();
        }
        done.then_some(())
    })
    .unwrap();
    let frames = pcap_frames(net.capture());
    let stats = net.stats();
    let sent = stats.server_to_client.sent + stats.client_to_server.sent;
    assert_eq!(frames.len() as u64, sent);
    assert!(frames.iter().all(|f| f.len() <= 590), "MTU 576 respected");
    assert!(
        frames.iter().any(|f| f[12..14] == [0x08, 0x06]),
        "ARP on the wire"
    );
}

#[test]
fn stats_print_as_an_aligned_table() {
    let stats = SimStats::default();
    let text = stats.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|l| l.len() == lines[0].len()), "{text}");
    assert!(lines[1].starts_with("s>c"));
}

#[test]
fn a_reordered_frame_is_held_back_from_where_it_would_arrive_in_line() {
    // The first frame takes 100 ms; the second, sent 0 ms later on a link that
    // now has no delay, would arrive in line behind it, at 100 ms. Chosen for
    // reordering, it is held back from there, not moved ahead of the first.
    let arrival_of_second = |second: FaultConfig| {
        let slow = FaultConfig::CLEAN.with_delay(Duration::from_millis(100));
        let config = SimConfig::new(1)
            .with_faults(slow)
            .with_max_idle_step(secs(10));
        let mut net = net::<8>(config);
        net.inject_frame(Direction::ClientToServer, &[0xaa; 60]);
        net.set_faults(Direction::ClientToServer, second);
        net.inject_frame(Direction::ClientToServer, &[0xbb; 60]);
        net.run_until(secs(1), |net| {
            let delivered = net.link_stats(Direction::ClientToServer).delivered;
            (delivered == 2).then(|| net.now())
        })
        .unwrap()
    };
    let in_line = arrival_of_second(FaultConfig::CLEAN);
    assert_eq!(in_line, Instant::from_millis(100));
    let held = arrival_of_second(FaultConfig::CLEAN.with_reordering(1000));
    assert_eq!(
        held,
        Instant::from_millis(101),
        "held back the default 1 ms"
    );
}

#[test]
fn frames_all_held_back_alike_keep_their_order_under_jitter() {
    // Every frame is chosen for reordering and held back the same 1 ms: only
    // jitter could change their order, and jitter alone never reorders.
    let faults = FaultConfig::CLEAN
        .with_jitter(Duration::from_millis(50))
        .with_reordering(1000);
    let order = udp_arrival_order(SimConfig::new(3).with_faults(faults), 8);
    assert_eq!(order, (0..8).collect::<Vec<u8>>());
}

#[test]
fn a_duplicate_takes_its_own_time_on_the_wire() {
    // 80 kbit/s: 1,000 bytes in 100 ms. Twenty 100-byte frames, each doubled,
    // are 4,000 bytes of wire time: 1,000 of them delivered in 100 ms.
    let faults = FaultConfig::CLEAN
        .with_bandwidth(80_000)
        .with_duplication(1000);
    let config = SimConfig::new(1)
        .with_faults(faults)
        .with_max_idle_step(secs(10));
    let mut net = net::<64>(config);
    for _ in 0..20 {
        net.inject_frame(Direction::ClientToServer, &[0; 100]);
    }
    net.run_for(Duration::from_millis(100));
    let stats = net.link_stats(Direction::ClientToServer);
    assert_eq!(stats.bytes_delivered, 1000, "{stats:?}");
    net.run_for(Duration::from_millis(300));
    let stats = net.link_stats(Direction::ClientToServer);
    assert_eq!(
        (stats.delivered, stats.duplicated, stats.bytes_delivered),
        (40, 20, 4000)
    );
}

#[test]
fn virtual_time_stops_at_its_end_and_the_stacks_keep_working() {
    let config = SimConfig::new(1).with_max_idle_step(Duration::from_micros(u64::MAX));
    let mut net = net::<8>(config).with_pcap(Vec::<u8>::new());
    let client = net.client.sockets.add(udp_socket(7001));
    let server = net.server.sockets.add(udp_socket(7000));
    net.run_for(Duration::from_micros(u64::MAX));
    assert_eq!(net.now(), MAX_TIME);
    net.run_for(secs(1));
    assert_eq!(net.now(), MAX_TIME, "never past it");
    // smoltcp adds its timers to the time it is given: still room for them.
    net.client
        .sockets
        .get_mut::<udp::Socket>(client)
        .send_slice(b"hi", (IpAddress::from(SERVER_V4), 7000))
        .unwrap();
    net.poll();
    net.poll();
    let _ = net.server.sockets.get_mut::<udp::Socket>(server).recv();
    // The capture's timestamps (32-bit seconds) never went backwards.
    let pcap = net.capture();
    let word = |at: usize| u32::from_ne_bytes(pcap[at..at + 4].try_into().unwrap());
    let (mut at, mut last) = (24, 0u64);
    while at + 16 <= pcap.len() {
        let time = u64::from(word(at)) * 1_000_000 + u64::from(word(at + 4));
        assert!(time >= last, "{time} µs after {last} µs");
        last = time;
        at += 16 + word(at + 8) as usize;
    }
    assert!(last > 0, "frames captured at the end of time");
}
