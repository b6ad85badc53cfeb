//! TFTP on udp/69 from the file store, through smolsock's async TFTP adapter
//! (`smolsock::tftp::asynch::Server`): one transfer at a time, each served from
//! a port of its own (RFC 1350's transfer ID, from 49152 up), a request
//! meanwhile answered with a busy ERROR; RFC 1350's 512-byte blocks (a client
//! may ask for less).
//!
//! | socket | receive | send |
//! |---|---|---|
//! | udp/69, requests | 1 datagram, 256 B | 1 datagram, 64 B (the busy ERROR) |
//! | the transfer's port | 2 datagrams, 520 B | 1 datagram, 517 B |
//!
//! and the adapter's buffers: 256 B for a request (a longer one is dropped: a
//! name of up to about 200 bytes with every option fits), 517 B for a DATA (and
//! a byte to spare, by which a longer one is seen).
//! Uploads take one of the store's upload leases, as a tcp/2121 upload does.
//!
//! Built with `--features tftp` only: the task (3,704 B) and two more socket
//! slots (816 B) take 4,520 B of RAM, which leaves the stack 1,096 B of the
//! 64 KiB budget against the 4,272 B it was measured to use; that build gets
//! 72 KiB of RAM (build.rs). Flash: 15,792 B more, 133,668 B in all, 2,596 B
//! over the 128 KiB: that build gets 136 KiB. (2026-12-07, rustc 1.95.0:
//! `../firmware/cargo-remap.sh build --release --features tftp`, the source
//! paths remapped, measured with `llvm-size` and `llvm-nm`, the README's TFTP
//! section.)

use embassy_executor::Spawner;
use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::{IpEndpoint, Stack};
use embassy_time::{Duration, with_timeout};
use smolsock::asynch::DatagramSocket;
use smolsock::tftp::asynch::{Server, TransferSocket};
use smolsock::tftp::{PORT, ServerConfig};
use smolsock::transfer::SharedStore;

use crate::services::{EmbassyClock, Store};
use crate::unwrap_spawn;

/// The sockets the task holds: port 69 and the transfer's.
pub const SOCKETS: usize = 2;

const REQUEST: usize = 256;
const DATAGRAM: usize = 512 + 4 + 1;
const TRANSFER_RX: usize = 2 * 260;
/// A send waits for room at most this long: then the datagram counts as lost,
/// and what holds the queue (a datagram to a neighbour that never answers,
/// which the stack keeps at its head for ever) is dropped with it.
const SEND_WAIT: Duration = Duration::from_secs(1);

/// embassy-net's `UdpSocket` as smolsock's datagram socket.
pub struct Udp<'a>(pub UdpSocket<'a>);

/// Why a datagram did not go or come.
#[derive(Debug)]
#[allow(dead_code)] // Read through `Debug` only.
pub enum UdpError {
    Send(embassy_net::udp::SendError),
    SendTimedOut,
    Recv(embassy_net::udp::RecvError),
}

impl DatagramSocket for Udp<'_> {
    type Addr = IpEndpoint;
    type Error = UdpError;

    async fn send_to(&mut self, datagram: &[u8], to: IpEndpoint) -> Result<(), UdpError> {
        match with_timeout(SEND_WAIT, self.0.send_to(datagram, to)).await {
            Ok(sent) => sent.map_err(UdpError::Send),
            Err(_) => {
                // Closing empties both queues; the socket is bound again at
                // once, on the same port, so no request is refused meanwhile.
                let port = self.0.endpoint();
                self.0.close();
                if self.0.bind(port).is_err() {
                    crate::fatal("tftp: bind again failed");
                }
                Err(UdpError::SendTimedOut)
            }
        }
    }

    async fn recv_from(&mut self, buf: &mut [u8]) -> Result<(usize, IpEndpoint), UdpError> {
        let (n, meta) = self.0.recv_from(buf).await.map_err(UdpError::Recv)?;
        Ok((n, meta.endpoint))
    }

    fn same_host(a: &IpEndpoint, b: &IpEndpoint) -> bool {
        a.addr == b.addr
    }
}

impl TransferSocket for Udp<'_> {
    fn rebind(&mut self, port: u16) -> bool {
        // Closing empties both queues: a late datagram of the last transfer
        // finds no socket on its port.
        self.0.close();
        self.0.bind(port).is_ok()
    }
}

/// Spawns the TFTP task over `store`.
pub fn spawn(spawner: Spawner, stack: Stack<'static>, store: &'static SharedStore<Store>) {
    spawner.spawn(unwrap_spawn(tftp_task(stack, store)));
    log::info!("tftp: udp/{PORT}, one transfer at a time, each from a port of its own");
}

#[embassy_executor::task]
async fn tftp_task(stack: Stack<'static>, store: &'static SharedStore<Store>) -> ! {
    let (mut listen_rx_meta, mut listen_tx_meta) =
        ([PacketMetadata::EMPTY; 1], [PacketMetadata::EMPTY; 1]);
    let (mut listen_rx, mut listen_tx) = ([0u8; REQUEST], [0u8; 64]);
    let (mut port_rx_meta, mut port_tx_meta) =
        ([PacketMetadata::EMPTY; 2], [PacketMetadata::EMPTY; 1]);
    let (mut port_rx, mut port_tx) = ([0u8; TRANSFER_RX], [0u8; DATAGRAM]);
    let mut listen = Udp(UdpSocket::new(
        stack,
        &mut listen_rx_meta,
        &mut listen_rx,
        &mut listen_tx_meta,
        &mut listen_tx,
    ));
    let mut port = Udp(UdpSocket::new(
        stack,
        &mut port_rx_meta,
        &mut port_rx,
        &mut port_tx_meta,
        &mut port_tx,
    ));
    // The transfer socket is bound for each transfer, to a port of its own.
    if listen.0.bind(PORT).is_err() {
        crate::fatal("tftp: bind failed");
    }
    let (mut request, mut datagram) = ([0u8; REQUEST], [0u8; DATAGRAM]);
    let mut server = Server::new(store, ServerConfig::DEFAULT);
    server
        .run(
            &mut listen,
            &mut port,
            &EmbassyClock,
            &mut request,
            &mut datagram,
        )
        .await
}
