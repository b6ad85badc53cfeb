//! TFTP between two smoltcp stacks on the simulated link: smolsock's server on
//! udp/69 and its client (`net::TftpClient`) on the other host, over a link
//! that loses, duplicates and reorders 10 % of frames each way. Every byte must
//! arrive.

mod common_sim;

use common_sim::{forged_arp, forged_udp, run_for};
use smolsock::net::{Service, TftpClient, TftpServer};
use smolsock::runner::sim::{FaultConfig, SERVER_V4, SimConfig, SimNet};
use smolsock::store::{FileName, RamStore, Storage};
use smolsock::tftp::{
    ClientConfig, ClientGet, ClientPut, ClientSession, ServerConfig, TftpError, TftpStats,
};
use smolsock::transfer::{SharedStore, SliceSink, UploadLease};
use smoltcp::iface::{SocketHandle, SocketSet, SocketStorage};
use smoltcp::socket::udp;
use smoltcp::time::Duration;
use smoltcp::wire::IpEndpoint;

type Store = RamStore<4, { 400 * 1024 }>;
const BUF: usize = 1432;

fn udp_socket() -> udp::Socket<'static> {
    let buffer = || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 32], vec![0; 32 * BUF]);
    udp::Socket::new(buffer(), buffer())
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 977) as u8).collect()
}

/// A client on the client host's port 50000, talking to the server's port 69.
fn client<C: ClientSession>(handle: SocketHandle, session: C) -> TftpClient<C, { BUF + 1 }> {
    TftpClient::new(
        handle,
        50_000,
        IpEndpoint::new(SERVER_V4.into(), 69),
        session,
    )
}

/// A get of `name` into `into`, with the default options and no progress.
fn get_into<'a>(name: &str, into: &'a mut [u8]) -> ClientGet<SliceSink<'a>, fn(u64, Option<u64>)> {
    ClientGet::new(
        FileName::new(name).unwrap(),
        ClientConfig::DEFAULT,
        SliceSink::new(into),
        |_, _| {},
    )
}

/// Runs `session` from a new socket of the client against `server` until its
/// outcome (a minute at most); the outcome, and the socket.
fn run_client<S: Service>(
    net: &mut SimNet<'static>,
    server: &mut S,
    session: &mut dyn ClientSession,
) -> (Result<u64, TftpError>, SocketHandle) {
    let handle = net.client.sockets.add(udp_socket());
    let mut driver = client(handle, session);
    let outcome = net
        .run_services(server, &mut driver, Duration::from_secs(60), |_, d, _| {
            d.outcome()
        })
        .unwrap();
    (outcome, handle)
}

fn net(seed: u64, faults: FaultConfig) -> SimNet<'static> {
    let set = |n: usize| SocketSet::new((0..n).map(|_| SocketStorage::EMPTY).collect::<Vec<_>>());
    SimNet::new(SimConfig::new(seed).with_faults(faults), set(4), set(1))
}

/// Runs `session` against a fresh server on `net`; the outcome, the server's
/// counters, and whatever the server's store holds under "f".
fn transfer(
    net: &mut SimNet<'static>,
    shared: &SharedStore<Store, [UploadLease; 2]>,
    session: &mut dyn ClientSession,
) -> (Result<u64, TftpError>, TftpStats) {
    let listen = net.server.sockets.add(udp_socket());
    let slots = [
        net.server.sockets.add(udp_socket()),
        net.server.sockets.add(udp_socket()),
    ];
    let config = ServerConfig {
        max_block_size: 8192,
        max_window: 16,
        ..ServerConfig::DEFAULT
    };
    let mut server = TftpServer::<_, 2, BUF>::new(listen, slots, shared, config);
    let handle = net.client.sockets.add(udp_socket());
    let mut driver = client(handle, session);
    let outcome = net
        .run_services(
            &mut server,
            &mut driver,
            Duration::from_secs(600),
            |_, d, _| d.outcome(),
        )
        .unwrap();
    // Both finish their side: the server's last ACK in (or its dally over), a
    // get's dally over (it ACKs a repeated last block again).
    net.run_services(
        &mut server,
        &mut driver,
        Duration::from_secs(30),
        |s, d, _| (s.active() == 0 && d.is_done()).then_some(()),
    )
    .unwrap();
    (outcome, server.stats())
}

/// A server of one slot over `shared` that has just taken a `size`-byte upload
/// of "f" from the client host (whose socket is gone again): the slot repeats
/// its last ACK for a while. Gives the bytes uploaded.
fn one_slot_after_an_upload<'s>(
    net: &mut SimNet<'static>,
    shared: &'s SharedStore<Store>,
    size: usize,
) -> (TftpServer<'s, Store, 1, BUF>, Vec<u8>) {
    let listen = net.server.sockets.add(udp_socket());
    let slots = [net.server.sockets.add(udp_socket())];
    let mut server = TftpServer::<_, 1, BUF>::new(listen, slots, shared, ServerConfig::DEFAULT);
    let data = pattern(size);
    let mut put = ClientPut::new(
        FileName::new("f").unwrap(),
        ClientConfig::DEFAULT,
        &data[..],
        |_, _| {},
    );
    let (outcome, handle) = run_client(net, &mut server, &mut put);
    assert_eq!(outcome, Ok(size as u64));
    net.client.sockets.remove(handle);
    (server, data)
}

/// Runs `f` on a thread with room for the RAM store on its stack.
fn big_stack(f: fn()) {
    std::thread::Builder::new()
        .stack_size(32 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

fn lossy() -> FaultConfig {
    FaultConfig::CLEAN
        .with_loss(100)
        .with_duplication(100)
        .with_reordering(100)
}

#[test]
fn a_get_and_a_put_over_a_link_that_loses_duplicates_and_reorders_deliver_every_byte() {
    big_stack(
        a_get_and_a_put_over_a_link_that_loses_duplicates_and_reorders_deliver_every_byte_body,
    );
}

fn a_get_and_a_put_over_a_link_that_loses_duplicates_and_reorders_deliver_every_byte_body() {
    let sizes = [0usize, 1428, 1429, 200_000];
    let configs = [
        ClientConfig::DEFAULT,
        ClientConfig {
            block_size: Some(1428),
            window: Some(8),
            ..ClientConfig::DEFAULT
        },
    ];
    let mut retransmits = 0;
    let mut duplicates = 0;
    for (seed, (size, config)) in sizes
        .iter()
        .flat_map(|s| configs.iter().map(move |c| (*s, *c)))
        .enumerate()
    {
        let seed = seed as u64 + 1;
        let shared = Box::new(SharedStore::new(Store::new(), [UploadLease::EMPTY; 2]));
        let data = pattern(size);
        // Put it there...
        let mut net = net(seed, lossy());
        let mut put = ClientPut::new(FileName::new("f").unwrap(), config, &data[..], |_, _| {});
        let (outcome, stats) = transfer(&mut net, &shared, &mut put);
        assert_eq!(outcome, Ok(size as u64), "put, seed {seed}, {stats}");
        assert_eq!((stats.completed, stats.failed), (1, 0), "{stats}");
        retransmits += stats.retransmits;
        duplicates += stats.duplicates;
        // ...and get it back.
        let mut into = vec![0u8; size];
        let mut reports = 0;
        let mut get = ClientGet::new(
            FileName::new("f").unwrap(),
            config,
            SliceSink::new(&mut into),
            |done, total| {
                assert_eq!(total, (size > 0).then_some(size as u64));
                assert!(done <= size as u64);
                reports += 1;
            },
        );
        let mut net = self::net(seed + 100, lossy());
        let (outcome, stats) = transfer(&mut net, &shared, &mut get);
        assert_eq!(outcome, Ok(size as u64), "get, seed {seed}, {stats}");
        assert!(get.sink().is_complete());
        assert!(into == data, "get, seed {seed}: the bytes differ");
        assert!(reports > 0 || size == 0);
        // The get dallied: however its final ACK fared, the server ended clean.
        assert_eq!((stats.completed, stats.failed), (1, 0), "{stats}");
        retransmits += stats.retransmits;
        duplicates += stats.duplicates;
    }
    // The link did its worst, and the transfers saw it.
    assert!(
        retransmits > 0 && duplicates > 0,
        "{retransmits} {duplicates}"
    );
}

/// A store holding `data` as the file `f`.
fn store_with_f(data: &[u8]) -> Box<SharedStore<Store, [UploadLease; 2]>> {
    let shared = Box::new(SharedStore::new(Store::new(), [UploadLease::EMPTY; 2]));
    shared.with_store(|s| put_file(s, "f", data)).unwrap();
    shared
}

/// Stores `data` as the file `name`, whole.
fn put_file(store: &mut Store, name: &str, data: &[u8]) {
    let name = FileName::new(name).unwrap();
    let mut up = store.begin_upload(&name, data.len() as u64, false).unwrap();
    store.append(&mut up, data).unwrap();
    store
        .commit(&up, smolsock::wire::crc32::crc32(data))
        .unwrap();
}

#[test]
fn a_datagram_from_a_wrong_port_gets_error_5_and_the_transfer_goes_on() {
    big_stack(a_datagram_from_a_wrong_port_gets_error_5_and_the_transfer_goes_on_body);
}

fn a_datagram_from_a_wrong_port_gets_error_5_and_the_transfer_goes_on_body() {
    let data = pattern(50_000);
    let shared = store_with_f(&data);
    let mut net = net(7, FaultConfig::CLEAN);
    let listen = net.server.sockets.add(udp_socket());
    let slots = [
        net.server.sockets.add(udp_socket()),
        net.server.sockets.add(udp_socket()),
    ];
    let mut server = TftpServer::<_, 2, BUF>::new(listen, slots, &*shared, ServerConfig::DEFAULT);
    let mut into = vec![0u8; data.len()];
    let mut get = get_into("f", &mut into);
    let handle = net.client.sockets.add(udp_socket());
    let intruder = net.client.sockets.add(udp_socket());
    let mut driver = client(handle, &mut get);
    // Once the transfer runs, a second socket of the client's host sends an ACK
    // to the transfer's port.
    let mut sent = false;
    let mut error_5 = false;
    let outcome = net
        .run_services(
            &mut server,
            &mut driver,
            Duration::from_secs(60),
            |_, d, net| {
                let socket = net.client.sockets.get_mut::<udp::Socket>(intruder);
                if !socket.is_open() {
                    socket.bind(50_001).unwrap();
                }
                if let (Some(peer), false) = (d.peer(), sent) {
                    socket.send_slice(&[0, 4, 0, 1], peer).unwrap();
                    sent = true;
                }
                if let Ok((data, _)) = socket.recv() {
                    error_5 |= data.starts_with(&[0, 5, 0, 5]);
                }
                d.outcome()
            },
        )
        .unwrap();
    assert_eq!(outcome, Ok(50_000));
    assert!(error_5, "the intruder got ERROR 5");
    assert_eq!(server.stats().wrong_tid, 1);
    assert!(into == data);
}

#[test]
fn a_request_when_every_slot_is_taken_is_answered_with_an_error() {
    big_stack(a_request_when_every_slot_is_taken_is_answered_with_an_error_body);
}

fn a_request_when_every_slot_is_taken_is_answered_with_an_error_body() {
    let shared = Box::new(SharedStore::new(Store::new(), [UploadLease::EMPTY; 2]));
    let mut net = net(9, FaultConfig::CLEAN);
    let listen = net.server.sockets.add(udp_socket());
    let slots = [net.server.sockets.add(udp_socket())];
    let mut server = TftpServer::<_, 1, BUF>::new(listen, slots, &*shared, ServerConfig::DEFAULT);
    let a = net.client.sockets.add(udp_socket());
    let b = net.client.sockets.add(udp_socket());
    let to = IpEndpoint::new(SERVER_V4.into(), 69);
    let wrq = |name: &str| [&[0u8, 2][..], name.as_bytes(), b"\0octet\0"].concat();
    let mut step = 0;
    let answer = net
        .run_services(&mut server, &mut (), Duration::from_secs(5), |_, _, net| {
            if step == 0 {
                let sa = net.client.sockets.get_mut::<udp::Socket>(a);
                sa.bind(50_010).unwrap();
                sa.send_slice(&wrq("one"), to).unwrap();
                step = 1;
            } else if step == 1 && net.client.sockets.get_mut::<udp::Socket>(a).recv().is_ok() {
                let sb = net.client.sockets.get_mut::<udp::Socket>(b);
                sb.bind(50_011).unwrap();
                sb.send_slice(&wrq("two"), to).unwrap();
                step = 2;
            } else if step == 2 {
                let sb = net.client.sockets.get_mut::<udp::Socket>(b);
                if let Ok((data, meta)) = sb.recv() {
                    return Some((data.to_vec(), meta.endpoint.port));
                }
            }
            None
        })
        .unwrap();
    assert_eq!(answer.1, 69, "answered from port 69");
    assert_eq!(&answer.0[..4], &[0, 5, 0, 0]);
    assert!(String::from_utf8_lossy(&answer.0).contains("busy"));
    assert_eq!(server.stats().pool_full, 1);
}

#[test]
fn a_finished_upload_still_answering_its_last_ack_gives_its_slot_to_the_next_request() {
    big_stack(a_finished_upload_gives_way_body);
}

fn a_finished_upload_gives_way_body() {
    let shared = Box::new(SharedStore::new(Store::new(), [UploadLease::EMPTY; 2]));
    let mut net = net(11, FaultConfig::CLEAN);
    let (mut server, data) = one_slot_after_an_upload(&mut net, &*shared, 5000);
    // The one slot repeats its last ACK for a while; a get right now is served.
    assert_eq!(server.active(), 1);
    let mut into = vec![0u8; 5000];
    let mut get = get_into("f", &mut into);
    let (outcome, _) = run_client(&mut net, &mut server, &mut get);
    assert_eq!(outcome, Ok(5000));
    assert_eq!(server.stats().pool_full, 0);
    assert!(into == data);
}

#[test]
fn a_packet_to_port_69_that_is_no_request_takes_no_slot() {
    big_stack(a_stray_packet_takes_no_slot_body);
}

fn a_stray_packet_takes_no_slot_body() {
    let shared = Box::new(SharedStore::new(Store::new(), [UploadLease::EMPTY; 2]));
    let mut net = net(13, FaultConfig::CLEAN);
    let (mut server, _) = one_slot_after_an_upload(&mut net, &*shared, 3000);
    assert_eq!(server.active(), 1, "the upload's slot dallies");
    // An ACK, then an ERROR, sent to port 69 from another port.
    let stray = net.client.sockets.add(udp_socket());
    let to = IpEndpoint::new(SERVER_V4.into(), 69);
    let malformed = server.stats().malformed;
    let mut sent = 0;
    let answer = net
        .run_services(
            &mut server,
            &mut (),
            Duration::from_secs(5),
            |server, _, net| {
                let socket = net.client.sockets.get_mut::<udp::Socket>(stray);
                if sent == 0 {
                    socket.bind(50_020).unwrap();
                    socket.send_slice(&[0, 4, 0, 7], to).unwrap();
                    sent = 1;
                }
                if let Ok((data, meta)) = socket.recv() {
                    return Some((data.to_vec(), meta.endpoint.port, server.active()));
                }
                None
            },
        )
        .unwrap();
    assert_eq!(answer.1, 69, "answered from port 69, by no slot");
    assert_eq!(&answer.0[..4], &[0, 5, 0, 4], "ERROR 4, illegal operation");
    assert_eq!(answer.2, 1, "the dallying slot is still the upload's");
    // An ERROR is never answered (RFC 1350), and takes no slot either.
    net.client
        .sockets
        .get_mut::<udp::Socket>(stray)
        .send_slice(b"\0\x05\0\0oops\0", to)
        .unwrap();
    net.run_services(
        &mut server,
        &mut (),
        Duration::from_millis(500),
        |_, _, net| {
            let socket = net.client.sockets.get_mut::<udp::Socket>(stray);
            socket.recv().ok().map(|(data, _)| data.to_vec())
        },
    )
    .expect_err("no answer to an ERROR");
    assert_eq!(server.stats().malformed, malformed + 2);
    assert_eq!(server.stats().pool_full, 0);
}

#[test]
fn a_request_from_an_address_that_never_resolves_does_not_hold_a_slot_for_ever() {
    big_stack(unresolvable_peer_body);
}

fn unresolvable_peer_body() {
    let data = pattern(50_000);
    let shared = store_with_f(&data);
    let mut net = net(21, FaultConfig::CLEAN);
    // The smallest buffers the server documents: one DATA queued leaves no room.
    let small = || {
        let buffer =
            || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 8], vec![0; 2 * BUF]);
        udp::Socket::new(buffer(), buffer())
    };
    let listen = net.server.sockets.add(small());
    let slots = [net.server.sockets.add(small())];
    let mut server = TftpServer::<_, 1, BUF>::new(listen, slots, &*shared, ServerConfig::DEFAULT);
    let ghost = smoltcp::wire::Ipv4Address::new(10, 0, 0, 99);
    let frame = forged_udp(ghost, 40_000, 69, b"\0\x01f\0octet\0");
    run_for(&mut net, &mut server, &mut (), Duration::from_millis(10));
    net.inject_frame(smolsock::runner::sim::Direction::ClientToServer, &frame);
    net.run_services(&mut server, &mut (), Duration::from_secs(1), |s, _, _| {
        (s.active() == 1).then_some(())
    })
    .expect("the request took the slot");
    let taken = net.now();
    let freed = net.run_services(&mut server, &mut (), Duration::from_secs(600), |s, _, _| {
        (s.active() == 0).then_some(())
    });
    assert!(
        freed.is_ok(),
        "the slot is still held after 10 minutes: {:?}",
        server.stats()
    );
    // The first DATA and 5 tries a second apart, then a second for the ERROR
    // that cannot leave either.
    let held = net.now() - taken;
    assert!(held <= Duration::from_secs(8), "held for {held}");
    let stats = server.stats();
    assert_eq!((stats.timeouts, stats.failed), (1, 1), "{stats:?}");
    assert_eq!(stats.retransmits, 0, "nothing was sent again: {stats:?}");
    // The slot's socket still holds that DATA for the ghost: the next request
    // on the slot is served all the same.
    let mut into = vec![0u8; data.len()];
    let mut get = get_into("f", &mut into);
    let (outcome, _) = run_client(&mut net, &mut server, &mut get);
    assert_eq!(outcome, Ok(50_000));
    assert!(into == data);
}

#[test]
fn an_error_to_an_address_that_never_resolves_does_not_silence_port_69() {
    big_stack(port_69_held_up_body);
}

fn port_69_held_up_body() {
    let shared = Box::new(SharedStore::new(Store::new(), [UploadLease::EMPTY; 2]));
    let mut net = net(23, FaultConfig::CLEAN);
    let small = || {
        let buffer =
            || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 8], vec![0; 2 * BUF]);
        udp::Socket::new(buffer(), buffer())
    };
    let listen = net.server.sockets.add(small());
    let slots = [net.server.sockets.add(small())];
    let mut server = TftpServer::<_, 1, BUF>::new(listen, slots, &*shared, ServerConfig::DEFAULT);
    run_for(&mut net, &mut server, &mut (), Duration::from_millis(10));
    // An ACK to port 69: its ERROR 4 waits for a neighbour that never answers.
    let ghost = smoltcp::wire::Ipv4Address::new(10, 0, 0, 99);
    let frame = forged_udp(ghost, 40_000, 69, &[0, 4, 0, 1]);
    net.inject_frame(smolsock::runner::sim::Direction::ClientToServer, &frame);
    // A real client sends the same every second, until it is answered.
    let stray = net.client.sockets.add(udp_socket());
    let to = IpEndpoint::new(SERVER_V4.into(), 69);
    let mut next = net.now();
    let answered = net
        .run_services(
            &mut server,
            &mut (),
            Duration::from_secs(60),
            |_, _, net| {
                let now = net.now();
                let socket = net.client.sockets.get_mut::<udp::Socket>(stray);
                if !socket.is_open() {
                    socket.bind(50_030).unwrap();
                }
                if now >= next {
                    socket.send_slice(&[0, 4, 0, 1], to).unwrap();
                    next = now + Duration::from_secs(1);
                }
                socket.recv().ok().map(|(data, _)| (data.to_vec(), now))
            },
        )
        .expect("port 69 answers again");
    assert_eq!(&answered.0[..4], &[0, 5, 0, 4], "ERROR 4");
    // Held for as long as a silent client is given (6 s by default), no longer.
    assert!(answered.1 - Duration::from_millis(10) <= smoltcp::time::Instant::from_secs(8));
}

#[test]
fn a_client_whose_server_never_resolves_times_out() {
    let mut net = net(25, FaultConfig::CLEAN);
    let buffer =
        || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 8], vec![0; 2 * (BUF + 1)]);
    let handle = net.client.sockets.add(udp::Socket::new(buffer(), buffer()));
    let mut into = vec![0u8; 100];
    let mut get = get_into("f", &mut into);
    let mut client = TftpClient::<_, { BUF + 1 }>::new(
        handle,
        50_000,
        IpEndpoint::new(smoltcp::wire::Ipv4Address::new(10, 0, 0, 99).into(), 69),
        &mut get,
    );
    let outcome = net
        .run_services(&mut (), &mut client, Duration::from_secs(600), |_, c, _| {
            c.is_done().then(|| c.outcome())
        })
        .expect("the client gives up");
    assert_eq!(outcome, Some(Err(TftpError::TimedOut)));
    // The request and 5 tries a second apart.
    assert!(
        net.now() <= smoltcp::time::Instant::from_secs(7),
        "{}",
        net.now()
    );
    assert_eq!(get.stats().retransmits, 0, "nothing was sent again");
}

/// A client whose final ACK of a get was lost asks, from the same port, for
/// another file: the server's transfer there still waits for that ACK, and
/// the new request is no repeat of its own.
#[test]
fn a_new_request_from_the_port_of_a_running_transfer_is_not_answered_with_the_old_file() {
    big_stack(new_request_from_a_running_port);
}

fn new_request_from_a_running_port() {
    let shared = Box::new(SharedStore::new(Store::new(), [UploadLease::EMPTY; 2]));
    let a = vec![b'A'; 100];
    let b = vec![b'B'; 100];
    shared
        .with_store(|s| {
            put_file(s, "a", &a);
            put_file(s, "b", &b);
        })
        .unwrap();
    let mut net = net(21, FaultConfig::CLEAN);
    let listen = net.server.sockets.add(udp_socket());
    let slots = [
        net.server.sockets.add(udp_socket()),
        net.server.sockets.add(udp_socket()),
    ];
    let mut server = TftpServer::<_, 2, BUF>::new(listen, slots, &*shared, ServerConfig::DEFAULT);
    // A get of "a" from the client's port 50000: its one DATA comes, and the
    // client's final ACK is lost (it is never sent here).
    let raw = net.client.sockets.add(udp_socket());
    let to = IpEndpoint::new(SERVER_V4.into(), 69);
    let mut sent = false;
    let first = net
        .run_services(&mut server, &mut (), Duration::from_secs(5), |_, _, net| {
            let socket = net.client.sockets.get_mut::<udp::Socket>(raw);
            if !sent {
                socket.bind(50_000).unwrap();
                socket.send_slice(b"\0\x01a\0octet\0", to).unwrap();
                sent = true;
            }
            socket.recv().ok().map(|(data, _)| data.to_vec())
        })
        .unwrap();
    assert_eq!(&first[..4], &[0, 3, 0, 1], "DATA 1 of a");
    net.client.sockets.remove(raw);
    // The client has its file and, from the same port, gets "b" next.
    let mut into = vec![0u8; 100];
    let mut get = get_into("b", &mut into);
    let (outcome, _) = run_client(&mut net, &mut server, &mut get);
    let stats = server.stats();
    assert!(
        outcome == Ok(100) && into == b,
        "the get of b ended {outcome:?} holding {:?}... ({stats})",
        String::from_utf8_lossy(&into[..8])
    );
}

#[test]
fn a_data_longer_than_the_slots_buffer_gets_error_4() {
    big_stack(oversize_data_body);
}

/// Sends a WRQ from the client host's port 50_020, then a DATA 1 of
/// `data_len` bytes to the slot's port; the first ERROR the client gets
/// within 3 s (its code), if any.
fn oversize_data(data_len: usize) -> Option<u16> {
    let shared = Box::new(SharedStore::new(Store::new(), [UploadLease::EMPTY; 2]));
    let mut net = net(21, FaultConfig::CLEAN);
    let listen = net.server.sockets.add(udp_socket());
    let slots = [net.server.sockets.add(udp_socket())];
    // Datagrams of up to 600 bytes: blocks of 512 (RFC 1350) fit.
    let mut server = TftpServer::<_, 1, 600>::new(listen, slots, &*shared, ServerConfig::DEFAULT);
    let a = net.client.sockets.add(udp_socket());
    let to = IpEndpoint::new(SERVER_V4.into(), 69);
    let wrq = [&[0u8, 2][..], b"big", b"\0octet\0"].concat();
    let mut data = vec![0u8, 3, 0, 1];
    data.extend(std::iter::repeat_n(7u8, data_len));
    let mut step = 0;
    net.run_services(&mut server, &mut (), Duration::from_secs(3), |_, _, net| {
        let sa = net.client.sockets.get_mut::<udp::Socket>(a);
        if step == 0 {
            sa.bind(50_020).unwrap();
            sa.send_slice(&wrq, to).unwrap();
            step = 1;
            return None;
        }
        let Ok((got, meta)) = sa.recv() else {
            return None;
        };
        let (got, from) = (got.to_vec(), meta.endpoint);
        if step == 1 && got == [0, 4, 0, 0] {
            sa.send_slice(&data, from).unwrap();
            step = 2;
        } else if got.starts_with(&[0, 5]) {
            return Some(u16::from_be_bytes([got[2], got[3]]));
        }
        None
    })
    .ok()
    .or_else(|| {
        eprintln!("server stats: {}", server.stats());
        None
    })
}

fn oversize_data_body() {
    // Longer than a block, within the slot's buffer: ERROR 4 at once.
    assert_eq!(oversize_data(590), Some(4), "control");
    // Longer than the slot's buffer: must be refused the same way.
    assert_eq!(oversize_data(1000), Some(4));
}

/// A UDP socket whose send ring holds `payload` bytes.
fn udp_socket_sending(payload: usize) -> udp::Socket<'static> {
    let rx = udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 32], vec![0; 32 * BUF]);
    let tx = udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 8], vec![0; payload]);
    udp::Socket::new(rx, tx)
}

#[test]
fn a_client_whose_send_ring_holds_one_datagram_gets_its_file() {
    big_stack(one_datagram_ring_body);
}

fn one_datagram_ring_body() {
    let data = pattern(3000);
    let shared = store_with_f(&data);
    let mut net = net(7, FaultConfig::CLEAN);
    let listen = net.server.sockets.add(udp_socket());
    let slots = [net.server.sockets.add(udp_socket())];
    let mut server = TftpServer::<_, 1, BUF>::new(listen, slots, &*shared, ServerConfig::DEFAULT);
    let mut into = vec![0u8; 4096];
    let get = get_into("f", &mut into);
    // Room for one datagram of the client's largest (BUF + 1), not two.
    let handle = net.client.sockets.add(udp_socket_sending(BUF + 1));
    let mut driver = client(handle, get);
    let outcome = net.run_services(
        &mut server,
        &mut driver,
        Duration::from_secs(600),
        |_, d, _| d.outcome(),
    );
    assert_eq!(outcome.ok(), Some(Ok(3000)));
    assert_eq!(&into[..3000], &data[..]);
}

#[test]
fn a_client_that_cannot_send_or_bind_ends_at_once() {
    let mut net = net(7, FaultConfig::CLEAN);
    let mut into = [0u8; 64];
    let get = |into| get_into("f", into);
    // A send ring smaller than a datagram of the transfer.
    let handle = net.client.sockets.add(udp_socket_sending(BUF));
    let mut driver = client(handle, get(&mut into));
    let outcome = net.run_services(&mut (), &mut driver, Duration::from_secs(600), |_, d, _| {
        d.outcome()
    });
    assert_eq!(outcome.ok(), Some(Err(TftpError::BufferTooSmall)));
    assert!(driver.is_done());
    // Bytes enough, but no packet slot.
    let mut into = [0u8; 64];
    let no_slot = udp::Socket::new(
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 4], vec![0; 4 * BUF]),
        udp::PacketBuffer::new(vec![], vec![0; 4 * BUF]),
    );
    let handle = net.client.sockets.add(no_slot);
    let mut driver = client(handle, get(&mut into));
    let outcome = net.run_services(&mut (), &mut driver, Duration::from_secs(600), |_, d, _| {
        d.outcome()
    });
    assert_eq!(outcome.ok(), Some(Err(TftpError::BufferTooSmall)));
    assert!(driver.is_done());
    // Port 0.
    let handle = net.client.sockets.add(udp_socket());
    let mut into = [0u8; 64];
    let mut driver = TftpClient::<_, { BUF + 1 }>::new(
        handle,
        0,
        IpEndpoint::new(SERVER_V4.into(), 69),
        get(&mut into),
    );
    let outcome = net.run_services(&mut (), &mut driver, Duration::from_secs(600), |_, d, _| {
        d.outcome()
    });
    assert_eq!(outcome.ok(), Some(Err(TftpError::Unbound)));
    assert!(driver.is_done());
}

/// Strangers' datagrams to `port`, `before` of them, each answered ERROR 5 (24
/// B): those to a resolving host leave, the next to a ghost that never answers
/// ARP stays at the head of `slot`'s send ring part way round it, and `before -
/// 1` more queue behind it: with a ring of `before + 1` packet slots, one is
/// left. `idle` lets the server take them.
fn wedge(
    net: &mut SimNet<'static>,
    slot: SocketHandle,
    port: u16,
    before: u16,
    idle: &mut dyn FnMut(&mut SimNet<'static>),
) {
    use smolsock::runner::sim::{CLIENT_V4, Direction};
    let ghost = smoltcp::wire::Ipv4Address::new(10, 0, 0, 99);
    for i in 0..before {
        let stray = forged_udp(CLIENT_V4, 40_000 + i, port, &[0, 4, 0, 1]);
        net.inject_frame(Direction::ClientToServer, &stray);
    }
    let stuck = forged_udp(ghost, 40_000, port, &[0, 4, 0, 1]);
    net.inject_frame(Direction::ClientToServer, &stuck);
    idle(net);
    assert_eq!(net.server.sockets.get::<udp::Socket>(slot).send_queue(), 24);
    for i in 1..before {
        let behind = forged_udp(ghost, 41_000 + i, port, &[0, 4, 0, 1]);
        net.inject_frame(Direction::ClientToServer, &behind);
    }
    idle(net);
    let queued = net.server.sockets.get::<udp::Socket>(slot).send_queue();
    assert_eq!(queued, usize::from(before) * 24);
}

#[test]
fn a_datagram_held_for_a_socket_that_never_drains_does_not_silence_the_server() {
    big_stack(held_for_ever_body);
}

fn held_for_ever_body() {
    use smolsock::runner::sim::{CLIENT_V4, Direction};
    const SMALL: usize = 516;
    let data = pattern(50_000);
    let shared = store_with_f(&data);
    let mut net = net(5, FaultConfig::CLEAN);
    let listen = net.server.sockets.add(udp_socket());
    // A slot whose send ring wraps with room for three datagrams in bytes,
    // before its packet slots run out.
    let slot = net.server.sockets.add(udp::Socket::new(
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 32], vec![0; 32 * BUF]),
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 23], vec![0; 1564]),
    ));
    let mut server =
        TftpServer::<_, 1, SMALL>::new(listen, [slot], &*shared, ServerConfig::DEFAULT);
    run_for(&mut net, &mut server, &mut (), Duration::from_millis(10));
    // A get from a port where nobody listens: its DATA 1 leaves, unanswered.
    let rrq = forged_udp(CLIENT_V4, 50_001, 69, b"\0\x01f\0octet\0");
    net.inject_frame(Direction::ClientToServer, &rrq);
    net.run_services(&mut server, &mut (), Duration::from_secs(1), |s, _, _| {
        let queued = s.active() == 1;
        queued.then_some(())
    })
    .expect("the request took the slot");
    run_for(&mut net, &mut server, &mut (), Duration::from_millis(10));
    let sent = net.server.sockets.get::<udp::Socket>(slot);
    assert_eq!(sent.send_queue(), 0, "DATA 1 left");
    let port = sent.endpoint().port;
    wedge(&mut net, slot, port, 22, &mut |net| {
        run_for(net, &mut server, &mut (), Duration::from_millis(10))
    });
    // DATA 1 again (after a second) must wrap, with one packet slot left: the
    // socket refuses it. The slot is freed by time all the same, and the next
    // get is read and served.
    net.run_services(&mut server, &mut (), Duration::from_secs(600), |s, _, _| {
        (s.active() == 0).then_some(())
    })
    .expect("the slot is freed");
    let mut into = vec![0u8; data.len()];
    let mut get = get_into("f", &mut into);
    let handle = net.client.sockets.add(udp_socket());
    let mut driver = client(handle, &mut get);
    let outcome = net
        .run_services(
            &mut server,
            &mut driver,
            Duration::from_secs(60),
            |_, d, _| d.outcome(),
        )
        .map_err(|e| format!("{e}: {:?}", server.stats()));
    assert_eq!(outcome, Ok(Ok(50_000)));
    assert!(into == data);
}

#[test]
fn a_slot_holding_a_datagram_its_socket_refused_does_not_stop_the_others() {
    big_stack(one_slot_holds_body);
}

fn one_slot_holds_body() {
    use smolsock::runner::sim::{CLIENT_V4, Direction};
    const SMALL: usize = 516;
    let data = pattern(300_000);
    let shared = store_with_f(&data);
    let mut net = net(5, FaultConfig::CLEAN);
    let listen = net.server.sockets.add(udp_socket());
    // Slot 0's send ring: 44 packet slots, 2,066 bytes (its receive ring takes
    // all that comes below at once).
    let wedged = net.server.sockets.add(udp::Socket::new(
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 64], vec![0; 64 * BUF]),
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 44], vec![0; 2066]),
    ));
    let slots = [wedged, net.server.sockets.add(udp_socket())];
    let mut server = TftpServer::<_, 2, SMALL>::new(listen, slots, &*shared, ServerConfig::DEFAULT);
    // Port 69 bound, an upload from a port where nobody listens takes slot 0.
    run_for(&mut net, &mut server, &mut (), Duration::from_millis(10));
    let wrq = forged_udp(CLIENT_V4, 50_001, 69, b"\0\x02up\0octet\0");
    net.inject_frame(Direction::ClientToServer, &wrq);
    run_for(&mut net, &mut server, &mut (), Duration::from_millis(10));
    assert_eq!(server.active(), 1, "the upload took slot 0");
    let port = net
        .server
        .sockets
        .get::<udp::Socket>(wedged)
        .endpoint()
        .port;
    wedge(&mut net, wedged, port, 43, &mut |net| {
        run_for(net, &mut server, &mut (), Duration::from_millis(10))
    });
    // The upload's last block: its ACK needs the padding's packet slot, is
    // refused, and held; the upload dallies, and its client sends the block
    // again every second, as it would.
    let mut last = vec![0, 3, 0, 1];
    last.extend_from_slice(&[7; 100]);
    let last = forged_udp(CLIENT_V4, 50_001, port, &last);
    net.inject_frame(Direction::ClientToServer, &last);
    run_for(&mut net, &mut server, &mut (), Duration::from_millis(10));
    // Meanwhile a get of 300,000 bytes takes slot 1: the datagram slot 0 holds
    // does not stop it.
    let mut into = vec![0u8; data.len()];
    let mut get = get_into("f", &mut into);
    let handle = net.client.sockets.add(udp_socket());
    let mut driver = client(handle, &mut get);
    let mut outcome = None;
    for _ in 0..10 {
        net.inject_frame(Direction::ClientToServer, &last);
        let ended = net.run_services(
            &mut server,
            &mut driver,
            Duration::from_secs(1),
            |_, d, _| d.outcome(),
        );
        if let Ok(ended) = ended {
            outcome = Some(ended);
            break;
        }
    }
    assert_eq!(outcome, Some(Ok(300_000)), "{:?}", server.stats());
    assert!(into == data);
}

#[test]
fn a_last_error_the_socket_refused_goes_once_the_ring_drains() {
    big_stack(last_error_body);
}

fn last_error_body() {
    use smolsock::runner::sim::{CLIENT_V4, Direction};
    // Datagrams of 40 bytes at most (blocks of 32), so that a ring small
    // enough to wrap before a 22-byte ERROR still passes the room check.
    const TINY: usize = 40;
    let shared = store_with_f(&pattern(1_000));
    let mut net = net(5, FaultConfig::CLEAN);
    let listen = net.server.sockets.add(udp_socket());
    // Three strays' ERROR 5s (24 B each) leave, the ghost's stays at byte 72
    // with two more behind it, up to byte 144: 8 bytes to the ring's end, and
    // one of its four packet slots free.
    let slot = net.server.sockets.add(udp::Socket::new(
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 32], vec![0; 32 * BUF]),
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 4], vec![0; 152]),
    ));
    let mut server = TftpServer::<_, 1, TINY>::new(listen, [slot], &*shared, ServerConfig::DEFAULT);
    // What reaches the uploader's port on the client host.
    let uploader = net.client.sockets.add(udp_socket());
    net.client
        .sockets
        .get_mut::<udp::Socket>(uploader)
        .bind(50_001)
        .unwrap();
    run_for(&mut net, &mut server, &mut (), Duration::from_millis(10));
    let wrq = forged_udp(CLIENT_V4, 50_001, 69, b"\0\x02up\0octet\0blksize\x0032\0");
    net.inject_frame(Direction::ClientToServer, &wrq);
    run_for(&mut net, &mut server, &mut (), Duration::from_millis(10));
    assert_eq!(server.active(), 1, "the upload took the slot");
    let port = net.server.sockets.get::<udp::Socket>(slot).endpoint().port;
    wedge(&mut net, slot, port, 3, &mut |net| {
        run_for(net, &mut server, &mut (), Duration::from_millis(10))
    });
    // An ACK to an upload: the transfer fails, and its ERROR 4 (22 B) needs
    // the padding's packet slot: refused, and kept.
    net.inject_frame(
        Direction::ClientToServer,
        &forged_udp(CLIENT_V4, 50_001, port, &[0, 4, 0, 0]),
    );
    run_for(&mut net, &mut server, &mut (), Duration::from_millis(10));
    assert_eq!(server.stats().failed, 1);
    let queued = net.server.sockets.get::<udp::Socket>(slot).send_queue();
    assert_eq!(
        queued,
        3 * 24 + 8,
        "the ERROR refused: only its padding went in"
    );
    // The ghost answers ARP: the ring drains, and the kept ERROR goes.
    let ghost = smoltcp::wire::Ipv4Address::new(10, 0, 0, 99);
    net.inject_frame(
        Direction::ClientToServer,
        &forged_arp(smoltcp::wire::ArpOperation::Reply, ghost),
    );
    run_for(&mut net, &mut server, &mut (), Duration::from_millis(500));
    let socket = net.client.sockets.get_mut::<udp::Socket>(uploader);
    let mut got = Vec::new();
    while let Ok((datagram, _)) = socket.recv() {
        got.push(datagram.to_vec());
    }
    assert!(
        got.iter().any(|d| d.starts_with(&[0, 5, 0, 4])),
        "no ERROR 4 reached the uploader: {got:?}"
    );
}

#[test]
fn a_socket_missing_from_the_set_is_counted_and_ends_a_client_never_a_panic() {
    big_stack(socket_missing_body);
}

fn socket_missing_body() {
    let mut net = net(12, FaultConfig::CLEAN);
    let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
    let listen = net.server.sockets.add(udp_socket());
    let slots = [net.server.sockets.add(udp_socket())];
    let mut server = TftpServer::<_, 1, BUF>::new(listen, slots, &shared, ServerConfig::DEFAULT);
    let mut empty = SocketSet::new(Vec::new());
    let now = net.now();

    // A server polled with a set that lacks its sockets skips them and counts
    // them: the listener and the slot, twice.
    server.poll(&mut empty, now);
    server.poll(&mut empty, now);
    assert_eq!(server.missing_sockets(), 4);
    // With its own set, nothing more is missing, and it serves.
    let mut sink = [0u8; 16];
    let mut get = get_into("nothing", &mut sink);
    let (outcome, _) = run_client(&mut net, &mut server, &mut get);
    assert_eq!(
        outcome,
        Err(TftpError::Peer(
            smolsock::tftp::packet::ErrorCode::FileNotFound
        ))
    );
    assert_eq!(server.missing_sockets(), 4);

    // A client whose set loses its socket mid-transfer ends the transfer with
    // an error at once, instead of waiting for a socket that will not come:
    // done, with no deadline left; later polls (even with a set where its
    // handle names a socket) leave that socket alone.
    let handle = net.client.sockets.add(udp_socket());
    let mut get = get_into("f", &mut sink);
    let mut driver = client(handle, &mut get);
    driver.poll(&mut net.client.sockets, now);
    assert!(
        driver.poll_at(&net.client.sockets).is_some(),
        "the request's retry"
    );
    driver.poll(&mut empty, now);
    assert_eq!(driver.outcome(), Some(Err(TftpError::SocketMissing)));
    assert!(driver.is_done());
    assert_eq!(driver.poll_at(&empty), None);
    let socket = net.client.sockets.get::<udp::Socket>(handle);
    let before = (socket.endpoint(), socket.send_queue(), socket.is_open());
    driver.poll(&mut net.client.sockets, now + Duration::from_secs(3600));
    let socket = net.client.sockets.get::<udp::Socket>(handle);
    assert_eq!(
        (socket.endpoint(), socket.send_queue(), socket.is_open()),
        before
    );
    assert_eq!(driver.outcome(), Some(Err(TftpError::SocketMissing)));
    assert_eq!(driver.poll_at(&net.client.sockets), None);

    // A server whose slot's socket is missing gives it no request: with one
    // slot, every client is told the server is busy, at once.
    let mut net = self::net(14, FaultConfig::CLEAN);
    let mut far = SocketSet::new(Vec::new());
    let ghost = (0..8).map(|_| far.add(udp_socket())).last().unwrap();
    let listen = net.server.sockets.add(udp_socket());
    let mut ghostly = TftpServer::<_, 1, BUF>::new(listen, [ghost], &shared, ServerConfig::DEFAULT);
    let mut get = get_into("nothing", &mut sink);
    let (outcome, _) = run_client(&mut net, &mut ghostly, &mut get);
    assert_eq!(
        outcome,
        Err(TftpError::Peer(
            smolsock::tftp::packet::ErrorCode::NotDefined
        ))
    );
    assert_eq!(ghostly.stats().pool_full, 1);
    assert_eq!(
        (ghostly.active(), ghostly.poll_at(&net.server.sockets)),
        (0, None)
    );
}

#[test]
fn a_transfer_whose_socket_goes_missing_ends_and_frees_its_slot() {
    big_stack(transfer_socket_missing_body);
}

fn transfer_socket_missing_body() {
    let mut net = net(13, FaultConfig::CLEAN);
    let data = pattern(200_000);
    let shared = store_with_f(&data);
    let listen = net.server.sockets.add(udp_socket());
    let slots = [net.server.sockets.add(udp_socket())];
    let mut server = TftpServer::<_, 1, BUF>::new(listen, slots, &*shared, ServerConfig::DEFAULT);
    let mut into = vec![0u8; data.len()];
    let mut get = get_into("f", &mut into);
    let handle = net.client.sockets.add(udp_socket());
    let mut driver = client(handle, &mut get);
    // Under way: some blocks sent.
    net.run_services(
        &mut server,
        &mut driver,
        Duration::from_secs(10),
        |s, _, _| (s.active() == 1 && s.stats().bytes_sent > 10_000).then_some(()),
    )
    .unwrap();
    // Polled once with a set that lacks its sockets: the transfer ends, counted
    // as failed, the slot is free and no deadline is left to poll for.
    let mut empty = SocketSet::new(Vec::new());
    server.poll(&mut empty, net.now());
    assert_eq!(server.active(), 0);
    assert_eq!(server.stats().failed, 1);
    assert_eq!(server.poll_at(&empty), None);
    assert_eq!(server.missing_sockets(), 2);
    // With its own set again, the slot serves the next client whole.
    drop(driver);
    net.client.sockets.remove(handle);
    let mut again = vec![0u8; data.len()];
    let mut get = get_into("f", &mut again);
    let (outcome, _) = run_client(&mut net, &mut server, &mut get);
    assert_eq!(outcome, Ok(data.len() as u64));
    assert!(again == data);
    assert_eq!(server.missing_sockets(), 2);
}

#[test]
fn a_new_request_from_a_running_transfers_port_goes_to_a_slot_with_a_socket() {
    big_stack(new_request_missing_slot_body);
}

fn new_request_missing_slot_body() {
    let mut net = net(15, FaultConfig::CLEAN);
    let shared = store_with_f(&pattern(200_000));
    shared.with_store(|s| put_file(s, "b", b"bee")).unwrap();
    let listen = net.server.sockets.add(udp_socket());
    let slots = [
        net.server.sockets.add(udp_socket()),
        net.server.sockets.add(udp_socket()),
    ];
    let mut server = TftpServer::<_, 2, BUF>::new(listen, slots, &*shared, ServerConfig::DEFAULT);
    // Requests from one client port, each reaching port 69's socket before
    // the server's next poll reads it (or them).
    fn ask(
        net: &mut SimNet<'static>,
        server: &mut dyn Service,
        listen: SocketHandle,
        file: &[u8],
        times: usize,
    ) {
        use smolsock::runner::sim::{CLIENT_V4, Direction};
        let mut rrq = vec![0, 1];
        rrq.extend_from_slice(file);
        rrq.extend_from_slice(b"\0octet\0");
        for _ in 0..times {
            net.inject_frame(
                Direction::ClientToServer,
                &forged_udp(CLIENT_V4, 50_000, 69, &rrq),
            );
            net.advance(None);
            net.poll();
        }
        assert_eq!(
            net.server.sockets.get::<udp::Socket>(listen).recv_queue(),
            times * rrq.len()
        );
        let now = net.now();
        server.poll(&mut net.server.sockets, now);
    }
    // Port 69 is bound at the first poll. The get of "f" runs in the first
    // slot (its DATA goes nowhere).
    let now = net.now();
    server.poll(&mut net.server.sockets, now);
    ask(&mut net, &mut server, listen, b"f", 1);
    assert_eq!(server.active(), 1);
    // That slot's socket leaves the set; the same port asks for "b", twice (a
    // client sending its request again): "b" goes to the slot with a socket,
    // and its repeat is known for a repeat, not refused as to a busy server.
    net.server.sockets.remove(slots[0]);
    ask(&mut net, &mut server, listen, b"b", 2);
    let stats = server.stats();
    assert_eq!((server.active(), stats.failed), (1, 1), "{stats}");
    assert_eq!((stats.duplicates, stats.pool_full), (1, 0), "{stats}");
}
