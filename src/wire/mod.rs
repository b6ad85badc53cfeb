//! Sans-IO codecs: bytes in, bytes out.
//!
//! Nothing here knows about smoltcp, sockets, clocks or allocation. A codec is handed
//! the bytes that arrived (in whatever pieces the network chose) and says either
//! "need more", "here is a whole message", or "these bytes are bad". Keeping the
//! parsing here, away from the sockets, is what lets every codec be tested with byte
//! fixtures, property tests over arbitrary splits, and fuzzing.
//!
//! - [`frame`]: the length header and the stream codec that cures sticky packets.
//! - [`body`]: the same frames a piece at a time, with no frame-sized buffer.
//! - [`http`]: an HTTP/1.1 request-head parser over a fixed buffer.
//! - [`transfer`]: the file transfer protocol's messages (see `PROTOCOL.md`).
//! - [`crc32`]: the zlib CRC-32 that checks every transferred file.

pub mod body;
pub mod crc32;
pub mod frame;
pub mod http;
pub mod transfer;
