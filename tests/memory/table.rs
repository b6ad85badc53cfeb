// The size of each type in MEMORY.md's table, in both of its columns: one row
// per type, `(name, what it holds, its size, bytes on a 64-bit target, bytes on
// thumbv7em)`. `sizes!` is each includer's own: `tests/memory.rs` pins the
// 64-bit column and checks the documents against both, and the `no_std` crate
// in `tests/thumb` does not build for thumbv7em-none-eabihf unless every
// thumbv7em figure is the size there.

use core::mem::size_of;

use smolsock::http::{HttpResponder, StatusSite};
use smolsock::net::{
    Backlog, PortAllocator, StreamingFrames, TcpClient, TcpServer, TcpSession, TftpServer, UdpEcho,
    UdpService,
};
use smolsock::session::{Echo, Framed, FramedEcho, OutBuffer, StreamingEcho};
use smolsock::store::RamStore;
use smolsock::tftp::{ClientGet, ClientPut, ServerTransfer};
use smolsock::transfer::{
    PutFile, SharedStore, SliceSink, TransferClient, TransferServer, UploadLease,
};
use smolsock::wire::body::BodyReader;
use smolsock::wire::frame::{FrameReader, FrameWriter};
use smoltcp::iface::{Interface, SocketStorage};
use smoltcp::socket::{tcp, udp};

type Http = HttpResponder<'static, StatusSite<'static>, 1024, 2048>;
type Store = RamStore<8, 65_536>;
type Slice = &'static mut [u8];
type Upload = PutFile<'static, Slice, &'static [u8], fn(u64, u64)>;
type Progress = fn(u64, Option<u64>);

sizes! {
    (
        "FrameReader<[u8; 1028]>",
        "frame storage for 1 KiB frames + cursors + counters",
        size_of::<FrameReader<[u8; 1028]>>(),
        1184,
        1152
    ),
    (
        "FrameWriter",
        "header format, frame in progress, counters",
        size_of::<FrameWriter>(),
        80,
        72
    ),
    (
        "BodyReader",
        "header format, partial header, place in the body, counters",
        size_of::<BodyReader>(),
        144,
        128
    ),
    (
        "StreamingFrames",
        "BodyReader + FrameWriter + back-pressure counter: one framed connection with no frame storage",
        size_of::<StreamingFrames>(),
        232,
        208
    ),
    (
        "OutBuffer<&mut [u8]>",
        "a session's queue of outgoing bytes: the caller's storage + two cursors",
        size_of::<OutBuffer<Slice>>(),
        32,
        16
    ),
    (
        "Echo",
        "raw echo session: the primer's 1 KiB recv buffer as an OutBuffer, a flag, a counter",
        size_of::<Echo>(),
        1056,
        1048
    ),
    (
        "FramedEcho",
        "framed echo's own state: two counters",
        size_of::<FramedEcho>(),
        16,
        16
    ),
    (
        "Framed<FramedEcho, [u8; 1028], [u8; 1028]>",
        "framed echo session: FrameReader, a one-frame send queue, the frame deadline, counters",
        size_of::<Framed<FramedEcho, [u8; 1028], [u8; 1028]>>(),
        2376,
        2312
    ),
    (
        "StreamingEcho<&mut [u8]>",
        "framed echo with no frame storage: BodyReader, queue over the caller's slice, the frame deadline, counters",
        size_of::<StreamingEcho<Slice>>(),
        272,
        224
    ),
    (
        "HttpResponder<StatusSite, 1024, 2048>",
        "request head 1 KiB + page 2 KiB + 256 B head + state",
        size_of::<Http>(),
        3536,
        3504
    ),
    (
        "TcpServer<Echo, 4>",
        "4 slots: sessions, socket handles, their order, slot states, counters",
        size_of::<TcpServer<Echo, 4>>(),
        4584,
        4520
    ),
    (
        "TcpServer<_, N>: fixed part",
        "port, settings, server counters",
        size_of::<TcpServer<Echo, 0>>(),
        136,
        136
    ),
    (
        "TcpServer<_, N>: per slot",
        "socket handle + its place in the walk + slot state, besides the session",
        (size_of::<TcpServer<Echo, 4>>() - size_of::<TcpServer<Echo, 0>>()) / 4 - size_of::<Echo>(),
        56,
        48
    ),
    (
        "TcpSession<_>: fixed part",
        "socket handle + five flags + the close timeout, the close's progress and the bytes received while closing, besides the session",
        size_of::<TcpSession<()>>(),
        48,
        40
    ),
    (
        "UdpService<UdpEcho, 1500>",
        "one datagram buffer + pending reply + queue watch + counters",
        size_of::<UdpService<UdpEcho, 1500>>(),
        1664,
        1648
    ),
    (
        "UdpEcho",
        "UDP echo's own state: none",
        size_of::<UdpEcho>(),
        0,
        0
    ),
    (
        "TransferServer<RamStore, &mut [u8]>",
        "one transfer connection: framing state, the operation in progress, its file name",
        size_of::<TransferServer<'static, Store, Slice>>(),
        456,
        392
    ),
    (
        "TransferClient<&mut [u8]>",
        "the no_std client: framing state, the connection's state and limits",
        size_of::<TransferClient<Slice>>(),
        312,
        256
    ),
    (
        "PutFile<&mut [u8], &[u8], fn(u64, u64)>",
        "an upload in progress: the client borrowed, source, progress callback, name, size, CRC, step, when it began, bytes moved, hashed and checked",
        size_of::<Upload>(),
        208,
        192
    ),
    (
        "SharedStore<RamStore, [UploadLease; 4]>: fixed part",
        "the store's cell, transfer counters, 4 upload leases",
        size_of::<SharedStore<Store, [UploadLease; 4]>>() - size_of::<Store>(),
        552,
        552
    ),
    (
        "RamStore<8, 65536>: fixed part",
        "8 file entries (name, length, checksum, version), besides the 64 KiB arena",
        size_of::<Store>() - 65_536,
        848,
        712
    ),
    (
        "ServerTransfer<RamStore>",
        "one TFTP transfer on the server: state, file name, block counters, timer, counters",
        size_of::<ServerTransfer<'static, Store>>(),
        408,
        392
    ),
    (
        "ClientGet<SliceSink, fn(u64, Option<u64>)>",
        "a TFTP get: file name, options asked, block counters, timer, CRC, counters, its sink",
        size_of::<ClientGet<SliceSink<'static>, Progress>>(),
        408,
        392
    ),
    (
        "ClientPut<&[u8], fn(u64, Option<u64>)>",
        "a TFTP put: file name, options asked, window, timer, counters, its source",
        size_of::<ClientPut<&'static [u8], Progress>>(),
        392,
        384
    ),
    (
        "TftpServer<RamStore, 1, 516>",
        "TFTP on udp/69, one transfer slot, 516-byte datagrams: the slot, the buffer, counters",
        size_of::<TftpServer<'static, Store, 1, 516>>(),
        1680,
        1648
    ),
    (
        "TftpServer<_, N, _>: per slot",
        "a transfer slot: socket handle, port, client endpoint, request's CRC, ServerTransfer",
        size_of::<TftpServer<'static, Store, 2, 516>>() - size_of::<TftpServer<'static, Store, 1, 516>>(),
        448,
        424
    ),
    (
        "tftp::asynch::Server<RamStore, IpEndpoint>",
        "the async TFTP server: one ServerTransfer, its client's endpoint, request's CRC and port, counters",
        size_of::<smolsock::tftp::asynch::Server<'static, Store, smoltcp::wire::IpEndpoint>>(),
        552,
        536
    ),
    (
        "Backlog<4, 4, 16>",
        "listen backlog: 4 held SYNs, 4 ports, 16 connections watched, counters",
        size_of::<Backlog<4, 4, 16>>(),
        2512,
        2456
    ),
    (
        "TcpClient",
        "connect deadline, local port, state",
        size_of::<TcpClient>(),
        24,
        24
    ),
    (
        "PortAllocator<16>",
        "ephemeral port cursor, when each of 16 blocks of the range last went out, 16 quarantined ports",
        size_of::<PortAllocator<16>>(),
        432,
        424
    ),
    (
        "smoltcp tcp::Socket",
        "smoltcp's TCP state (buffers not included)",
        size_of::<tcp::Socket<'static>>(),
        448,
        352
    ),
    (
        "smoltcp udp::Socket",
        "smoltcp's UDP state (buffers not included)",
        size_of::<udp::Socket<'static>>(),
        184,
        88
    ),
    (
        "smoltcp udp::PacketMetadata",
        "per datagram slot of a UDP socket buffer",
        size_of::<udp::PacketMetadata>(),
        48,
        44
    ),
    (
        "smoltcp SocketStorage",
        "one slot of a SocketSet: holds any socket",
        size_of::<SocketStorage<'static>>(),
        488,
        392
    ),
    (
        "smoltcp Interface",
        "the stack: addresses, neighbour cache, routes",
        size_of::<Interface>(),
        592,
        576
    ),
}
