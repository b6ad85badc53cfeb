//! Whatever does nothing unless it is polled, run or driven is `#[must_use]`:
//! made and dropped unused, it is a warning. Each statement below expects that
//! warning; one that no longer gets it is an unfulfilled expectation, which this
//! file denies, so the test stops compiling.
#![deny(unfulfilled_lint_expectations)]

use smolsock::asynch::DatagramSocket;
use smolsock::http::{HttpResponder, StatusSite};
use smolsock::net::{
    TcpClient, TcpServer, TcpSession, TftpClient, TftpServer, UdpEcho, UdpService,
};
use smolsock::session::{Echo, Framed, FramedEcho, StreamingEcho};
use smolsock::store::{FileName, RamStore};
use smolsock::tftp::{self, ClientConfig, ClientGet, ClientPut, ServerTransfer};
use smolsock::transfer::{SharedStore, SliceSink, TransferServer, UploadLease};
use smolsock::wire::frame::HeaderFormat;
use smolsock::{asynch, blocking};
use smoltcp::iface::SocketSet;
use smoltcp::socket::{tcp, udp};
use smoltcp::time::Duration;
use smoltcp::wire::{IpAddress, IpEndpoint};

/// A stream that is never read or written: the adapters only need its type.
struct Idle;

impl embedded_io::ErrorType for Idle {
    type Error = embedded_io::ErrorKind;
}

impl embedded_io::Read for Idle {
    fn read(&mut self, _: &mut [u8]) -> Result<usize, Self::Error> {
        Ok(0)
    }
}

impl embedded_io::Write for Idle {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

impl embedded_io_async::Read for Idle {
    async fn read(&mut self, _: &mut [u8]) -> Result<usize, Self::Error> {
        Ok(0)
    }
}

impl embedded_io_async::Write for Idle {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        Ok(buf.len())
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

impl DatagramSocket for Idle {
    type Addr = u16;
    type Error = ();

    async fn send_to(&mut self, _: &[u8], _: u16) -> Result<(), ()> {
        Ok(())
    }

    async fn recv_from(&mut self, _: &mut [u8]) -> Result<(usize, u16), ()> {
        Err(())
    }

    fn same_host(_: &u16, _: &u16) -> bool {
        true
    }
}

fn tcp_socket() -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 64]),
        tcp::SocketBuffer::new(vec![0; 64]),
    )
}

fn udp_socket() -> udp::Socket<'static> {
    udp::Socket::new(
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 1], vec![0; 64]),
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 1], vec![0; 64]),
    )
}

#[test]
fn sessions_servers_clients_and_connections_made_unused_are_warned_of() {
    let format = HeaderFormat::NETWORK.with_max_len(60).unwrap();
    let shared = SharedStore::new(RamStore::<2, 256>::new(), [UploadLease::EMPTY; 1]);
    let status = |_: &mut dyn core::fmt::Write| Ok(());
    let site = StatusSite::new("unused", &status);
    let name = FileName::new("unused").unwrap();
    let mut sockets = SocketSet::new(Vec::new());
    let handle = sockets.add(tcp_socket());
    let slot = sockets.add(tcp_socket());
    let datagrams = sockets.add(udp_socket());
    let server = IpEndpoint::new(IpAddress::v4(10, 0, 0, 1), 69);
    let (mut rx, mut tx, mut into) = ([0u8; 64], [0u8; 64], [0u8; 64]);
    let mut io = Idle;

    // Sessions.
    #[expect(unused_must_use)]
    Echo::new();
    #[expect(unused_must_use)]
    Framed::new(FramedEcho::new(), [0u8; 64], [0u8; 64], format).unwrap();
    #[expect(unused_must_use)]
    StreamingEcho::new([0u8; 64], format).unwrap();
    #[expect(unused_must_use)]
    HttpResponder::<_, 512, 512>::new(&site);
    #[expect(unused_must_use)]
    TransferServer::new(&shared, vec![0u8; 4100], vec![0u8; 4100]).unwrap();
    #[expect(unused_must_use)]
    ServerTransfer::new(&shared, tftp::ServerConfig::DEFAULT);
    #[expect(unused_must_use)]
    ClientGet::new(
        name,
        ClientConfig::DEFAULT,
        SliceSink::new(&mut into),
        |_, _| {},
    );
    #[expect(unused_must_use)]
    ClientPut::new(name, ClientConfig::DEFAULT, &b"data"[..], |_, _| {});

    // The poll-loop adapter.
    #[expect(unused_must_use)]
    TcpSession::new(handle, Echo::new());
    #[expect(unused_must_use)]
    TcpServer::new(&mut sockets, 7, [slot], [Echo::new()]).unwrap();
    #[expect(unused_must_use)]
    UdpService::<_, 64>::new(datagrams, 7, UdpEcho);
    #[expect(unused_must_use)]
    TcpClient::new(Duration::from_secs(1));
    #[expect(unused_must_use)]
    TftpServer::<_, 1, 516>::new(datagrams, [datagrams], &shared, tftp::ServerConfig::DEFAULT);
    #[expect(unused_must_use)]
    TftpClient::<_, 516>::new(
        datagrams,
        4000,
        server,
        ClientGet::new(
            name,
            ClientConfig::DEFAULT,
            SliceSink::new(&mut into),
            |_, _| {},
        ),
    );

    // The stream and datagram adapters.
    #[expect(unused_must_use)]
    asynch::Connection::new(Idle, &mut rx, &mut tx);
    #[expect(unused_must_use)]
    blocking::Connection::new(Idle, &mut rx, &mut tx);
    #[expect(unused_must_use)]
    tftp::asynch::Client::new(&mut io, 69, &mut into);
    #[expect(unused_must_use)]
    tftp::asynch::Server::<_, u16>::new(&shared, tftp::ServerConfig::DEFAULT);
}
