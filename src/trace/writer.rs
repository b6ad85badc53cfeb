//! A trace written out as text, one line per record, as it happens.

use std::io::Write;

use super::{Record, TraceSink};

/// A [`TraceSink`] that writes each record as one line of text
/// (`micros local>remote event ...`) to a file, a pipe or a `Vec<u8>`.
///
/// A failed write is counted ([`errors`](Self::errors)), never a panic: the trace
/// is for study, the run goes on without it.
#[derive(Debug)]
pub struct TraceWriter<W: Write> {
    out: W,
    written: u64,
    errors: u64,
}

impl<W: Write> TraceWriter<W> {
    /// Writes the records to `out` (wrap a file in a `BufWriter`).
    pub const fn new(out: W) -> Self {
        Self {
            out,
            written: 0,
            errors: 0,
        }
    }

    /// Lines written.
    pub const fn written(&self) -> u64 {
        self.written
    }

    /// Records lost to write errors.
    pub const fn errors(&self) -> u64 {
        self.errors
    }

    /// Flushes and hands the writer back.
    pub fn into_inner(mut self) -> W {
        if self.out.flush().is_err() {
            self.errors = self.errors.saturating_add(1);
        }
        self.out
    }
}

impl<W: Write> TraceSink for TraceWriter<W> {
    fn record(&mut self, record: Record) {
        match writeln!(self.out, "{record}") {
            Ok(()) => self.written = self.written.saturating_add(1),
            Err(_) => self.errors = self.errors.saturating_add(1),
        }
    }
}
