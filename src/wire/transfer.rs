//! The file transfer protocol's messages: one message per frame body.
//!
//! `PROTOCOL.md` at the top of the repository is the specification; this module is
//! its codec and nothing more (no sockets, no state machine, no storage). A
//! [`Message`] borrows from the frame body it was parsed from, so a DATA chunk's
//! payload is never copied on the way in, and [`emit_data_header`] lets a sender
//! read file bytes straight into its frame buffer behind a header written in place.
//!
//! Names travel as [`FileName`], a type that can only hold a valid plain file name:
//! once a request has parsed, its name cannot reach outside a store's root.
//!
//! Parsing is strict (a body must be exactly as long as its fields) and never
//! panics; every way a body can be wrong is a [`TransferError`], and each maps to
//! the ERROR reply the protocol prescribes (`Message::from(error)`).

use core::fmt;

/// The protocol version this module speaks (`PROTOCOL.md` section 4).
pub const PROTOCOL_VERSION: u8 = 1;

/// The four bytes after the type in HELLO and HELLO_OK: ASCII `SSFT`.
pub const MAGIC: [u8; 4] = *b"SSFT";

/// The smallest `max_body` a peer may announce, and the largest body either side
/// sends before the HELLO exchange is done.
pub const MIN_MAX_BODY: u32 = 128;

/// The frame body limit smolsock's server announces unless configured otherwise.
pub const DEFAULT_MAX_BODY: u32 = 65_536;

pub use crate::name::{FileName, MAX_NAME_LEN, NameError};

/// Bytes in front of a DATA payload: the type and the `u64` offset.
pub const DATA_HEADER_LEN: usize = 9;

/// The longest body of any message but DATA (a PUT with a 64-byte name).
pub const MAX_CONTROL_LEN: usize = 15 + MAX_NAME_LEN;

/// PUT flag bit: continue a partial upload of this name.
const FLAG_RESUME: u8 = 0x01;

/// The most file bytes one DATA frame may carry to a peer that announced
/// `max_body`.
pub const fn max_data_len(max_body: u32) -> usize {
    (max_body as usize).saturating_sub(DATA_HEADER_LEN)
}

/// The first byte of every message body (`PROTOCOL.md` section 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
#[non_exhaustive]
pub enum MessageType {
    /// Client: version and frame limit.
    Hello = 0x01,
    /// Client: start or resume an upload.
    Put = 0x02,
    /// Client: download from an offset.
    Get = 0x03,
    /// Client: list stored files.
    List = 0x04,
    /// Client: size and CRC-32 of a file.
    Stat = 0x05,
    /// Client: delete a file.
    Delete = 0x06,
    /// Either side: a chunk of file bytes.
    Data = 0x10,
    /// Server: the version chosen and its frame limit.
    HelloOk = 0x81,
    /// Server: send from this offset.
    PutReady = 0x82,
    /// Server: the upload is stored under its name.
    PutDone = 0x83,
    /// Server: DATA follows.
    GetReady = 0x84,
    /// Server: one listed file.
    Entry = 0x85,
    /// Server: the listing is complete.
    ListEnd = 0x86,
    /// Server: size and CRC-32.
    StatOk = 0x87,
    /// Server: deleted.
    DeleteOk = 0x88,
    /// Server: the request failed.
    Error = 0xFF,
}

impl MessageType {
    /// The type for a body's first byte, or `None` for a byte the protocol does
    /// not define.
    pub const fn from_u8(byte: u8) -> Option<Self> {
        Some(match byte {
            0x01 => Self::Hello,
            0x02 => Self::Put,
            0x03 => Self::Get,
            0x04 => Self::List,
            0x05 => Self::Stat,
            0x06 => Self::Delete,
            0x10 => Self::Data,
            0x81 => Self::HelloOk,
            0x82 => Self::PutReady,
            0x83 => Self::PutDone,
            0x84 => Self::GetReady,
            0x85 => Self::Entry,
            0x86 => Self::ListEnd,
            0x87 => Self::StatOk,
            0x88 => Self::DeleteOk,
            0xFF => Self::Error,
            _ => return None,
        })
    }

    /// A request only a client sends (HELLO, PUT, GET, LIST, STAT, DELETE).
    pub const fn is_request(self) -> bool {
        (self as u8) < 0x10
    }

    /// An answer only a server sends (HELLO_OK to DELETE_OK, and ERROR).
    pub const fn is_answer(self) -> bool {
        (self as u8) >= 0x80
    }
}

/// The error codes of `PROTOCOL.md` section 8, carried by [`Message::Error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
#[non_exhaustive]
pub enum ErrorCode {
    /// A malformed body: truncated, trailing bytes, unknown flag, bad magic,
    /// `max_body` under 128, an empty frame.
    BadMessage = 0x01,
    /// The type byte is not defined.
    UnknownType = 0x02,
    /// A valid message at the wrong time.
    Unexpected = 0x03,
    /// HELLO with a version the server cannot serve; value: its highest version.
    UnsupportedVersion = 0x04,
    /// A frame over the receiver's `max_body` (value); the connection closes.
    FrameTooLarge = 0x05,
    /// A name that breaks the rules of `PROTOCOL.md` section 5.
    InvalidName = 0x06,
    /// No such file.
    NotFound = 0x07,
    /// Another connection is uploading this name.
    Busy = 0x08,
    /// The store cannot take the bytes; value: bytes still free.
    Full = 0x09,
    /// The store holds as many files as it may; value: that limit.
    TooManyFiles = 0x0A,
    /// The file is over the server's size limit (value).
    FileTooLarge = 0x0B,
    /// A DATA offset that is not the next byte, or a GET offset past the end;
    /// value: the offset expected, or the file size.
    BadOffset = 0x0C,
    /// DATA beyond the announced size (value); the partial is deleted.
    TooMuchData = 0x0D,
    /// The stored bytes do not have the announced CRC; value: the CRC computed.
    ChecksumMismatch = 0x0E,
    /// The server's storage failed.
    StorageFailure = 0x0F,
    /// The file was replaced during a download: what would follow is another
    /// version's bytes. Takes the place of the next DATA.
    Changed = 0x10,
    /// A message did not arrive whole within the server's request deadline;
    /// value: the deadline in milliseconds. The server closes the connection.
    RequestTimeout = 0x11,
    /// An upload or a download fell below the server's minimum rate; value: that
    /// rate in bytes per second. The server closes the connection; an upload's
    /// partial stays for a resume.
    TooSlow = 0x12,
}

impl ErrorCode {
    /// The code for a byte on the wire, or `None` for a code this version does
    /// not define.
    pub const fn from_u8(byte: u8) -> Option<Self> {
        Some(match byte {
            0x01 => Self::BadMessage,
            0x02 => Self::UnknownType,
            0x03 => Self::Unexpected,
            0x04 => Self::UnsupportedVersion,
            0x05 => Self::FrameTooLarge,
            0x06 => Self::InvalidName,
            0x07 => Self::NotFound,
            0x08 => Self::Busy,
            0x09 => Self::Full,
            0x0A => Self::TooManyFiles,
            0x0B => Self::FileTooLarge,
            0x0C => Self::BadOffset,
            0x0D => Self::TooMuchData,
            0x0E => Self::ChecksumMismatch,
            0x0F => Self::StorageFailure,
            0x10 => Self::Changed,
            0x11 => Self::RequestTimeout,
            0x12 => Self::TooSlow,
            _ => return None,
        })
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BadMessage => "malformed message",
            Self::UnknownType => "unknown message type",
            Self::Unexpected => "message not expected now",
            Self::UnsupportedVersion => "protocol version not supported",
            Self::FrameTooLarge => "frame over the receiver's limit",
            Self::InvalidName => "invalid file name",
            Self::NotFound => "no such file",
            Self::Busy => "file is being uploaded by another client",
            Self::Full => "store full",
            Self::TooManyFiles => "too many files",
            Self::FileTooLarge => "file too large",
            Self::BadOffset => "bad offset",
            Self::TooMuchData => "more data than announced",
            Self::ChecksumMismatch => "checksum mismatch",
            Self::StorageFailure => "storage failure",
            Self::Changed => "file changed during the download",
            Self::RequestTimeout => "request took too long to arrive",
            Self::TooSlow => "transfer below the server's minimum rate",
        })
    }
}

/// One message: a whole frame body, decoded.
///
/// Borrows from the body it was parsed from (only [`Message::Data`] holds a
/// borrow). `PROTOCOL.md` section 6 gives each variant's layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Message<'a> {
    /// HELLO (client): the highest version it speaks and its frame body limit.
    Hello {
        /// Highest protocol version the client speaks.
        version: u8,
        /// The largest frame body the client accepts (at least [`MIN_MAX_BODY`]).
        max_body: u32,
    },
    /// PUT (client): start or resume the upload of a whole file.
    Put {
        /// Where the file goes.
        name: FileName,
        /// The whole file's size.
        size: u64,
        /// CRC-32 of the whole file.
        crc: u32,
        /// Continue a partial upload of this name if the server has one.
        resume: bool,
    },
    /// GET (client): download from `offset`.
    Get {
        /// The file.
        name: FileName,
        /// The first byte wanted.
        offset: u64,
    },
    /// LIST (client).
    List,
    /// STAT (client).
    Stat {
        /// The file.
        name: FileName,
    },
    /// DELETE (client).
    Delete {
        /// The file.
        name: FileName,
    },
    /// DATA (either side): file bytes at `offset`.
    Data {
        /// Position of `bytes[0]` in the file.
        offset: u64,
        /// The chunk.
        bytes: &'a [u8],
    },
    /// HELLO_OK (server): the version both sides now use and the server's limit.
    HelloOk {
        /// The version chosen.
        version: u8,
        /// The largest frame body the server accepts (at least [`MIN_MAX_BODY`]).
        max_body: u32,
    },
    /// PUT_READY (server): send from `offset`.
    PutReady {
        /// Bytes the server already holds.
        offset: u64,
        /// CRC-32 of those bytes; 0 when `offset` is 0.
        prefix_crc: u32,
    },
    /// PUT_DONE (server): the file is stored under its name.
    PutDone {
        /// Size stored.
        size: u64,
        /// CRC-32 stored.
        crc: u32,
    },
    /// GET_READY (server): DATA for `[offset, size)` follows.
    GetReady {
        /// The whole file's size.
        size: u64,
        /// CRC-32 of the whole file.
        crc: u32,
        /// CRC-32 of the bytes before the requested offset.
        prefix_crc: u32,
    },
    /// ENTRY (server): one file of a listing.
    Entry {
        /// The file.
        name: FileName,
        /// Its size.
        size: u64,
    },
    /// LIST_END (server): the listing is complete.
    ListEnd {
        /// How many ENTRY messages came before.
        count: u32,
    },
    /// STAT_OK (server).
    StatOk {
        /// The file's size.
        size: u64,
        /// CRC-32 of the file.
        crc: u32,
    },
    /// DELETE_OK (server).
    DeleteOk,
    /// ERROR (server): the request failed.
    Error {
        /// What went wrong.
        code: ErrorCode,
        /// A number whose meaning depends on `code` (0 when none).
        value: u64,
    },
}

/// Why a frame body is not a valid message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum TransferError {
    /// A frame with no body, so no type byte.
    Empty,
    /// The type byte is not defined.
    UnknownType(u8),
    /// The body ends before the message's fields do.
    Truncated,
    /// Bytes after the message's last field.
    TrailingBytes,
    /// HELLO or HELLO_OK without `SSFT`: the peer does not speak this protocol, and
    /// the receiver closes the connection after answering.
    BadMagic,
    /// PUT with a flag bit this version does not define.
    UnknownFlags(u8),
    /// HELLO or HELLO_OK announcing a `max_body` under [`MIN_MAX_BODY`].
    MaxBodyTooSmall(u32),
    /// ERROR with a code this version does not define.
    UnknownErrorCode(u8),
    /// A name that breaks the rules.
    BadName(NameError),
}

impl TransferError {
    /// The error code a server answers this with (`PROTOCOL.md` section 8).
    pub const fn error_code(&self) -> ErrorCode {
        match self {
            Self::UnknownType(_) => ErrorCode::UnknownType,
            Self::BadName(_) => ErrorCode::InvalidName,
            Self::Empty
            | Self::Truncated
            | Self::TrailingBytes
            | Self::BadMagic
            | Self::UnknownFlags(_)
            | Self::MaxBodyTooSmall(_)
            | Self::UnknownErrorCode(_) => ErrorCode::BadMessage,
        }
    }
}

impl fmt::Display for TransferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty frame body"),
            Self::UnknownType(t) => write!(f, "unknown message type 0x{t:02x}"),
            Self::Truncated => f.write_str("message truncated"),
            Self::TrailingBytes => f.write_str("bytes after the end of the message"),
            Self::BadMagic => f.write_str("peer does not speak this protocol (bad magic)"),
            Self::UnknownFlags(flags) => write!(f, "unknown flags 0x{flags:02x}"),
            Self::MaxBodyTooSmall(n) => {
                write!(f, "max_body {n} is under the minimum {MIN_MAX_BODY}")
            }
            Self::UnknownErrorCode(c) => write!(f, "unknown error code 0x{c:02x}"),
            Self::BadName(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for TransferError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::BadName(e) => Some(e),
            _ => None,
        }
    }
}

impl From<NameError> for TransferError {
    fn from(e: NameError) -> Self {
        Self::BadName(e)
    }
}

/// The ERROR a server answers a body that failed to parse with.
impl From<TransferError> for Message<'static> {
    fn from(e: TransferError) -> Self {
        Message::Error {
            code: e.error_code(),
            value: 0,
        }
    }
}

/// Why a message could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum EmitError {
    /// The output buffer is shorter than the message.
    BufferTooSmall {
        /// Bytes the message needs.
        needed: usize,
        /// Bytes the buffer has.
        available: usize,
    },
}

impl fmt::Display for EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BufferTooSmall { needed, available } => {
                write!(f, "message needs {needed} bytes, buffer has {available}")
            }
        }
    }
}

impl core::error::Error for EmitError {}

/// Reads fields front to back; every read checks the length first.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Result<u8, TransferError> {
        let (&byte, rest) = self.rest.split_first().ok_or(TransferError::Truncated)?;
        self.rest = rest;
        Ok(byte)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], TransferError> {
        let (head, rest) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or(TransferError::Truncated)?;
        self.rest = rest;
        Ok(*head)
    }

    fn u32(&mut self) -> Result<u32, TransferError> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, TransferError> {
        self.array().map(u64::from_be_bytes)
    }

    /// A name's raw bytes; validated by the caller once the body's length is known
    /// to be right, so a malformed body is reported as such before its name.
    fn raw_name(&mut self) -> Result<&'a [u8], TransferError> {
        let len = usize::from(self.u8()?);
        let (name, rest) = self
            .rest
            .split_at_checked(len)
            .ok_or(TransferError::Truncated)?;
        self.rest = rest;
        Ok(name)
    }

    fn remaining(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.rest)
    }

    fn end(&self) -> Result<(), TransferError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(TransferError::TrailingBytes)
        }
    }

    /// Ends a body whose last field is a name, and validates the name.
    fn end_with_name(&self, raw: &[u8]) -> Result<FileName, TransferError> {
        self.end()?;
        Ok(FileName::from_bytes(raw)?)
    }

    fn hello_fields(&mut self) -> Result<(u8, u32), TransferError> {
        let magic: [u8; 4] = self.array()?;
        let version = self.u8()?;
        let max_body = self.u32()?;
        self.end()?;
        if magic != MAGIC {
            return Err(TransferError::BadMagic);
        }
        if max_body < MIN_MAX_BODY {
            return Err(TransferError::MaxBodyTooSmall(max_body));
        }
        Ok((version, max_body))
    }
}

/// Writes fields front to back into a buffer already checked to be long enough.
struct Writer<'b> {
    out: &'b mut [u8],
    len: usize,
}

impl Writer<'_> {
    fn bytes(&mut self, bytes: &[u8]) -> Result<(), EmitError> {
        let available = self.out.len();
        let end = self.len.saturating_add(bytes.len());
        self.out
            .get_mut(self.len..end)
            .ok_or(EmitError::BufferTooSmall {
                needed: end,
                available,
            })?
            .copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    fn u8(&mut self, value: u8) -> Result<(), EmitError> {
        self.bytes(&[value])
    }

    fn u32(&mut self, value: u32) -> Result<(), EmitError> {
        self.bytes(&value.to_be_bytes())
    }

    fn u64(&mut self, value: u64) -> Result<(), EmitError> {
        self.bytes(&value.to_be_bytes())
    }

    fn name(&mut self, name: &FileName) -> Result<(), EmitError> {
        // A FileName is at most 64 bytes, so its length fits the u8.
        self.u8(u8::try_from(name.as_bytes().len()).unwrap_or(u8::MAX))?;
        self.bytes(name.as_bytes())
    }
}

/// Writes a DATA header for a chunk at `offset` into `body[..DATA_HEADER_LEN]`.
///
/// The sender reads file bytes straight into `body[DATA_HEADER_LEN..]` and sends
/// `DATA_HEADER_LEN + n` bytes as the frame body: the payload is never copied.
///
/// ```
/// use smolsock::wire::transfer::{emit_data_header, Message, DATA_HEADER_LEN};
///
/// let mut body = [0u8; 128];
/// let file = b"hello, world\n";
/// let n = file.len();
/// body[DATA_HEADER_LEN..DATA_HEADER_LEN + n].copy_from_slice(file); // "read"
/// emit_data_header(&mut body, 0).unwrap();
/// let frame_body = &body[..DATA_HEADER_LEN + n];
/// assert_eq!(
///     Message::parse(frame_body),
///     Ok(Message::Data { offset: 0, bytes: file })
/// );
/// ```
pub fn emit_data_header(body: &mut [u8], offset: u64) -> Result<(), EmitError> {
    let available = body.len();
    let header = body
        .get_mut(..DATA_HEADER_LEN)
        .ok_or(EmitError::BufferTooSmall {
            needed: DATA_HEADER_LEN,
            available,
        })?;
    let mut writer = Writer {
        out: header,
        len: 0,
    };
    writer.u8(MessageType::Data as u8)?;
    writer.u64(offset)
}

impl<'a> Message<'a> {
    /// Decodes one whole frame body.
    ///
    /// The body must be exactly one message: shorter is [`TransferError::Truncated`],
    /// longer is [`TransferError::TrailingBytes`] (except DATA, whose payload is
    /// the rest of the body).
    pub fn parse(body: &'a [u8]) -> Result<Self, TransferError> {
        let mut reader = Reader { rest: body };
        let type_byte = reader.u8().map_err(|_| TransferError::Empty)?;
        let message_type =
            MessageType::from_u8(type_byte).ok_or(TransferError::UnknownType(type_byte))?;
        let message = match message_type {
            MessageType::Hello => {
                let (version, max_body) = reader.hello_fields()?;
                Message::Hello { version, max_body }
            }
            MessageType::HelloOk => {
                let (version, max_body) = reader.hello_fields()?;
                Message::HelloOk { version, max_body }
            }
            MessageType::Put => {
                let flags = reader.u8()?;
                let size = reader.u64()?;
                let crc = reader.u32()?;
                let raw = reader.raw_name()?;
                reader.end()?;
                // An unknown flag may change what the rest means, the name's rules
                // included: it is judged before the name (`PROTOCOL.md` section 6).
                if flags & !FLAG_RESUME != 0 {
                    return Err(TransferError::UnknownFlags(flags));
                }
                let name = reader.end_with_name(raw)?;
                Message::Put {
                    name,
                    size,
                    crc,
                    resume: flags & FLAG_RESUME != 0,
                }
            }
            MessageType::Get => {
                let offset = reader.u64()?;
                let raw = reader.raw_name()?;
                let name = reader.end_with_name(raw)?;
                Message::Get { name, offset }
            }
            MessageType::List => {
                reader.end()?;
                Message::List
            }
            MessageType::Stat => {
                let raw = reader.raw_name()?;
                let name = reader.end_with_name(raw)?;
                Message::Stat { name }
            }
            MessageType::Delete => {
                let raw = reader.raw_name()?;
                let name = reader.end_with_name(raw)?;
                Message::Delete { name }
            }
            MessageType::Data => {
                let offset = reader.u64()?;
                let bytes = reader.remaining();
                Message::Data { offset, bytes }
            }
            MessageType::PutReady => {
                let offset = reader.u64()?;
                let prefix_crc = reader.u32()?;
                reader.end()?;
                Message::PutReady { offset, prefix_crc }
            }
            MessageType::PutDone => {
                let size = reader.u64()?;
                let crc = reader.u32()?;
                reader.end()?;
                Message::PutDone { size, crc }
            }
            MessageType::GetReady => {
                let size = reader.u64()?;
                let crc = reader.u32()?;
                let prefix_crc = reader.u32()?;
                reader.end()?;
                Message::GetReady {
                    size,
                    crc,
                    prefix_crc,
                }
            }
            MessageType::Entry => {
                let size = reader.u64()?;
                let raw = reader.raw_name()?;
                let name = reader.end_with_name(raw)?;
                Message::Entry { name, size }
            }
            MessageType::ListEnd => {
                let count = reader.u32()?;
                reader.end()?;
                Message::ListEnd { count }
            }
            MessageType::StatOk => {
                let size = reader.u64()?;
                let crc = reader.u32()?;
                reader.end()?;
                Message::StatOk { size, crc }
            }
            MessageType::DeleteOk => {
                reader.end()?;
                Message::DeleteOk
            }
            MessageType::Error => {
                let code = reader.u8()?;
                let value = reader.u64()?;
                reader.end()?;
                let code = ErrorCode::from_u8(code).ok_or(TransferError::UnknownErrorCode(code))?;
                Message::Error { code, value }
            }
        };
        Ok(message)
    }

    /// The message's type byte.
    pub const fn message_type(&self) -> MessageType {
        match self {
            Message::Hello { .. } => MessageType::Hello,
            Message::Put { .. } => MessageType::Put,
            Message::Get { .. } => MessageType::Get,
            Message::List => MessageType::List,
            Message::Stat { .. } => MessageType::Stat,
            Message::Delete { .. } => MessageType::Delete,
            Message::Data { .. } => MessageType::Data,
            Message::HelloOk { .. } => MessageType::HelloOk,
            Message::PutReady { .. } => MessageType::PutReady,
            Message::PutDone { .. } => MessageType::PutDone,
            Message::GetReady { .. } => MessageType::GetReady,
            Message::Entry { .. } => MessageType::Entry,
            Message::ListEnd { .. } => MessageType::ListEnd,
            Message::StatOk { .. } => MessageType::StatOk,
            Message::DeleteOk => MessageType::DeleteOk,
            Message::Error { .. } => MessageType::Error,
        }
    }

    /// The length of the body [`emit`](Self::emit) writes.
    pub fn buffer_len(&self) -> usize {
        let name_len = |name: &FileName| name.as_bytes().len();
        match self {
            Message::Hello { .. } | Message::HelloOk { .. } => 10,
            Message::Put { name, .. } => 15usize.saturating_add(name_len(name)),
            Message::Get { name, .. } | Message::Entry { name, .. } => {
                10usize.saturating_add(name_len(name))
            }
            Message::List | Message::DeleteOk => 1,
            Message::Stat { name } | Message::Delete { name } => {
                2usize.saturating_add(name_len(name))
            }
            Message::Data { bytes, .. } => DATA_HEADER_LEN.saturating_add(bytes.len()),
            Message::PutReady { .. } | Message::PutDone { .. } | Message::StatOk { .. } => 13,
            Message::GetReady { .. } => 17,
            Message::ListEnd { .. } => 5,
            Message::Error { .. } => 10,
        }
    }

    /// Writes the body into `out` and returns its length ([`buffer_len`](Self::buffer_len)).
    /// Nothing is written if `out` is too short.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, EmitError> {
        let needed = self.buffer_len();
        if out.len() < needed {
            return Err(EmitError::BufferTooSmall {
                needed,
                available: out.len(),
            });
        }
        let mut w = Writer { out, len: 0 };
        w.u8(self.message_type() as u8)?;
        match self {
            Message::Hello { version, max_body } | Message::HelloOk { version, max_body } => {
                w.bytes(&MAGIC)?;
                w.u8(*version)?;
                w.u32(*max_body)?;
            }
            Message::Put {
                name,
                size,
                crc,
                resume,
            } => {
                w.u8(if *resume { FLAG_RESUME } else { 0 })?;
                w.u64(*size)?;
                w.u32(*crc)?;
                w.name(name)?;
            }
            Message::Get { name, offset } => {
                w.u64(*offset)?;
                w.name(name)?;
            }
            Message::List | Message::DeleteOk => {}
            Message::Stat { name } | Message::Delete { name } => w.name(name)?,
            Message::Data { offset, bytes } => {
                w.u64(*offset)?;
                w.bytes(bytes)?;
            }
            Message::PutReady { offset, prefix_crc } => {
                w.u64(*offset)?;
                w.u32(*prefix_crc)?;
            }
            Message::PutDone { size, crc } | Message::StatOk { size, crc } => {
                w.u64(*size)?;
                w.u32(*crc)?;
            }
            Message::GetReady {
                size,
                crc,
                prefix_crc,
            } => {
                w.u64(*size)?;
                w.u32(*crc)?;
                w.u32(*prefix_crc)?;
            }
            Message::Entry { name, size } => {
                w.u64(*size)?;
                w.name(name)?;
            }
            Message::ListEnd { count } => w.u32(*count)?,
            Message::Error { code, value } => {
                w.u8(*code as u8)?;
                w.u64(*value)?;
            }
        }
        Ok(w.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::crc32::Crc32;

    fn name(s: &str) -> FileName {
        FileName::new(s).unwrap()
    }

    fn samples() -> Vec<Message<'static>> {
        let long = "n".repeat(MAX_NAME_LEN);
        vec![
            Message::Hello {
                version: 1,
                max_body: 1024,
            },
            Message::HelloOk {
                version: 1,
                max_body: DEFAULT_MAX_BODY,
            },
            Message::Put {
                name: name("a"),
                size: 0,
                crc: 0,
                resume: false,
            },
            Message::Put {
                name: FileName::new(&long).unwrap(),
                size: u64::MAX,
                crc: u32::MAX,
                resume: true,
            },
            Message::Get {
                name: name("hello.txt"),
                offset: 7,
            },
            Message::List,
            Message::Stat {
                name: name("ünïcödé.txt"),
            },
            Message::Delete { name: name("x") },
            Message::Data {
                offset: 0,
                bytes: b"",
            },
            Message::Data {
                offset: 0x0102_0304_0506_0708,
                bytes: b"chunk",
            },
            Message::PutReady {
                offset: 7,
                prefix_crc: 0x11EA_5699,
            },
            Message::PutDone {
                size: 13,
                crc: 0xF424_7453,
            },
            Message::GetReady {
                size: 13,
                crc: 0xF424_7453,
                prefix_crc: 0,
            },
            Message::Entry {
                name: name("e"),
                size: 99,
            },
            Message::ListEnd { count: 2 },
            Message::StatOk { size: 1, crc: 2 },
            Message::DeleteOk,
            Message::Error {
                code: ErrorCode::Full,
                value: 4096,
            },
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for message in samples() {
            let mut buf = vec![0u8; message.buffer_len()];
            let n = message.emit(&mut buf).unwrap();
            assert_eq!(n, message.buffer_len(), "{message:?}");
            assert_eq!(Message::parse(&buf), Ok(message));
            assert_eq!(buf[0], message.message_type() as u8);
        }
    }

    #[test]
    fn every_error_code_round_trips() {
        for byte in 0..=u8::MAX {
            match ErrorCode::from_u8(byte) {
                Some(code) => {
                    assert_eq!(code as u8, byte);
                    let message = Message::Error { code, value: 1 };
                    let mut buf = [0u8; 10];
                    message.emit(&mut buf).unwrap();
                    assert_eq!(Message::parse(&buf), Ok(message));
                }
                None => {
                    let body = [0xFF, byte, 0, 0, 0, 0, 0, 0, 0, 0];
                    assert_eq!(
                        Message::parse(&body),
                        Err(TransferError::UnknownErrorCode(byte))
                    );
                }
            }
        }
        assert_eq!(ErrorCode::from_u8(0x0F), Some(ErrorCode::StorageFailure));
        assert_eq!(ErrorCode::from_u8(0x10), Some(ErrorCode::Changed));
        assert_eq!(ErrorCode::from_u8(0x11), Some(ErrorCode::RequestTimeout));
        assert_eq!(ErrorCode::from_u8(0x12), Some(ErrorCode::TooSlow));
        assert_eq!(ErrorCode::from_u8(0x13), None);
    }

    #[test]
    fn message_type_bytes_are_the_documented_ones() {
        let mut known = 0;
        for byte in 0..=u8::MAX {
            if let Some(t) = MessageType::from_u8(byte) {
                known += 1;
                assert_eq!(t as u8, byte);
                assert!(!(t.is_request() && t.is_answer()));
                assert_eq!(t == MessageType::Data, !t.is_request() && !t.is_answer());
            }
        }
        assert_eq!(known, 16);
    }

    #[test]
    fn emit_into_a_short_buffer_is_an_error_and_writes_nothing() {
        for message in samples() {
            let len = message.buffer_len();
            let mut buf = vec![0xAAu8; len - 1];
            assert_eq!(
                message.emit(&mut buf),
                Err(EmitError::BufferTooSmall {
                    needed: len,
                    available: len - 1
                })
            );
            assert!(buf.iter().all(|&b| b == 0xAA));
        }
    }

    #[test]
    fn every_truncation_is_a_typed_error() {
        for message in samples() {
            let mut buf = vec![0u8; message.buffer_len()];
            message.emit(&mut buf).unwrap();
            // DATA's payload is "the rest", so a shorter DATA body is still a DATA;
            // only its header can be cut.
            let shortest_valid = match message {
                Message::Data { .. } => DATA_HEADER_LEN,
                _ => buf.len(),
            };
            for cut in 0..shortest_valid {
                let expected = if cut == 0 {
                    TransferError::Empty
                } else {
                    TransferError::Truncated
                };
                assert_eq!(
                    Message::parse(&buf[..cut]),
                    Err(expected),
                    "{message:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn trailing_garbage_is_a_typed_error() {
        for message in samples() {
            if let Message::Data { .. } = message {
                continue;
            }
            let mut buf = vec![0u8; message.buffer_len() + 1];
            message.emit(&mut buf).unwrap();
            *buf.last_mut().unwrap() = 0x5A;
            assert_eq!(
                Message::parse(&buf),
                Err(TransferError::TrailingBytes),
                "{message:?}"
            );
        }
    }

    #[test]
    fn unknown_message_types_are_refused() {
        for byte in 0..=u8::MAX {
            if MessageType::from_u8(byte).is_none() {
                assert_eq!(
                    Message::parse(&[byte, 0, 0]),
                    Err(TransferError::UnknownType(byte))
                );
            }
        }
        assert_eq!(
            Message::from(TransferError::UnknownType(0x42)),
            Message::Error {
                code: ErrorCode::UnknownType,
                value: 0
            }
        );
    }

    #[test]
    fn empty_body_is_refused() {
        assert_eq!(Message::parse(&[]), Err(TransferError::Empty));
        assert_eq!(TransferError::Empty.error_code(), ErrorCode::BadMessage);
    }

    #[test]
    fn hello_with_bad_magic_or_tiny_limit_is_refused() {
        let mut body = [0u8; 10];
        Message::Hello {
            version: 1,
            max_body: 128,
        }
        .emit(&mut body)
        .unwrap();
        let mut bad_magic = body;
        bad_magic[1] = b'X';
        assert_eq!(Message::parse(&bad_magic), Err(TransferError::BadMagic));
        let mut tiny = body;
        tiny[6..10].copy_from_slice(&127u32.to_be_bytes());
        assert_eq!(
            Message::parse(&tiny),
            Err(TransferError::MaxBodyTooSmall(127))
        );
        // "GET / HTTP/1.1" on the wrong port never looks like a HELLO.
        assert_eq!(
            Message::parse(b"GET / HTTP/1.1"),
            Err(TransferError::UnknownType(b'G'))
        );
    }

    #[test]
    fn put_with_unknown_flags_is_refused() {
        let mut body = [0u8; 16];
        Message::Put {
            name: name("a"),
            size: 1,
            crc: 2,
            resume: false,
        }
        .emit(&mut body)
        .unwrap();
        body[1] = 0x02;
        assert_eq!(Message::parse(&body), Err(TransferError::UnknownFlags(2)));
        body[1] = 0x81;
        assert_eq!(
            Message::parse(&body),
            Err(TransferError::UnknownFlags(0x81))
        );
    }

    #[test]
    fn a_message_wrong_in_two_ways_gets_the_first_error_of_the_documented_order() {
        // Length before everything: a bad name in a body with trailing bytes.
        let mut body = vec![MessageType::Stat as u8, 2, b'.', b'.', 0];
        assert_eq!(Message::parse(&body), Err(TransferError::TrailingBytes));
        // An unknown flag before the name.
        body = vec![MessageType::Put as u8, 0x02];
        body.extend_from_slice(&[0; 12]);
        body.extend_from_slice(&[2, b'.', b'.']);
        assert_eq!(Message::parse(&body), Err(TransferError::UnknownFlags(2)));
        assert_eq!(
            Message::from(Message::parse(&body).unwrap_err()),
            Message::Error {
                code: ErrorCode::BadMessage,
                value: 0
            }
        );
        body[1] = 0x01;
        assert_eq!(
            Message::parse(&body),
            Err(TransferError::BadName(NameError::LeadingDot))
        );
        // Magic before max_body in a HELLO.
        let hello = [
            MessageType::Hello as u8,
            b'X',
            b'S',
            b'F',
            b'T',
            1,
            0,
            0,
            0,
            1,
        ];
        assert_eq!(Message::parse(&hello), Err(TransferError::BadMagic));
    }

    /// Every name `PROTOCOL.md` section 5 refuses, and why.
    const REFUSED_NAMES: &[(&[u8], NameError)] = &[
        (b"", NameError::Empty),
        (b".", NameError::LeadingDot),
        (b"..", NameError::LeadingDot),
        (b"../etc/passwd", NameError::LeadingDot),
        (b".hidden", NameError::LeadingDot),
        (b".a.part", NameError::LeadingDot),
        (b"a/b", NameError::Separator),
        (b"/etc", NameError::Separator),
        (b"dir/", NameError::Separator),
        (b"a\\b", NameError::Separator),
        (b"..\\..\\x", NameError::LeadingDot),
        (b"c:\\x", NameError::Separator),
        (b"a\0b", NameError::ControlChar),
        (b"\0", NameError::ControlChar),
        (b"line\nbreak", NameError::ControlChar),
        (b"tab\t", NameError::ControlChar),
        (b"esc\x1b[0m", NameError::ControlChar),
        (b"del\x7f", NameError::ControlChar),
        (b"c1\xc2\x85", NameError::ControlChar),
        (b"\xff\xfe", NameError::NotUtf8),
        (b"half\xc3", NameError::NotUtf8),
        (b"overlong\xc0\xaf", NameError::NotUtf8),
    ];

    #[test]
    fn every_refused_name_is_refused_with_its_reason() {
        for (raw, reason) in REFUSED_NAMES {
            assert_eq!(FileName::from_bytes(raw), Err(*reason), "{raw:?}");
        }
        let too_long = "x".repeat(MAX_NAME_LEN + 1);
        assert_eq!(
            FileName::new(&too_long),
            Err(NameError::TooLong { len: 65 })
        );
        // 33 two-byte characters: 33 characters, 66 bytes.
        assert_eq!(
            FileName::new(&"é".repeat(33)),
            Err(NameError::TooLong { len: 66 })
        );
    }

    #[test]
    fn refused_names_in_requests_answer_invalid_name() {
        for (raw, reason) in REFUSED_NAMES {
            let mut body = vec![MessageType::Stat as u8, raw.len() as u8];
            body.extend_from_slice(raw);
            let err = Message::parse(&body).unwrap_err();
            assert_eq!(err, TransferError::BadName(*reason), "{raw:?}");
            assert_eq!(
                Message::from(err),
                Message::Error {
                    code: ErrorCode::InvalidName,
                    value: 0
                }
            );
        }
        let mut body = vec![MessageType::Delete as u8, 65];
        body.extend_from_slice(&[b'x'; 65]);
        assert_eq!(
            Message::parse(&body),
            Err(TransferError::BadName(NameError::TooLong { len: 65 }))
        );
    }

    #[test]
    fn plain_names_are_accepted() {
        for ok in [
            "a",
            "hello.txt",
            "a..b",
            "trailing.",
            "with space",
            "ünïcödé.txt",
            "日本語",
            "-dash",
            "name~",
        ] {
            assert_eq!(FileName::new(ok).unwrap().as_str(), ok);
        }
        let longest = "x".repeat(MAX_NAME_LEN);
        assert_eq!(FileName::new(&longest).unwrap().as_str(), longest);
        assert_eq!(FileName::new(&"é".repeat(32)).unwrap().as_bytes().len(), 64);
    }

    #[test]
    fn names_compare_and_sort_by_bytes() {
        assert!(name("B") < name("a"));
        assert!(name("a") < name("a.txt"));
        assert!(name("a.txt") < name("b"));
        assert_eq!(name("same"), FileName::try_from(&b"same"[..]).unwrap());
        assert_eq!(format!("{}", name("x.bin")), "x.bin");
        assert_eq!(format!("{:?}", name("x.bin")), "FileName(\"x.bin\")");
    }

    #[test]
    fn data_header_written_in_place_parses_with_the_payload() {
        let mut body = [0u8; 32];
        body[DATA_HEADER_LEN..DATA_HEADER_LEN + 3].copy_from_slice(b"abc");
        emit_data_header(&mut body, 77).unwrap();
        assert_eq!(
            Message::parse(&body[..DATA_HEADER_LEN + 3]),
            Ok(Message::Data {
                offset: 77,
                bytes: b"abc"
            })
        );
        assert_eq!(
            emit_data_header(&mut body[..8], 0),
            Err(EmitError::BufferTooSmall {
                needed: 9,
                available: 8
            })
        );
    }

    #[test]
    fn data_capacity_follows_the_peer_limit() {
        assert_eq!(max_data_len(DEFAULT_MAX_BODY), 65_527);
        assert_eq!(max_data_len(MIN_MAX_BODY), 119);
        assert_eq!(max_data_len(3), 0);
        // The largest control message fits the smallest allowed frame.
        let biggest = Message::Put {
            name: FileName::new(&"x".repeat(MAX_NAME_LEN)).unwrap(),
            size: 0,
            crc: 0,
            resume: true,
        };
        assert_eq!(biggest.buffer_len(), MAX_CONTROL_LEN);
        assert!(MAX_CONTROL_LEN <= MIN_MAX_BODY as usize);
    }

    /// One frame of a worked example in `PROTOCOL.md`.
    #[derive(Debug)]
    struct ExampleFrame {
        from_client: bool,
        /// Marked `>!` / `<!`: the receiver must not be able to decode it.
        invalid: bool,
        bytes: Vec<u8>,
        line: usize,
    }

    /// Extracts every ```hex block of `PROTOCOL.md` as frames.
    fn protocol_examples() -> Vec<Vec<ExampleFrame>> {
        let doc = include_str!("../../PROTOCOL.md");
        let mut blocks = Vec::new();
        let mut current: Option<Vec<ExampleFrame>> = None;
        for (index, line) in doc.lines().enumerate() {
            let line_no = index + 1;
            if line.trim_end() == "```hex" {
                current = Some(Vec::new());
                continue;
            }
            let Some(frames) = current.as_mut() else {
                continue;
            };
            if line.trim_end() == "```" {
                blocks.push(current.take().unwrap());
                continue;
            }
            let content = line.split('#').next().unwrap();
            let (start, rest) = if let Some(rest) = content.strip_prefix(">!") {
                (Some((true, true)), rest)
            } else if let Some(rest) = content.strip_prefix("<!") {
                (Some((false, true)), rest)
            } else if let Some(rest) = content.strip_prefix('>') {
                (Some((true, false)), rest)
            } else if let Some(rest) = content.strip_prefix('<') {
                (Some((false, false)), rest)
            } else {
                (None, content)
            };
            if let Some((from_client, invalid)) = start {
                frames.push(ExampleFrame {
                    from_client,
                    invalid,
                    bytes: Vec::new(),
                    line: line_no,
                });
            } else if rest.trim().is_empty() {
                continue;
            } else {
                assert!(
                    rest.starts_with(' '),
                    "PROTOCOL.md:{line_no}: continuation lines start with spaces"
                );
            }
            let frame = frames
                .last_mut()
                .unwrap_or_else(|| panic!("PROTOCOL.md:{line_no}: bytes before any frame"));
            for token in rest.split_whitespace() {
                assert_eq!(token.len(), 2, "PROTOCOL.md:{line_no}: {token:?}");
                frame.bytes.push(
                    u8::from_str_radix(token, 16)
                        .unwrap_or_else(|_| panic!("PROTOCOL.md:{line_no}: {token:?}")),
                );
            }
        }
        assert!(current.is_none(), "PROTOCOL.md: unclosed hex block");
        blocks
    }

    /// What the conversation checker expects next from an upload or download.
    enum Transfer {
        None,
        /// PUT sent, PUT_READY not yet seen.
        PutAnnounced {
            size: u64,
            crc: u32,
        },
        Uploading {
            size: u64,
            crc: u32,
            next: u64,
            sum: Crc32,
        },
        /// GET sent.
        GetAsked {
            offset: u64,
        },
        Downloading {
            size: u64,
            crc: u32,
            next: u64,
            sum: Crc32,
        },
    }

    #[test]
    fn protocol_md_examples_decode_and_are_consistent() {
        let blocks = protocol_examples();
        assert!(blocks.len() >= 8, "found {} hex blocks", blocks.len());
        let mut seen_types = std::collections::HashSet::new();
        for block in &blocks {
            let mut state = Transfer::None;
            let mut entries = 0u32;
            let mut pending_error: Option<Message<'static>> = None;
            for frame in block {
                let at = format!("PROTOCOL.md:{}", frame.line);
                let (header, body) = frame.bytes.split_at(4);
                let length = u32::from_be_bytes(header.try_into().unwrap());
                assert_eq!(length as usize, body.len(), "{at}: length header");
                assert!(
                    body.len() <= MIN_MAX_BODY as usize,
                    "{at}: keep examples small"
                );
                if frame.invalid {
                    let err = Message::parse(body).expect_err(&at);
                    pending_error = Some(Message::from(err));
                    continue;
                }
                let message = Message::parse(body).unwrap_or_else(|e| panic!("{at}: {e}"));
                // Canonical: emitting what was parsed gives the same bytes.
                let mut again = vec![0u8; message.buffer_len()];
                message.emit(&mut again).unwrap();
                assert_eq!(again, body, "{at}: re-emitted bytes differ");
                seen_types.insert(message.message_type() as u8);
                let t = message.message_type();
                if frame.from_client {
                    assert!(!t.is_answer(), "{at}: server message sent by the client");
                } else {
                    assert!(!t.is_request(), "{at}: request sent by the server");
                }
                if let Some(expected) = pending_error.take() {
                    assert_eq!(message, expected, "{at}: answer to the invalid frame");
                    continue;
                }
                state = match (state, message) {
                    (_, Message::Put { size, crc, .. }) => Transfer::PutAnnounced { size, crc },
                    (
                        Transfer::PutAnnounced { size, crc },
                        Message::PutReady { offset, prefix_crc },
                    ) => {
                        assert!(offset <= size, "{at}");
                        assert!(offset > 0 || prefix_crc == 0, "{at}: prefix of nothing");
                        Transfer::Uploading {
                            size,
                            crc,
                            next: offset,
                            sum: Crc32::resume(prefix_crc),
                        }
                    }
                    (
                        Transfer::Uploading {
                            size,
                            crc,
                            next,
                            mut sum,
                        },
                        Message::Data { offset, bytes },
                    ) => {
                        assert!(frame.from_client, "{at}");
                        assert_eq!(offset, next, "{at}: DATA offset");
                        sum.update(bytes);
                        Transfer::Uploading {
                            size,
                            crc,
                            next: next + bytes.len() as u64,
                            sum,
                        }
                    }
                    (
                        Transfer::Uploading {
                            size,
                            crc,
                            next,
                            sum,
                        },
                        Message::PutDone { size: s, crc: c },
                    ) => {
                        assert_eq!((next, sum.finish()), (size, crc), "{at}: upload checksum");
                        assert_eq!((s, c), (size, crc), "{at}: PUT_DONE fields");
                        Transfer::None
                    }
                    (
                        Transfer::Uploading {
                            size,
                            crc,
                            next,
                            sum,
                        },
                        Message::Error {
                            code: ErrorCode::ChecksumMismatch,
                            value,
                        },
                    ) => {
                        assert_eq!(next, size, "{at}: mismatch before the end");
                        assert_eq!(value, u64::from(sum.finish()), "{at}: computed CRC");
                        assert_ne!(value, u64::from(crc), "{at}: not a mismatch");
                        Transfer::None
                    }
                    (
                        Transfer::Uploading { size, next, .. },
                        Message::Error {
                            code: ErrorCode::TooMuchData,
                            value,
                        },
                    ) => {
                        assert_eq!(value, size, "{at}");
                        assert!(next > size, "{at}: no excess sent");
                        Transfer::None
                    }
                    (_, Message::Get { offset, .. }) => Transfer::GetAsked { offset },
                    (
                        Transfer::GetAsked { offset },
                        Message::GetReady {
                            size,
                            crc,
                            prefix_crc,
                        },
                    ) => {
                        assert!(offset > 0 || prefix_crc == 0, "{at}: prefix of nothing");
                        Transfer::Downloading {
                            size,
                            crc,
                            next: offset,
                            sum: Crc32::resume(prefix_crc),
                        }
                    }
                    (
                        Transfer::Downloading {
                            size,
                            crc,
                            next,
                            mut sum,
                        },
                        Message::Data { offset, bytes },
                    ) => {
                        assert!(!frame.from_client, "{at}");
                        assert_eq!(offset, next, "{at}: DATA offset");
                        sum.update(bytes);
                        let next = next + bytes.len() as u64;
                        assert!(next <= size, "{at}: past the end");
                        if next == size {
                            assert_eq!(sum.finish(), crc, "{at}: download checksum");
                            Transfer::None
                        } else {
                            Transfer::Downloading {
                                size,
                                crc,
                                next,
                                sum,
                            }
                        }
                    }
                    (
                        Transfer::Downloading { .. },
                        Message::Error {
                            code:
                                ErrorCode::Changed | ErrorCode::NotFound | ErrorCode::StorageFailure,
                            value,
                        },
                    ) => {
                        assert!(!frame.from_client, "{at}");
                        assert_eq!(value, 0, "{at}");
                        Transfer::None
                    }
                    (Transfer::None, Message::Entry { .. }) => {
                        entries += 1;
                        Transfer::None
                    }
                    (Transfer::None, Message::ListEnd { count }) => {
                        assert_eq!(count, entries, "{at}: LIST_END count");
                        entries = 0;
                        Transfer::None
                    }
                    (Transfer::None | Transfer::PutAnnounced { .. }, Message::Error { .. })
                    | (
                        Transfer::None,
                        Message::Hello { .. }
                        | Message::HelloOk { .. }
                        | Message::List
                        | Message::Stat { .. }
                        | Message::Delete { .. }
                        | Message::StatOk { .. }
                        | Message::DeleteOk,
                    ) => Transfer::None,
                    (_, message) => panic!("{at}: {message:?} out of order"),
                };
            }
            assert!(pending_error.is_none(), "invalid frame without an answer");
            assert!(
                matches!(state, Transfer::None),
                "a hex block ends in the middle of a transfer"
            );
        }
        // The examples show every message type at least once.
        assert_eq!(seen_types.len(), 16, "types shown: {seen_types:?}");
    }
}
