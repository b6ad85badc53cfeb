//! The progress bar: hidden until the size is known, as wide as the terminal less
//! one column, with the whole percent truncated as the primer's
//! `int(done / total * 100)`.
//!
//! indicatif pads every line it draws to the width its target reports. A line
//! that reaches the last column leaves the cursor waiting to wrap: a terminal
//! (or a log of it) that wraps at once shows the bar one column too wide, and the
//! next redraw clears the wrong line. So the bar is drawn for one column less than
//! the terminal has ([`Fitted`]), and it ends with a newline of its own, so that
//! what the CLI prints next starts on a line of its own.

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use indicatif::TermLike;
use indicatif::{
    BinaryBytes, HumanDuration, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle,
};

/// Columns left free at the right edge of the terminal.
pub const SPARE_COLUMNS: u16 = 1;

/// The widest the bar's text besides the prefix and the bar itself can get:
/// `" 100% ["`, `"] "`, `"1023.99 GiB/1023.99 GiB"`, `" 1023.99 GiB/s"`,
/// `" ETA "` and a short ETA.
const TEXT_COLUMNS: usize = 55;

/// The bar keeps at least this many columns when the prefix must be shortened.
const MIN_BAR_COLUMNS: usize = 10;

/// The prefix keeps at least this many characters, however narrow the terminal.
const MIN_PREFIX_CHARS: usize = 12;

/// An ETA above this shows as `?` (a stalled transfer estimates centuries).
const MAX_ETA: Duration = Duration::from_secs(99 * 3600);

/// Redraws per second at most.
const REFRESH_HZ: u8 = 20;

/// Whole percent, truncated as the primer does: `int(done / total * 100)`.
pub fn whole_percent(done: u64, total: u64) -> u64 {
    if total == 0 {
        100
    } else {
        (u128::from(done) * 100 / u128::from(total)) as u64
    }
}

/// `prefix`, shortened with `…` so that the line fits `width` columns with a bar
/// of [`MIN_BAR_COLUMNS`] (counting a character as one column).
pub fn fit_prefix(prefix: &str, width: u16) -> String {
    let room = usize::from(width)
        .saturating_sub(TEXT_COLUMNS + MIN_BAR_COLUMNS)
        .max(MIN_PREFIX_CHARS);
    if prefix.chars().count() <= room {
        return prefix.to_owned();
    }
    let mut short: String = prefix.chars().take(room - 1).collect();
    short.push('…');
    short
}

/// Where bars go: nowhere (stderr is not a terminal, or a test), or a terminal.
#[derive(Clone, Debug)]
pub enum Display {
    Hidden,
    Terminal(Arc<dyn TermLike>),
}

impl Display {
    /// stderr, when it is a terminal that can draw a bar.
    pub fn stderr() -> Self {
        let dumb = std::env::var_os("TERM").is_some_and(|term| term == "dumb");
        if io::stderr().is_terminal() && !dumb {
            Self::Terminal(Arc::new(Stderr::default()))
        } else {
            Self::Hidden
        }
    }
}

/// A terminal as indicatif sees it, [`SPARE_COLUMNS`] narrower than it is. It
/// shares the terminal, so the bar can end its line after indicatif is done.
#[derive(Debug)]
pub struct Fitted(pub Arc<dyn TermLike>);

impl TermLike for Fitted {
    fn width(&self) -> u16 {
        self.0.width().saturating_sub(SPARE_COLUMNS)
    }

    fn height(&self) -> u16 {
        self.0.height()
    }

    fn move_cursor_up(&self, n: usize) -> io::Result<()> {
        self.0.move_cursor_up(n)
    }

    fn move_cursor_down(&self, n: usize) -> io::Result<()> {
        self.0.move_cursor_down(n)
    }

    fn move_cursor_right(&self, n: usize) -> io::Result<()> {
        self.0.move_cursor_right(n)
    }

    fn move_cursor_left(&self, n: usize) -> io::Result<()> {
        self.0.move_cursor_left(n)
    }

    fn write_line(&self, s: &str) -> io::Result<()> {
        self.0.write_line(s)
    }

    fn write_str(&self, s: &str) -> io::Result<()> {
        self.0.write_str(s)
    }

    fn clear_line(&self) -> io::Result<()> {
        self.0.clear_line()
    }

    fn flush(&self) -> io::Result<()> {
        self.0.flush()
    }
}

/// The terminal on stderr, written with ANSI escapes, one write per redraw.
#[derive(Debug, Default)]
pub struct Stderr {
    pending: Mutex<Vec<u8>>,
}

impl Stderr {
    fn put(&self, s: &str) -> io::Result<()> {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        pending.extend_from_slice(s.as_bytes());
        Ok(())
    }

    fn cursor(&self, n: usize, code: char) -> io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.put(&format!("\x1b[{n}{code}"))
    }

    /// (rows, columns) of the terminal on stderr; 24 × 80 if it will not say.
    fn size() -> (u16, u16) {
        let mut size = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which
        // points to a live, writable one.
        let ok = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
        if ok && size.ws_col > 0 && size.ws_row > 0 {
            (size.ws_row, size.ws_col)
        } else {
            (24, 80)
        }
    }
}

impl TermLike for Stderr {
    fn width(&self) -> u16 {
        Self::size().1
    }

    fn height(&self) -> u16 {
        Self::size().0
    }

    fn move_cursor_up(&self, n: usize) -> io::Result<()> {
        self.cursor(n, 'A')
    }

    fn move_cursor_down(&self, n: usize) -> io::Result<()> {
        self.cursor(n, 'B')
    }

    fn move_cursor_right(&self, n: usize) -> io::Result<()> {
        self.cursor(n, 'C')
    }

    fn move_cursor_left(&self, n: usize) -> io::Result<()> {
        self.cursor(n, 'D')
    }

    fn write_line(&self, s: &str) -> io::Result<()> {
        self.put(s)?;
        self.put("\n")
    }

    fn write_str(&self, s: &str) -> io::Result<()> {
        self.put(s)
    }

    fn clear_line(&self) -> io::Result<()> {
        self.put("\r\x1b[2K")
    }

    fn flush(&self) -> io::Result<()> {
        let bytes = std::mem::take(
            &mut *self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let mut stderr = io::stderr().lock();
        stderr.write_all(&bytes)?;
        stderr.flush()
    }
}

/// The bar's look. `start` is where the transfer began (above 0 for a resume):
/// the rate counts only what moved since.
fn style(start: Arc<AtomicU64>) -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix} {whole_percent:>3}% [{wide_bar}] {bytes}/{total_bytes} {rate} ETA {short_eta}",
    )
    .expect("a valid template")
    .with_key(
        "whole_percent",
        |state: &ProgressState, w: &mut dyn fmt::Write| {
            let _ = write!(
                w,
                "{}",
                whole_percent(state.pos(), state.len().unwrap_or(0))
            );
        },
    )
    .with_key(
        "rate",
        move |state: &ProgressState, w: &mut dyn fmt::Write| {
            let per_sec = if state.is_finished() {
                let moved = state.pos().saturating_sub(start.load(Ordering::Relaxed));
                moved as f64 / state.elapsed().as_secs_f64().max(1e-6)
            } else {
                state.per_sec()
            };
            let _ = write!(w, "{}/s", BinaryBytes(per_sec as u64));
        },
    )
    .with_key(
        "short_eta",
        |state: &ProgressState, w: &mut dyn fmt::Write| {
            let _ = match state.eta() {
                eta if eta > MAX_ETA => write!(w, "?"),
                eta => write!(w, "{:#}", HumanDuration(eta)),
            };
        },
    )
    .progress_chars("=> ")
}

/// One transfer's bar.
pub struct Bar {
    bar: ProgressBar,
    term: Option<Arc<dyn TermLike>>,
    shown: bool,
    /// Where the transfer began, for the rate.
    start: Arc<AtomicU64>,
}

impl Bar {
    /// A bar for `action name` (say `put big.bin`), not drawn until
    /// [`update`](Self::update) gives the size: before the server has answered,
    /// it would read "0 B/0 B", which whole_percent calls 100 %.
    pub fn new(display: &Display, action: &str, name: &str) -> Self {
        let prefix = format!("{action} {name}");
        let term = match display {
            Display::Hidden => None,
            Display::Terminal(term) => Some(Arc::clone(term)),
        };
        let prefix = match &term {
            Some(term) => fit_prefix(&prefix, term.width().saturating_sub(SPARE_COLUMNS)),
            None => prefix,
        };
        let start = Arc::new(AtomicU64::new(0));
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden())
            .with_style(style(Arc::clone(&start)));
        bar.set_prefix(prefix);
        Self {
            bar,
            term,
            shown: false,
            start,
        }
    }

    /// `done` of `total` bytes are through; the first call shows the bar.
    pub fn update(&mut self, done: u64, total: u64) {
        self.bar.set_length(total);
        self.bar.set_position(done);
        if !self.shown {
            self.shown = true;
            // The transfer starts now, at `done`: neither the time before (a
            // put hashes its file first) nor a resume's jump is throughput.
            self.start.store(done, Ordering::Relaxed);
            self.bar.reset_elapsed();
            if let Some(term) = &self.term {
                let target = ProgressDrawTarget::term_like_with_hz(
                    Box::new(Fitted(Arc::clone(term))),
                    REFRESH_HZ,
                );
                self.bar.set_draw_target(target);
            }
        }
    }

    /// Draws the last state (full on success, where it stopped on a failure)
    /// and ends the line.
    pub fn finish(self, ok: bool) {
        if !self.shown {
            return;
        }
        if ok {
            self.bar.finish();
        } else {
            self.bar.abandon();
        }
        if let Some(term) = &self.term {
            let _ = term.write_line("");
            let _ = term.flush();
        }
    }
}
