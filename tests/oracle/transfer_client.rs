//! A blocking client of the file transfer protocol, written from `PROTOCOL.md`
//! (section 11 step by step) as a foreign implementer would: it borrows only the
//! message codec (`smolsock::wire::transfer`) and the CRC-32, never smolsock's own
//! client. It runs over anything that reads and writes bytes in order (a
//! `std::net::TcpStream`, the simulated link). The tests use it as an oracle
//! beside smolsock's own client, and `tap_bench` as an independent peer; the
//! `transfer` CLI uses the crate's client.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use smolsock::wire::crc32::Crc32;
use smolsock::wire::transfer::{
    DATA_HEADER_LEN, ErrorCode, FileName, MAX_CONTROL_LEN, Message, PROTOCOL_VERSION, TransferError,
};

/// The largest frame body this client accepts, and the most it sends.
pub const MAX_BODY: u32 = 65_536;

/// A byte stream that can also say whether the peer has sent something, without
/// waiting: an upload must notice an ERROR while it is still sending (section 7).
pub trait Stream: Read + Write {
    /// Whether bytes from the peer are waiting to be read.
    fn has_incoming(&mut self) -> io::Result<bool>;
}

impl Stream for std::net::TcpStream {
    fn has_incoming(&mut self) -> io::Result<bool> {
        self.set_nonblocking(true)?;
        let peeked = self.peek(&mut [0u8; 1]);
        self.set_nonblocking(false)?;
        match peeked {
            // 0 bytes: the server closed; reading will say so.
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Why an operation failed.
#[derive(Debug)]
pub enum Error {
    /// The connection or a local file failed.
    Io(io::Error),
    /// The server answered ERROR.
    Server {
        /// The code (raw, in case this client does not know it).
        code: u8,
        /// Its value.
        value: u64,
    },
    /// The server said something this client cannot make sense of; it closes.
    Protocol(String),
    /// The whole file does not have the CRC-32 the server announced.
    ChecksumMismatch {
        /// What the server said.
        expected: u32,
        /// What the bytes have.
        computed: u32,
    },
}

impl Error {
    /// The server's error code, if the server refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Server { code, .. } => ErrorCode::from_u8(*code),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "{e}"),
            Error::Server { code, value } => match ErrorCode::from_u8(*code) {
                Some(known) => write!(f, "server: {known} (code 0x{code:02x}, value {value})"),
                None => write!(f, "server: error code 0x{code:02x} (value {value})"),
            },
            Error::Protocol(what) => write!(f, "protocol error: {what}"),
            Error::ChecksumMismatch { expected, computed } => write!(
                f,
                "CRC-32 mismatch: server {expected:08x}, received {computed:08x}"
            ),
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

fn protocol<T>(what: impl Into<String>) -> Result<T> {
    Err(Error::Protocol(what.into()))
}

/// What an upload or download did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    /// The file's size.
    pub size: u64,
    /// The CRC-32 both sides agreed on.
    pub crc: u32,
    /// Where the transfer started (above 0 when it resumed).
    pub resumed_from: u64,
}

/// One connection after the HELLO exchange.
pub struct Connection<T> {
    io: T,
    /// The server's `max_body`: DATA frames stay within it.
    server_max_body: u32,
    /// The frame being read or written: one frame of memory, whatever the file size.
    frame: Vec<u8>,
}

/// The CRC-32 of the first `len` bytes of `file` (all of it for `None`).
pub fn crc_of(file: &mut File, len: Option<u64>) -> io::Result<u32> {
    file.seek(SeekFrom::Start(0))?;
    let mut crc = Crc32::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut left = len.unwrap_or(u64::MAX);
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        crc.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(crc.finish())
}

/// Where a download is kept until its checksum matched: `FILE.part`.
pub fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".part");
    PathBuf::from(name)
}

impl<T: Stream> Connection<T> {
    /// Sends HELLO and reads HELLO_OK (section 4).
    pub fn open(io: T) -> Result<Self> {
        let mut conn = Self {
            io,
            server_max_body: 0,
            frame: Vec::with_capacity(MAX_BODY as usize + 4),
        };
        conn.send(&Message::Hello {
            version: PROTOCOL_VERSION,
            max_body: MAX_BODY,
        })?;
        match conn.recv()? {
            Reply::HelloOk { version, max_body } if version == PROTOCOL_VERSION => {
                conn.server_max_body = max_body;
                Ok(conn)
            }
            Reply::HelloOk { version, .. } => protocol(format!("server chose version {version}")),
            other => other.unexpected(),
        }
    }

    /// Writes one frame, header and body in one write (no Nagle stall between them).
    fn send(&mut self, message: &Message<'_>) -> io::Result<()> {
        let len = message.buffer_len();
        self.frame.clear();
        self.frame.extend_from_slice(&(len as u32).to_be_bytes());
        self.frame.resize(4 + len, 0);
        message
            .emit(&mut self.frame[4..])
            .map_err(|e| io::Error::other(e.to_string()))?;
        self.io.write_all(&self.frame)
    }

    /// Reads one frame (section 11 step 2) and decodes it.
    fn recv(&mut self) -> Result<Reply> {
        let mut header = [0u8; 4];
        self.io.read_exact(&mut header)?;
        let len = u32::from_be_bytes(header);
        if len > MAX_BODY {
            return protocol(format!("frame of {len} bytes, over our {MAX_BODY}"));
        }
        self.frame.resize(len as usize, 0);
        self.io.read_exact(&mut self.frame)?;
        Reply::parse(&self.frame)
    }

    /// LIST: every stored file with its size.
    pub fn list(&mut self) -> Result<Vec<(String, u64)>> {
        self.send(&Message::List)?;
        let mut files = Vec::new();
        loop {
            match self.recv()? {
                Reply::Entry { name, size } => files.push((name, size)),
                Reply::ListEnd { count } if count as usize == files.len() => return Ok(files),
                Reply::ListEnd { count } => {
                    return protocol(format!("{count} entries announced, {} sent", files.len()));
                }
                other => return other.unexpected(),
            }
        }
    }

    /// STAT: size and CRC-32.
    pub fn stat(&mut self, name: FileName) -> Result<(u64, u32)> {
        self.send(&Message::Stat { name })?;
        match self.recv()? {
            Reply::StatOk { size, crc } => Ok((size, crc)),
            other => other.unexpected(),
        }
    }

    /// DELETE.
    pub fn delete(&mut self, name: FileName) -> Result<()> {
        self.send(&Message::Delete { name })?;
        match self.recv()? {
            Reply::DeleteOk => Ok(()),
            other => other.unexpected(),
        }
    }

    /// PUT (section 11 step 3): uploads `file` as `name`, calling
    /// `progress(done, total)` after each chunk.
    pub fn put(
        &mut self,
        name: FileName,
        file: &mut File,
        resume: bool,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Report> {
        let size = file.metadata()?.len();
        let crc = crc_of(file, None)?;
        self.send(&Message::Put {
            name,
            size,
            crc,
            resume,
        })?;
        let (mut offset, prefix_crc) = self.put_ready(size)?;
        if offset > 0 && crc_of(file, Some(offset))? != prefix_crc {
            // The server's partial is another file's: start over without RESUME.
            self.send(&Message::Put {
                name,
                size,
                crc,
                resume: false,
            })?;
            offset = self.put_ready(size)?.0;
            if offset != 0 {
                return protocol("PUT without RESUME answered with an offset");
            }
        }
        let resumed_from = offset;
        progress(offset, size);
        file.seek(SeekFrom::Start(offset))?;
        let chunk = (self.server_max_body.min(MAX_BODY) as usize).saturating_sub(DATA_HEADER_LEN);
        while offset < size {
            // An ERROR may arrive while we send; stop at once if one did.
            if self.io.has_incoming()? {
                return self.recv()?.unexpected();
            }
            let want = chunk.min((size - offset) as usize);
            let header = 4 + DATA_HEADER_LEN;
            self.frame.resize(header + want, 0);
            file.read_exact(&mut self.frame[header..])?;
            self.frame[..4].copy_from_slice(&((DATA_HEADER_LEN + want) as u32).to_be_bytes());
            smolsock::wire::transfer::emit_data_header(&mut self.frame[4..], offset)
                .map_err(|e| io::Error::other(e.to_string()))?;
            self.io.write_all(&self.frame)?;
            offset += want as u64;
            progress(offset, size);
        }
        match self.recv()? {
            Reply::PutDone {
                size: stored,
                crc: stored_crc,
            } if stored == size && stored_crc == crc => Ok(Report {
                size,
                crc,
                resumed_from,
            }),
            Reply::PutDone { size, crc } => {
                protocol(format!("PUT_DONE for {size} bytes with CRC {crc:08x}"))
            }
            other => other.unexpected(),
        }
    }

    fn put_ready(&mut self, size: u64) -> Result<(u64, u32)> {
        match self.recv()? {
            Reply::PutReady { offset, prefix_crc } if offset <= size => Ok((offset, prefix_crc)),
            Reply::PutReady { offset, .. } => protocol(format!("PUT_READY at {offset} > {size}")),
            other => other.unexpected(),
        }
    }

    /// GET (section 11 step 4): downloads `name` into `path`, through
    /// `path.part` until the CRC-32 matched.
    pub fn get(
        &mut self,
        name: FileName,
        path: &Path,
        resume: bool,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Report> {
        let part = partial_path(path);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(!resume)
            .open(&part)?;
        let mut offset = file.metadata()?.len();
        let mut local_crc = crc_of(&mut file, None)?;
        let (size, crc) = loop {
            self.send(&Message::Get { name, offset })?;
            match self.recv()? {
                Reply::GetReady {
                    size,
                    crc,
                    prefix_crc,
                } => {
                    if offset > size {
                        return protocol(format!("GET_READY of {size} bytes for offset {offset}"));
                    }
                    if offset == 0 || prefix_crc == local_crc {
                        break (size, crc);
                    }
                    // Our copy is stale: drop the DATA that follows, start from 0.
                    self.drain(offset, size)?;
                }
                Reply::Error { code, .. } if code == ErrorCode::BadOffset as u8 && offset > 0 => {
                    // Our copy is longer than the server's file.
                }
                other => return other.unexpected(),
            }
            file.set_len(0)?;
            (offset, local_crc) = (0, 0);
        };
        let resumed_from = offset;
        progress(offset, size);
        file.seek(SeekFrom::Start(offset))?;
        let mut sum = Crc32::resume(local_crc);
        while offset < size {
            match self.recv()? {
                Reply::Data { offset: at, len } if at == offset && offset + len as u64 <= size => {
                    let bytes = &self.frame[DATA_HEADER_LEN..];
                    file.write_all(bytes)?;
                    sum.update(bytes);
                    offset += len as u64;
                    progress(offset, size);
                }
                Reply::Data { offset: at, .. } => {
                    return protocol(format!("DATA at {at}, expected {offset}"));
                }
                other => return other.unexpected(),
            }
        }
        let computed = sum.finish();
        if computed != crc {
            drop(file);
            let _ = fs::remove_file(&part);
            return Err(Error::ChecksumMismatch {
                expected: crc,
                computed,
            });
        }
        file.sync_all()?;
        drop(file);
        fs::rename(&part, path)?;
        Ok(Report {
            size,
            crc,
            resumed_from,
        })
    }

    /// Reads and drops the DATA frames for `[offset, size)`.
    fn drain(&mut self, mut offset: u64, size: u64) -> Result<()> {
        while offset < size {
            match self.recv()? {
                Reply::Data { len, .. } => offset += len as u64,
                other => return other.unexpected(),
            }
        }
        Ok(())
    }
}

/// A server message, owned (DATA's payload stays in the connection's frame).
enum Reply {
    HelloOk {
        version: u8,
        max_body: u32,
    },
    PutReady {
        offset: u64,
        prefix_crc: u32,
    },
    PutDone {
        size: u64,
        crc: u32,
    },
    GetReady {
        size: u64,
        crc: u32,
        prefix_crc: u32,
    },
    Entry {
        name: String,
        size: u64,
    },
    ListEnd {
        count: u32,
    },
    StatOk {
        size: u64,
        crc: u32,
    },
    DeleteOk,
    Data {
        offset: u64,
        len: usize,
    },
    Error {
        code: u8,
        value: u64,
    },
}

impl Reply {
    fn parse(body: &[u8]) -> Result<Self> {
        let message = match Message::parse(body) {
            Ok(message) => message,
            // An ERROR with a code this version does not know still ends the request.
            Err(TransferError::UnknownErrorCode(code)) => {
                let value = body
                    .get(2..10)
                    .and_then(|v| v.try_into().ok())
                    .map_or(0, u64::from_be_bytes);
                return Ok(Reply::Error { code, value });
            }
            Err(e) => return protocol(format!("malformed message: {e}")),
        };
        Ok(match message {
            Message::HelloOk { version, max_body } => Reply::HelloOk { version, max_body },
            Message::PutReady { offset, prefix_crc } => Reply::PutReady { offset, prefix_crc },
            Message::PutDone { size, crc } => Reply::PutDone { size, crc },
            Message::GetReady {
                size,
                crc,
                prefix_crc,
            } => Reply::GetReady {
                size,
                crc,
                prefix_crc,
            },
            Message::Entry { name, size } => Reply::Entry {
                name: name.as_str().to_owned(),
                size,
            },
            Message::ListEnd { count } => Reply::ListEnd { count },
            Message::StatOk { size, crc } => Reply::StatOk { size, crc },
            Message::DeleteOk => Reply::DeleteOk,
            Message::Data { offset, bytes } => Reply::Data {
                offset,
                len: bytes.len(),
            },
            Message::Error { code, value } => Reply::Error {
                code: code as u8,
                value,
            },
            other => {
                return protocol(format!("client message {:?}", other.message_type()));
            }
        })
    }

    /// The answer a request did not expect: the server's ERROR, or nonsense.
    fn unexpected<T>(self) -> Result<T> {
        match self {
            Reply::Error { code, value } => Err(Error::Server { code, value }),
            Reply::Data { .. } => protocol("unexpected DATA"),
            _ => protocol("unexpected answer"),
        }
    }
}

/// No request this client sends is longer than a control message.
const _: () = assert!(MAX_CONTROL_LEN < MAX_BODY as usize);
