//! The socket options a server sets on each connection it accepts: framed
//! servers turn Nagle and delayed ACK off whatever `ServerConfig` says (the stall
//! `tap_bench` found with the defaults), other servers keep the configured ones.

mod common_sim;

/// `tap_server`'s services, for its `Logged` wrapper.
#[path = "../examples/tap_common/all_services.rs"]
mod all_services;

use common_sim::*;
use smolsock::net::{Framed, Handler, PortAllocator, ServerConfig};
use smolsock::runner::sim::{FaultConfig, SERVER_V4};
use smolsock::service::echo::Echo;
use smolsock::service::framed_echo::FramedEcho;
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
    let handlers = [Framed::new(FramedEcho::new(), [0u8; 1028], format()).unwrap()];
    let mut server = serve(
        &mut net,
        9000,
        (4096, 4096),
        handlers,
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
    use smolsock::service::transfer::{SharedStore, TransferServer, UploadLease};
    use smolsock::store::RamStore;

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
/// one-slot server holding `handler`.
fn options_of_a_framed_connection<H: Handler>(
    seed: u64,
    handler: H,
) -> Vec<(bool, Option<Duration>)> {
    let mut net = sim(seed, FaultConfig::CLEAN, 1, 1);
    let mut server = serve(
        &mut net,
        9000,
        (4096, 4096),
        [handler],
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
fn a_framed_handler_inside_a_wrapper_still_sets_its_socket_options() {
    let framed = || Framed::new(FramedEcho::new(), [0u8; 1028], format()).unwrap();
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
        "a &mut, as the firmware holds its handlers"
    );
}
