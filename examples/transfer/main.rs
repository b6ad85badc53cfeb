//! The file transfer client for Linux, over the kernel's sockets: the primer's FTP
//! chapter with a progress bar.
//!
//! ```text
//! cargo run --release --example transfer -- put FILE --to 192.168.69.1:2121 [--name NAME] [--resume]
//! cargo run --release --example transfer -- get NAME [-o FILE] [--resume] [--force]
//! cargo run --release --example transfer -- ls | stat NAME | rm NAME
//! ```
//!
//! It is smolsock's own `no_std` client ([`TransferClient`]) run over a
//! `std::net::TcpStream` by the blocking adapter ([`blocking`]): the same code a
//! microcontroller runs, so it works against smolsock's server on a TAP link
//! (`tap_server`) or on a microcontroller alike. What is here is the command line:
//! local files (`local.rs`), the progress bar (`progress.rs`) and the messages.

mod local;
mod progress;

use std::io::{self, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use smolsock::blocking::{self, StdClock, StdIo};
use smolsock::session::Request;
use smolsock::store::{FileName, FileStat};
use smolsock::transfer::{ClientError, FileSource, PutOptions, TransferClient};
use smolsock::wire::transfer::ErrorCode;

use local::{PartFile, PathError, SourceFile, check_target, download_path};
use progress::{Bar, Display};

#[derive(Parser, Debug)]
#[command(about = "Upload and download files to a smolsock transfer server (PROTOCOL.md)")]
struct Args {
    /// The server's address and port.
    #[arg(long, global = true, default_value = "192.168.69.1:2121")]
    to: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Upload FILE.
    Put {
        file: PathBuf,
        /// The name on the server (default: FILE's own name).
        #[arg(long)]
        name: Option<String>,
        /// Continue an earlier, interrupted upload.
        #[arg(long)]
        resume: bool,
    },
    /// Download NAME.
    Get {
        name: String,
        /// Where to write it (default: NAME in the current directory; NAME inside
        /// it when it is a directory).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Continue an earlier, interrupted download (kept in FILE.part).
        #[arg(long)]
        resume: bool,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// List the stored files.
    Ls {
        /// Give up on a listing of more files than this (a server that
        /// lists for ever cannot hold the client).
        #[arg(long, value_name = "N", default_value_t = 65_536)]
        max_entries: u32,
    },
    /// Size and CRC-32 of a stored file.
    Stat { name: String },
    /// Delete a stored file.
    Rm { name: String },
}

/// Frame storage of the client, each way: the protocol's default 64 KiB bodies
/// plus the 4-byte header.
const FRAME: usize = 65_536 + 4;

/// The blocking adapter's stream buffers, each way.
const STREAM_BUFFER: usize = 64 * 1024;

/// Where the server is, and how long to wait for it.
#[derive(Clone, Debug)]
struct Remote {
    addr: String,
    /// A server that moves no byte for this long has failed (the client's
    /// timeout); also the bound on connecting.
    silence: Duration,
    /// The socket's read and write timeout: how often the client looks at its
    /// deadline while the server is quiet.
    tick: Duration,
}

impl Remote {
    fn new(addr: &str) -> Self {
        Self {
            addr: addr.to_owned(),
            silence: Duration::from_secs(60),
            tick: Duration::from_millis(250),
        }
    }
}

/// Why a command failed.
#[derive(Debug)]
enum Failure {
    /// Connecting failed.
    Connect(String, io::Error),
    /// The stream failed under the client.
    Stream(blocking::Error<io::Error>),
    /// The client's own verdict: the server refused, broke the protocol, went
    /// silent, or a local file failed.
    Client(ClientError, Option<PathError>),
}

impl Failure {
    /// The message, with what to do next from the "client then" column of
    /// PROTOCOL.md section 8.
    fn explain(&self) -> String {
        match self {
            Failure::Connect(addr, e) => format!("connect to {addr}: {e}"),
            Failure::Stream(e) => format!("connection failed: {e}"),
            Failure::Client(e, detail) => {
                let hint = match e.code() {
                    Some(ErrorCode::Busy) => "; another client is uploading it, retry later",
                    Some(ErrorCode::Full) => "; free space with rm, then put --resume",
                    Some(ErrorCode::BadOffset | ErrorCode::TooMuchData) => {
                        "; the file changed while it was sent, try again"
                    }
                    Some(ErrorCode::ChecksumMismatch) => "; nothing was kept, upload again",
                    Some(ErrorCode::Changed) => "; the file was replaced meanwhile, get it again",
                    _ => "",
                };
                let what = match e {
                    ClientError::Refused { code, value } => {
                        format!("server: {code} (code 0x{:02x}, value {value})", *code as u8)
                    }
                    ClientError::RefusedUnknown { code } => {
                        format!("server: error code 0x{code:02x}")
                    }
                    ClientError::ChecksumMismatch { expected, computed } => format!(
                        "CRC-32 mismatch: server {expected:08x}, received {computed:08x}; file not kept"
                    ),
                    ClientError::Local(local) => match detail {
                        Some(detail) => detail.to_string(),
                        None => local.to_string(),
                    },
                    other => other.to_string(),
                };
                format!("{what}{hint}")
            }
        }
    }
}

/// One connection to the server, with its HELLO still to come: the client says
/// it at the start of the first request.
struct Connection {
    stream: TcpStream,
    clock: StdClock,
}

impl Connection {
    fn open(remote: &Remote) -> Result<(Self, TransferClient<Vec<u8>>), Failure> {
        let failed = |e| Failure::Connect(remote.addr.clone(), e);
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        let mut connected = None;
        for addr in remote.addr.to_socket_addrs().map_err(failed)? {
            match TcpStream::connect_timeout(&addr, remote.silence) {
                Ok(stream) => {
                    connected = Some(stream);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let stream = connected.ok_or(last).map_err(failed)?;
        let setup = |stream: &TcpStream| {
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(remote.tick))?;
            stream.set_write_timeout(Some(remote.tick))
        };
        setup(&stream).map_err(failed)?;
        let silence = u64::try_from(remote.silence.as_millis()).unwrap_or(u64::MAX);
        let client = TransferClient::new(vec![0; FRAME], vec![0; FRAME])
            .expect("64 KiB frame buffers are enough")
            .with_timeout(Some(smolsock::time::Duration::from_millis(silence)));
        Ok((
            Self {
                stream,
                clock: StdClock::new(),
            },
            client,
        ))
    }

    /// Runs one operation of the client to its outcome. A connection serves one
    /// request; dropping it closes the socket.
    fn run<R, T>(&self, request: &mut R) -> Result<T, Failure>
    where
        R: Request<Output = Result<T, ClientError>>,
    {
        let (mut rx, mut tx) = (vec![0u8; STREAM_BUFFER], vec![0u8; STREAM_BUFFER]);
        let mut conn = blocking::Connection::new(StdIo::new(&self.stream), &mut rx, &mut tx);
        match conn.run_request(request, &self.clock) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(Failure::Client(e, None)),
            Err(e) => Err(Failure::Stream(e)),
        }
    }
}

fn file_name(name: &str) -> Result<FileName, String> {
    FileName::new(name).map_err(|e| format!("{name:?}: {e}"))
}

/// `n` followed by `noun`, plural unless `n` is 1: "1 file", "2 files".
fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The last lines of a put or a get: where it resumed, and the check.
fn report(out: &mut dyn Write, resumed_from: u64, stat: FileStat, verb: &str) -> io::Result<()> {
    if resumed_from > 0 {
        writeln!(out, "resumed at byte {resumed_from}")?;
    }
    writeln!(
        out,
        "{verb} {} bytes; CRC-32 {:08x}: match",
        stat.size, stat.crc
    )
}

/// The progress callback: moves `bar`, and remembers where the transfer started
/// (the client reports that offset first, once the server has answered).
fn tracker(bar: &mut Bar, started: &mut Option<u64>) -> impl FnMut(u64, u64) {
    move |done, total| {
        started.get_or_insert(done);
        bar.update(done, total);
    }
}

fn put(
    remote: &Remote,
    display: &Display,
    out: &mut dyn Write,
    file: &Path,
    name: Option<String>,
    resume: bool,
) -> Result<(), String> {
    let name = match name {
        Some(name) => name,
        None => file
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or("FILE has no usable name; pass --name")?
            .to_owned(),
    };
    let name = file_name(&name)?;
    let mut source = SourceFile::open(file).map_err(|e| e.to_string())?;
    let crc = checksum(display, name.as_str(), &mut source)?;
    let (server, mut client) = Connection::open(remote).map_err(|e| e.explain())?;
    let mut bar = Bar::new(display, "put", name.as_str());
    let mut started = None;
    let options = PutOptions {
        resume,
        crc: Some(crc),
    };
    let result = {
        let progress = tracker(&mut bar, &mut started);
        let mut put = client.put(name, &mut source, options, progress);
        server.run(&mut put)
    };
    bar.finish(result.is_ok());
    let stat = result.map_err(|e| with_detail(e, source.take_error()).explain())?;
    report(out, started.unwrap_or(0), stat, "stored").map_err(|e| e.to_string())
}

/// Files from this size on show a bar while their CRC-32 is computed.
const CRC_BAR_FROM: u64 = 64 << 20;

/// The file's CRC-32, read before connecting (`SourceFile::checksum` says why),
/// with a bar of its own for a file large enough to take a while.
fn checksum(display: &Display, name: &str, source: &mut SourceFile) -> Result<u32, String> {
    let mut bar = Bar::new(display, "crc", name);
    let shown = source.size() >= CRC_BAR_FROM;
    let crc = source.checksum(|done, total| {
        if shown {
            bar.update(done, total);
        }
    });
    bar.finish(crc.is_ok());
    crc.map_err(|e| e.to_string())
}

/// A local failure's message names the file.
fn with_detail(failure: Failure, detail: Option<PathError>) -> Failure {
    match failure {
        Failure::Client(e, None) => Failure::Client(e, detail),
        other => other,
    }
}

fn get(
    remote: &Remote,
    display: &Display,
    out: &mut dyn Write,
    name: &str,
    output: Option<PathBuf>,
    resume: bool,
    force: bool,
) -> Result<(), String> {
    let name = file_name(name)?;
    let path = download_path(name.as_str(), output);
    check_target(&path, force)?;
    let mut sink = PartFile::new(&path, force);
    if resume {
        sink.prepare_resume();
    }
    let (server, mut client) = Connection::open(remote).map_err(|e| e.explain())?;
    let mut bar = Bar::new(display, "get", name.as_str());
    let mut started = None;
    let result = {
        let progress = tracker(&mut bar, &mut started);
        let mut get = client.get(name, &mut sink, resume, progress);
        server.run(&mut get)
    };
    bar.finish(result.is_ok());
    let stat = result.map_err(|e| {
        sink.discard_if_empty();
        with_detail(e, sink.take_error()).explain()
    })?;
    report(out, started.unwrap_or(0), stat, "received").map_err(|e| e.to_string())?;
    writeln!(out, "saved as {}", path.display()).map_err(|e| e.to_string())
}

fn ls(remote: &Remote, out: &mut dyn Write, max_entries: u32) -> Result<(), String> {
    let (server, client) = Connection::open(remote).map_err(|e| e.explain())?;
    let mut client = client.with_max_entries(max_entries);
    let mut files = Vec::new();
    server
        .run(&mut client.list(|entry| files.push(entry)))
        .map_err(|e| e.explain())?;
    let write = |out: &mut dyn Write| {
        for entry in &files {
            writeln!(out, "{:>12}  {}", entry.size, entry.name)?;
        }
        writeln!(out, "{}", count(files.len() as u64, "file"))
    };
    write(out).map_err(|e| e.to_string())
}

fn stat(remote: &Remote, out: &mut dyn Write, name: &str) -> Result<(), String> {
    let name = file_name(name)?;
    let (server, mut client) = Connection::open(remote).map_err(|e| e.explain())?;
    let stat = server
        .run(&mut client.stat(name))
        .map_err(|e| e.explain())?;
    writeln!(out, "{name}: {} bytes, CRC-32 {:08x}", stat.size, stat.crc).map_err(|e| e.to_string())
}

fn rm(remote: &Remote, out: &mut dyn Write, name: &str) -> Result<(), String> {
    let name = file_name(name)?;
    let (server, mut client) = Connection::open(remote).map_err(|e| e.explain())?;
    server
        .run(&mut client.delete(name))
        .map_err(|e| e.explain())?;
    writeln!(out, "deleted {name}").map_err(|e| e.to_string())
}

/// Runs one command: results on `out`, the bar on `display`.
fn run(
    command: Command,
    remote: &Remote,
    display: &Display,
    out: &mut dyn Write,
) -> Result<(), String> {
    match command {
        Command::Put { file, name, resume } => put(remote, display, out, &file, name, resume),
        Command::Get {
            name,
            output,
            resume,
            force,
        } => get(remote, display, out, &name, output, resume, force),
        Command::Ls { max_entries } => ls(remote, out, max_entries),
        Command::Stat { name } => stat(remote, out, &name),
        Command::Rm { name } => rm(remote, out, &name),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let remote = Remote::new(&args.to);
    match run(args.command, &remote, &Display::stderr(), &mut io::stdout()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("transfer: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests;
