//! A trace written out as text, one line per record, as it happens.

use std::io::{ErrorKind, Write};
use std::vec::Vec;

use super::{Record, TraceSink};

/// A [`TraceSink`] that writes each record as one line of text
/// (`micros local>remote event ...`) to a file, a pipe or a `Vec<u8>`.
///
/// A failed write is counted ([`errors`](Self::errors)), never a panic: the trace
/// is for study, the run goes on without it. Each line is made whole before it
/// is written. A write that fails part way leaves that record's line cut; the
/// next line written starts on a line of its own, so every other line is a
/// whole record.
#[derive(Debug)]
pub struct TraceWriter<W: Write> {
    out: W,
    /// The line of the record being written.
    line: Vec<u8>,
    /// The output ends inside a line (a write failed part way).
    mid_line: bool,
    written: u64,
    errors: u64,
}

impl<W: Write> TraceWriter<W> {
    /// Writes the records to `out` (wrap a file in a `BufWriter`).
    pub const fn new(out: W) -> Self {
        Self {
            out,
            line: Vec::new(),
            mid_line: false,
            written: 0,
            errors: 0,
        }
    }

    /// Lines written.
    pub const fn written(&self) -> u64 {
        self.written
    }

    /// Records lost to write errors, and failed flushes (each counted once,
    /// however many buffered lines it lost).
    pub const fn errors(&self) -> u64 {
        self.errors
    }

    /// The stream written to.
    pub const fn get_ref(&self) -> &W {
        &self.out
    }

    /// The stream written to, to set it up or look into it (writing to it
    /// directly would put bytes between the trace's lines).
    pub const fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// Flushes the stream: lines held in a buffer (a `BufWriter`) go out. A
    /// failure is counted in [`errors`](Self::errors) and returned, since lines
    /// counted as [`written`](Self::written) may be lost with it.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush().inspect_err(|_| {
            self.errors = self.errors.saturating_add(1);
        })
    }

    /// Hands the stream back as it is: [`flush`](Self::flush) first to learn
    /// whether the last lines reached it.
    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write> TraceSink for TraceWriter<W> {
    fn record(&mut self, record: Record) {
        self.line.clear();
        if self.mid_line {
            self.line.push(b'\n');
        }
        // Formatting into a `Vec` fails only if `Display` does, which it does not.
        let _ = writeln!(self.line, "{record}");
        let mut rest = self.line.as_slice();
        let failed = loop {
            match self.out.write(rest) {
                Ok(0) => break true,
                Ok(n) => {
                    // What went out ends inside the line unless it ends it.
                    let (done, left) = rest.split_at(n.min(rest.len()));
                    self.mid_line = done.last() != Some(&b'\n');
                    rest = left;
                    if rest.is_empty() {
                        break false;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break true,
            }
        };
        // A record whose text is out and only its newline not is written: the
        // next record's line begins with that newline (`mid_line`).
        if failed && rest != b"\n" {
            self.errors = self.errors.saturating_add(1);
        } else {
            self.written = self.written.saturating_add(1);
        }
    }
}
