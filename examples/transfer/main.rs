//! The file transfer client for Linux, over the kernel's sockets: the primer's FTP
//! chapter with a progress bar.
//!
//! ```text
//! cargo run --release --example transfer -- put FILE --to 192.168.69.1:2121 [--name NAME] [--resume]
//! cargo run --release --example transfer -- get NAME [-o FILE] [--resume]
//! cargo run --release --example transfer -- ls | stat NAME | rm NAME
//! ```
//!
//! It speaks PROTOCOL.md as written (see `protocol.rs`), so it works against
//! smolsock's server on a TAP link (`tap_server`) or on a microcontroller alike.

mod protocol;

use std::fmt;
use std::fs::File;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use smolsock::wire::transfer::{ErrorCode, FileName};

use protocol::{Connection, Error, Report};

#[derive(Parser)]
#[command(about = "Upload and download files to a smolsock transfer server (PROTOCOL.md)")]
struct Args {
    /// The server's address and port.
    #[arg(long, global = true, default_value = "192.168.69.1:2121")]
    to: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
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
        /// Where to write it (default: NAME in the current directory).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Continue an earlier, interrupted download (kept in FILE.part).
        #[arg(long)]
        resume: bool,
    },
    /// List the stored files.
    Ls,
    /// Size and CRC-32 of a stored file.
    Stat { name: String },
    /// Delete a stored file.
    Rm { name: String },
}

/// Whole percent, truncated as the primer does: `int(done / total * 100)`.
fn whole_percent(done: u64, total: u64) -> u64 {
    if total == 0 {
        100
    } else {
        (u128::from(done) * 100 / u128::from(total)) as u64
    }
}

fn progress_bar(action: &str, name: &str) -> ProgressBar {
    let style = ProgressStyle::with_template(
        "{prefix} {whole_percent:>3}% [{wide_bar}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
    )
    .expect("a valid template")
    .with_key(
        "whole_percent",
        |state: &ProgressState, w: &mut dyn fmt::Write| {
            let _ = write!(w, "{}", whole_percent(state.pos(), state.len().unwrap_or(0)));
        },
    )
    .progress_chars("=> ");
    // Hidden until `track` knows the total: before the server has answered, the
    // bar would read "0 B/0 B", which whole_percent calls 100 %.
    let bar =
        ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden()).with_style(style);
    bar.set_prefix(format!("{action} {name}"));
    bar
}

/// Moves the bar: the total first (it is known once the server answered), and
/// shows it (on stderr, when that is a terminal) from the first call on.
fn track(bar: &ProgressBar) -> impl FnMut(u64, u64) + '_ {
    let mut shown = false;
    move |done, total| {
        bar.set_length(total);
        bar.set_position(done);
        if !shown {
            bar.set_draw_target(ProgressDrawTarget::stderr());
            shown = true;
        }
    }
}

fn connect(to: &str) -> Result<Connection<TcpStream>, Error> {
    let stream = TcpStream::connect(to)?;
    stream.set_nodelay(true)?;
    // A server that stops talking does not hold the terminal forever.
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    Connection::open(stream)
}

fn file_name(name: &str) -> Result<FileName, String> {
    FileName::new(name).map_err(|e| format!("{name:?}: {e}"))
}

fn report(report: &Report, verb: &str) {
    if report.resumed_from > 0 {
        println!("resumed at byte {}", report.resumed_from);
    }
    println!(
        "{verb} {} bytes; CRC-32 {:08x}: match",
        report.size, report.crc
    );
}

fn run(args: Args) -> Result<(), String> {
    // What to do next, from the "client then" column of PROTOCOL.md section 8.
    let fail = |e: Error| {
        let hint = match e.code() {
            Some(ErrorCode::Busy) => "; another client is uploading it, retry later",
            Some(ErrorCode::Full) => "; free space with rm, then put --resume",
            Some(ErrorCode::BadOffset | ErrorCode::TooMuchData) => {
                "; the file changed while it was sent, try again"
            }
            Some(ErrorCode::ChecksumMismatch) => "; nothing was kept, upload again",
            _ => match e {
                Error::ChecksumMismatch { .. } => "; file not kept",
                _ => "",
            },
        };
        format!("{e}{hint}")
    };
    match args.command {
        Command::Put { file, name, resume } => {
            let name = match name {
                Some(name) => name,
                None => file
                    .file_name()
                    .and_then(|n| n.to_str())
                    .ok_or("FILE has no usable name; pass --name")?
                    .to_owned(),
            };
            let name = file_name(&name)?;
            let mut local = File::open(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let mut conn = connect(&args.to).map_err(fail)?;
            let bar = progress_bar("put", name.as_str());
            let result = conn.put(name, &mut local, resume, &mut track(&bar));
            bar.finish();
            report(&result.map_err(fail)?, "stored");
        }
        Command::Get {
            name,
            output,
            resume,
        } => {
            let path = output.unwrap_or_else(|| PathBuf::from(&name));
            let name = file_name(&name)?;
            let mut conn = connect(&args.to).map_err(fail)?;
            let bar = progress_bar("get", name.as_str());
            let result = conn.get(name, &path, resume, &mut track(&bar));
            bar.finish();
            report(&result.map_err(fail)?, "received");
            println!("saved as {}", path.display());
        }
        Command::Ls => {
            let files = connect(&args.to)
                .and_then(|mut conn| conn.list())
                .map_err(fail)?;
            for (name, size) in &files {
                println!("{size:>12}  {name}");
            }
            println!("{} files", files.len());
        }
        Command::Stat { name } => {
            let name = file_name(&name)?;
            let (size, crc) = connect(&args.to)
                .and_then(|mut conn| conn.stat(name))
                .map_err(fail)?;
            println!("{name}: {size} bytes, CRC-32 {crc:08x}");
        }
        Command::Rm { name } => {
            let name = file_name(&name)?;
            connect(&args.to)
                .and_then(|mut conn| conn.delete(name))
                .map_err(fail)?;
            println!("deleted {name}");
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("transfer: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::whole_percent;

    #[test]
    fn percent_is_truncated_like_the_primer() {
        assert_eq!(whole_percent(0, 0), 100);
        assert_eq!(whole_percent(999, 1000), 99);
        assert_eq!(whole_percent(1000, 1000), 100);
        assert_eq!(whole_percent(1, 3), 33);
        assert_eq!(whole_percent(u64::MAX - 1, u64::MAX), 99);
    }
}
