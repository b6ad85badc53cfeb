//! The RAM each type takes, pinned with `core::mem::size_of` on 64-bit targets.
//!
//! smolsock promises fixed memory: everything a connection needs is in these
//! types and the socket buffers the caller hands in. The numbers below are exact,
//! so any change to a type's size shows up here and the table in MEMORY.md (and
//! the README) can be updated with it. Run with `--nocapture` to print the table.
//!
//! On 32-bit targets (thumbv7em) pointers, `usize` and `SocketHandle` are half the
//! size, so most types shrink a little; MEMORY.md has those figures too, measured
//! by a build for `thumbv7em-none-eabihf` (its last section says how), and the
//! README must agree with it.

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

/// Each type, what it is, and the bytes it takes on a 64-bit target.
fn table() -> Vec<(&'static str, &'static str, usize, usize)> {
    vec![
        (
            "FrameReader<[u8; 1028]>",
            "frame storage for 1 KiB frames + cursors + counters",
            size_of::<FrameReader<[u8; 1028]>>(),
            1176,
        ),
        (
            "FrameWriter",
            "header format, frame in progress, counters",
            size_of::<FrameWriter>(),
            80,
        ),
        (
            "BodyReader",
            "header format, partial header, place in the body, counters",
            size_of::<BodyReader>(),
            136,
        ),
        (
            "StreamingFrames",
            "BodyReader + FrameWriter + back-pressure counter: one framed connection with no frame storage",
            size_of::<StreamingFrames>(),
            224,
        ),
        (
            "OutBuffer<&mut [u8]>",
            "a session's queue of outgoing bytes: the caller's storage + two cursors",
            size_of::<OutBuffer<Slice>>(),
            32,
        ),
        (
            "Echo",
            "raw echo session: the primer's 1 KiB recv buffer as an OutBuffer, a flag, a counter",
            size_of::<Echo>(),
            1056,
        ),
        (
            "FramedEcho",
            "framed echo's own state: two counters",
            size_of::<FramedEcho>(),
            16,
        ),
        (
            "Framed<FramedEcho, [u8; 1028], [u8; 1028]>",
            "framed echo session: FrameReader, a one-frame send queue, the frame deadline, counters",
            size_of::<Framed<FramedEcho, [u8; 1028], [u8; 1028]>>(),
            2360,
        ),
        (
            "StreamingEcho<&mut [u8]>",
            "framed echo with no frame storage: BodyReader, queue over the caller's slice, the frame deadline, counters",
            size_of::<StreamingEcho<Slice>>(),
            256,
        ),
        (
            "HttpResponder<StatusSite, 1024, 2048>",
            "request head 1 KiB + page 2 KiB + 256 B head + state",
            size_of::<Http>(),
            3536,
        ),
        (
            "TcpServer<Echo, 4>",
            "4 slots: sessions, socket handles, their order, slot states, counters",
            size_of::<TcpServer<Echo, 4>>(),
            4584,
        ),
        (
            "TcpServer<_, N>: fixed part",
            "port, settings, server counters",
            size_of::<TcpServer<Echo, 0>>(),
            136,
        ),
        (
            "TcpServer<_, N>: per slot",
            "socket handle + its place in the walk + slot state, besides the session",
            (size_of::<TcpServer<Echo, 4>>() - size_of::<TcpServer<Echo, 0>>()) / 4
                - size_of::<Echo>(),
            56,
        ),
        (
            "TcpSession<_>: fixed part",
            "socket handle + four flags + the close timeout and the close's progress, besides the session",
            size_of::<TcpSession<()>>(),
            48,
        ),
        (
            "UdpService<UdpEcho, 1500>",
            "one datagram buffer + pending reply + queue watch + counters",
            size_of::<UdpService<UdpEcho, 1500>>(),
            1656,
        ),
        (
            "UdpEcho",
            "UDP echo's own state: none",
            size_of::<UdpEcho>(),
            0,
        ),
        (
            "TransferServer<RamStore, &mut [u8]>",
            "one transfer connection: framing state, the operation in progress, its file name",
            size_of::<TransferServer<'static, Store, Slice>>(),
            448,
        ),
        (
            "TransferClient<&mut [u8]>",
            "the no_std client: framing state, the connection's state and limits",
            size_of::<TransferClient<Slice>>(),
            304,
        ),
        (
            "PutFile<&mut [u8], &[u8], fn(u64, u64)>",
            "an upload in progress: the client borrowed, source, progress callback, name, size, CRC, step, when it began, bytes moved, hashed and checked",
            size_of::<Upload>(),
            208,
        ),
        (
            "SharedStore<RamStore, [UploadLease; 4]>: fixed part",
            "the store's cell, transfer counters, 4 upload leases",
            size_of::<SharedStore<Store, [UploadLease; 4]>>() - size_of::<Store>(),
            544,
        ),
        (
            "RamStore<8, 65536>: fixed part",
            "8 file entries (name, length, checksum, version), besides the 64 KiB arena",
            size_of::<Store>() - 65_536,
            848,
        ),
        (
            "ServerTransfer<RamStore>",
            "one TFTP transfer on the server: state, file name, block counters, timer, counters",
            size_of::<ServerTransfer<'static, Store>>(),
            408,
        ),
        (
            "ClientGet<SliceSink, fn(u64, Option<u64>)>",
            "a TFTP get: file name, options asked, block counters, timer, CRC, counters, its sink",
            size_of::<ClientGet<SliceSink<'static>, Progress>>(),
            408,
        ),
        (
            "ClientPut<&[u8], fn(u64, Option<u64>)>",
            "a TFTP put: file name, options asked, window, timer, counters, its source",
            size_of::<ClientPut<&'static [u8], Progress>>(),
            392,
        ),
        (
            "TftpServer<RamStore, 1, 516>",
            "TFTP on udp/69, one transfer slot, 516-byte datagrams: the slot, the buffer, counters",
            size_of::<TftpServer<'static, Store, 1, 516>>(),
            1112,
        ),
        (
            "TftpServer<_, N, _>: per slot",
            "a transfer slot: socket handle, port, client endpoint, request's CRC, ServerTransfer",
            size_of::<TftpServer<'static, Store, 2, 516>>()
                - size_of::<TftpServer<'static, Store, 1, 516>>(),
            448,
        ),
        (
            "tftp::asynch::Server<RamStore, IpEndpoint>",
            "the async TFTP server: one ServerTransfer, its client's endpoint, request's CRC and port, counters",
            size_of::<smolsock::tftp::asynch::Server<'static, Store, smoltcp::wire::IpEndpoint>>(),
            552,
        ),
        (
            "Backlog<4, 4, 16>",
            "listen backlog: 4 held SYNs, 4 ports, 16 connections watched, counters",
            size_of::<Backlog<4, 4, 16>>(),
            2384,
        ),
        (
            "TcpClient",
            "connect deadline, local port, state",
            size_of::<TcpClient>(),
            24,
        ),
        (
            "PortAllocator<16>",
            "ephemeral port cursor, when each of 16 blocks of the range last went out, 16 quarantined ports",
            size_of::<PortAllocator<16>>(),
            432,
        ),
        (
            "smoltcp tcp::Socket",
            "smoltcp's TCP state (buffers not included)",
            size_of::<tcp::Socket<'static>>(),
            448,
        ),
        (
            "smoltcp udp::Socket",
            "smoltcp's UDP state (buffers not included)",
            size_of::<udp::Socket<'static>>(),
            184,
        ),
        (
            "smoltcp udp::PacketMetadata",
            "per datagram slot of a UDP socket buffer",
            size_of::<udp::PacketMetadata>(),
            48,
        ),
        (
            "smoltcp SocketStorage",
            "one slot of a SocketSet: holds any socket",
            size_of::<SocketStorage<'static>>(),
            488,
        ),
        (
            "smoltcp Interface",
            "the stack: addresses, neighbour cache, routes",
            size_of::<Interface>(),
            592,
        ),
    ]
}

#[test]
#[cfg(target_pointer_width = "64")]
fn every_type_takes_the_pinned_number_of_bytes() {
    println!("| type | bytes (64-bit) | what |");
    println!("|---|---:|---|");
    for (name, what, size, _) in table() {
        println!("| `{name}` | {size} | {what} |");
    }
    let wrong: Vec<String> = table()
        .into_iter()
        .filter(|(_, _, size, pinned)| size != pinned)
        .map(|(name, _, size, pinned)| format!("{name}: {size} bytes, pinned {pinned}"))
        .collect();
    assert!(wrong.is_empty(), "sizes changed:\n{}", wrong.join("\n"));
}

/// The 64-bit column of the size table under `heading` in a document, by type name.
fn documented_sizes(text: &str, heading: &str) -> Vec<(String, usize)> {
    documented_columns(text, heading)
        .into_iter()
        .map(|(name, bits64, _)| (name, bits64))
        .collect()
}

/// Both columns (64-bit, thumbv7em) of the size table under `heading`, by type
/// name.
fn documented_columns(text: &str, heading: &str) -> Vec<(String, usize, usize)> {
    let number = |cell: &str| cell.replace(',', "").parse().ok();
    text.lines()
        .skip_while(|line| !line.starts_with(heading))
        .skip(1)
        .take_while(|line| !line.starts_with("## "))
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            // "", "`type`", "64-bit", "thumbv7em", "what", ""
            let name = cells.get(1)?.replace('`', "");
            Some((name, number(cells.get(2)?)?, number(cells.get(3)?)?))
        })
        .collect()
}

/// The measured size of the type a document names (`TcpServer<_, N>, fixed part`
/// there is `TcpServer<_, N>: fixed part` here).
fn measured(name: &str) -> Option<usize> {
    table()
        .into_iter()
        .find(|(measured, ..)| measured.replace(": ", ", ") == name)
        .map(|(_, _, size, _)| size)
}

/// Every row of the document's table shows the measured size.
fn mismatches(document: &str, rows: &[(String, usize)]) -> Vec<String> {
    rows.iter()
        .filter_map(|(name, bytes)| match measured(name) {
            Some(size) if size == *bytes => None,
            Some(size) => Some(format!("{document}: {name} is {bytes}, measured {size}")),
            None => Some(format!(
                "{document}: {name} is not measured by tests/memory.rs"
            )),
        })
        .collect()
}

#[test]
#[cfg(target_pointer_width = "64")]
fn memory_md_shows_the_measured_size_of_every_type() {
    let rows = documented_sizes(include_str!("../MEMORY.md"), "## Size of each type");
    let mut wrong = mismatches("MEMORY.md", &rows);
    for (name, _, size, _) in table() {
        let key = name.replace(": ", ", ");
        if !rows.iter().any(|(doc, _)| *doc == key) {
            wrong.push(format!("MEMORY.md: {name} is missing ({size} bytes)"));
        }
    }
    assert!(wrong.is_empty(), "out of date:\n{}", wrong.join("\n"));
}

#[test]
#[cfg(target_pointer_width = "64")]
fn readme_memory_table_shows_measured_sizes() {
    let rows = documented_sizes(include_str!("../README.md"), "## Memory");
    assert!(
        rows.len() >= 8,
        "the README's memory table is missing: {rows:?}"
    );
    let wrong = mismatches("README.md", &rows);
    assert!(wrong.is_empty(), "out of date:\n{}", wrong.join("\n"));
}

/// The thumbv7em column is measured by hand (MEMORY.md says how), so it cannot be
/// checked against `size_of` here; but the README must show the figures MEMORY.md
/// shows, and no type is larger on a 32-bit target than on a 64-bit one.
#[test]
fn readme_and_memory_md_agree_on_the_thumbv7em_sizes() {
    let memory = documented_columns(include_str!("../MEMORY.md"), "## Size of each type");
    let readme = documented_columns(include_str!("../README.md"), "## Memory");
    assert!(readme.len() >= 8, "the README's memory table is missing");
    let mut wrong = Vec::new();
    for (name, bits64, thumb) in &memory {
        if thumb > bits64 {
            wrong.push(format!(
                "MEMORY.md: {name} is {thumb} on thumbv7em, {bits64} on 64-bit"
            ));
        }
    }
    for (name, _, thumb) in &readme {
        match memory.iter().find(|(doc, ..)| doc == name) {
            Some((_, _, documented)) if documented == thumb => {}
            Some((_, _, documented)) => wrong.push(format!(
                "README.md: {name} is {thumb} on thumbv7em, MEMORY.md says {documented}"
            )),
            None => wrong.push(format!("README.md: {name} is not in MEMORY.md")),
        }
    }
    assert!(wrong.is_empty(), "out of date:\n{}", wrong.join("\n"));
}
