//! The socket options set on each connection: a session that asks for no delay
//! (`Session::no_delay`: the framed sessions, the transfer server and the transfer
//! client's operations) gets Nagle and delayed ACK off whatever `ServerConfig` says
//! (the stall `tap_bench` found with the defaults), from the pool on the server
//! and from `TcpSession` on the client; other sessions keep the configured ones.

mod common_sim;

/// `tap_server`'s services, for its `Logged` wrapper.
#[path = "../examples/tap_common/all_services.rs"]
mod all_services;

use common_sim::*;
use smolsock::net::{ClientState, PortAllocator, ServerConfig, Service, TcpClient, TcpSession};
use smolsock::runner::sim::{FaultConfig, SERVER_V4};
use smolsock::session::{Echo, Framed, FramedEcho, Session, StreamingEcho};
use smoltcp::socket::{Socket, tcp};
use smoltcp::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

/// Nagle and the ACK delay of every established server socket.
fn server_options(net: &mut Net) -> Vec<(bool, Option<Duration>)> {
    net.server
        .sockets
        .iter()
        .filter_map(|(_, socket)| match socket {
            Socket::Tcp(tcp) if tcp.state() == tcp::State::Established => {
                Some((tcp.nagle_enabled(), tcp.ack_delay()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_framed_server_turns_nagle_and_delayed_ack_off_with_the_default_config() {
    let mut net = sim(61, FaultConfig::CLEAN, 1, 1);
    let sessions = [Framed::new(FramedEcho::new(), [0u8; 1028], [0u8; 1028], format()).unwrap()];
    let mut server = serve(
        &mut net,
        9000,
        (4096, 4096),
        sessions,
        ServerConfig::DEFAULT,
    );
    let mut ports = PortAllocator::new(61);
    let mut client = Client::new(&mut net, (4096, 4096), FramedPeer::new(frames(3, 1024)));
    client.connect(&mut net, (SERVER_V4, 9000), &mut ports);
    net.run_services(&mut server, &mut client, LIMIT, |_, client, _| {
        client.done().then_some(())
    })
    .unwrap();
    assert_eq!(server_options(&mut net), [(false, None)]);
}

#[test]
fn a_raw_server_keeps_the_configured_nagle_and_smoltcps_ack_delay() {
    let mut net = sim(62, FaultConfig::CLEAN, 1, 1);
    let mut server = serve(
        &mut net,
        7,
        (4096, 4096),
        [Echo::new()],
        ServerConfig::DEFAULT,
    );
    let mut ports = PortAllocator::new(62);
    let mut client = Client::new(&mut net, (4096, 4096), RawEcho::new(bytes(3000)));
    client.connect(&mut net, (SERVER_V4, 7), &mut ports);
    net.run_services(&mut server, &mut client, LIMIT, |_, client, _| {
        client.done().then_some(())
    })
    .unwrap();
    assert_eq!(
        server_options(&mut net),
        [(true, Some(Duration::from_millis(10)))]
    );
}

#[test]
fn the_transfer_server_turns_nagle_and_delayed_ack_off_with_the_default_config() {
    use smolsock::store::RamStore;
    use smolsock::transfer::{SharedStore, TransferServer, UploadLease};

    let mut net = sim(63, FaultConfig::CLEAN, 1, 1);
    let shared = SharedStore::new(RamStore::<2, 4096>::new(), [UploadLease::EMPTY; 1]);
    let slot = TransferServer::new(&shared, [0u8; 1028], [0u8; 1028]).unwrap();
    let mut server = serve(&mut net, 2121, (4096, 4096), [slot], ServerConfig::DEFAULT);
    let mut ports = PortAllocator::new(63);
    let mut client = Client::new(&mut net, (4096, 4096), RawEcho::new(Vec::new()));
    client.connect(&mut net, (SERVER_V4, 2121), &mut ports);
    net.run_services(&mut server, &mut client, LIMIT, |server, _, _| {
        (server.stats().accepted == 1).then_some(())
    })
    .unwrap();
    assert_eq!(server_options(&mut net), [(false, None)]);
}

/// The options of the server's socket once a framed client got its echoes from a
/// one-slot server holding `session`.
fn options_of_a_framed_connection<S: Session>(
    seed: u64,
    session: S,
) -> Vec<(bool, Option<Duration>)> {
    let mut net = sim(seed, FaultConfig::CLEAN, 1, 1);
    let mut server = serve(
        &mut net,
        9000,
        (4096, 4096),
        [session],
        ServerConfig::DEFAULT,
    );
    let mut ports = PortAllocator::new(seed);
    let mut client = Client::new(&mut net, (4096, 4096), FramedPeer::new(frames(3, 1024)));
    client.connect(&mut net, (SERVER_V4, 9000), &mut ports);
    net.run_services(&mut server, &mut client, LIMIT, |_, client, _| {
        client.done().then_some(())
    })
    .unwrap();
    server_options(&mut net)
}

#[test]
fn a_framed_session_inside_a_wrapper_still_sets_its_socket_options() {
    let framed = || Framed::new(FramedEcho::new(), [0u8; 1028], [0u8; 1028], format()).unwrap();
    let off = [(false, None)];
    assert_eq!(
        options_of_a_framed_connection(64, Recording::new(framed())),
        off,
        "the tests' Recording"
    );
    let logged = all_services::Logged::new("framed echo", 9000, framed());
    assert_eq!(
        options_of_a_framed_connection(65, logged),
        off,
        "tap_server's Logged"
    );
    let mut in_a_static = framed();
    assert_eq!(
        options_of_a_framed_connection(66, &mut in_a_static),
        off,
        "a &mut, as the firmware holds its sessions"
    );
}

#[test]
fn a_streaming_framed_echo_turns_nagle_and_delayed_ack_off_too() {
    let echo = StreamingEcho::new([0u8; 64], format()).unwrap();
    assert_eq!(options_of_a_framed_connection(69, echo), [(false, None)]);
}

/// Nagle and the ACK delay of every established client socket.
fn client_options(net: &mut Net) -> Vec<(bool, Option<Duration>)> {
    net.client
        .sockets
        .iter()
        .filter_map(|(_, socket)| match socket {
            Socket::Tcp(tcp) if tcp.state() == tcp::State::Established => {
                Some((tcp.nagle_enabled(), tcp.ack_delay()))
            }
            _ => None,
        })
        .collect()
}

/// Connects a client socket to `port` and runs `session` on it with a
/// `TcpSession` until `done` says so; gives the client socket's options then.
fn options_of_a_client_session<S: Session, V: Service>(
    net: &mut Net,
    server: &mut V,
    port: u16,
    session: S,
    mut done: impl FnMut(&mut TcpSession<S>) -> bool,
) -> Vec<(bool, Option<Duration>)> {
    let handle = net.client.sockets.add(tcp_socket(4096, 4096));
    let mut ports: PortAllocator = PortAllocator::new(u64::from(port));
    let mut connector = TcpClient::new(Duration::from_secs(30));
    let now = net.now();
    let (socket, cx) = net
        .client
        .socket_and_context::<tcp::Socket>(handle)
        .unwrap();
    connector
        .connect(cx, socket, (SERVER_V4, port), &mut ports, now)
        .unwrap();
    let mut conn = TcpSession::new(handle, session);
    net.run_services(server, &mut (), LIMIT, |_, _, net| {
        let now = net.now();
        let socket = net.client.sockets.get_mut::<tcp::Socket>(handle);
        if connector.poll(socket, now) != ClientState::Connected {
            return None;
        }
        conn.poll(&mut net.client.sockets, now).unwrap();
        done(&mut conn).then_some(())
    })
    .unwrap();
    client_options(net)
}

#[test]
fn a_transfer_client_operation_turns_nagle_and_delayed_ack_off_on_its_socket() {
    use smolsock::session::Request;
    use smolsock::store::{FileName, RamStore};
    use smolsock::transfer::{SharedStore, TransferClient, TransferServer, UploadLease};
    use smolsock::wire::transfer::ErrorCode;

    let mut net = sim(67, FaultConfig::CLEAN, 1, 1);
    let shared = SharedStore::new(RamStore::<2, 4096>::new(), [UploadLease::EMPTY; 1]);
    let slot = TransferServer::new(&shared, [0u8; 1028], [0u8; 1028]).unwrap();
    let mut server = serve(&mut net, 2121, (4096, 4096), [slot], ServerConfig::DEFAULT);
    let mut client = TransferClient::new([0u8; 1028], [0u8; 1028]).unwrap();
    let stat = client.stat(FileName::new("none").unwrap());
    let mut outcome = None;
    let options = options_of_a_client_session(&mut net, &mut server, 2121, stat, |conn| {
        outcome = outcome.take().or_else(|| conn.session_mut().outcome());
        outcome.is_some()
    });
    // The request went both ways (HELLO, STAT, their answers) on that socket.
    assert_eq!(
        outcome.unwrap().unwrap_err().code(),
        Some(ErrorCode::NotFound)
    );
    assert_eq!(options, [(false, None)]);
}

#[test]
fn a_client_session_that_does_not_ask_keeps_smoltcps_defaults() {
    let mut net = sim(68, FaultConfig::CLEAN, 1, 1);
    let mut server = serve(
        &mut net,
        7,
        (4096, 4096),
        [Echo::new()],
        ServerConfig::DEFAULT,
    );
    let options = options_of_a_client_session(&mut net, &mut server, 7, Echo::new(), |_| true);
    assert_eq!(options, [(true, Some(Duration::from_millis(10)))]);
}
