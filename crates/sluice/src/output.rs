//! Standard output that a closed pipe ends quietly.
//!
//! `sluice … | head` closes the pipe while a command is still writing. Rust's `println!` panics
//! on that (exit 101), and a `?` on a write would turn it into an error (exit 2). Everything the
//! binary prints to standard output goes through [`stdout`] instead: once the reader has gone,
//! writes are dropped and the command finishes its work, so its exit code is what it would have
//! been with a reader (0 when it succeeded; a failed gate still fails: a pipe never turns it
//! into a pass).

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write found the reader gone.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Standard output that swallows `BrokenPipe` (see the module docs).
pub struct Stdout;

/// Standard output for everything the binary prints.
pub fn stdout() -> Stdout {
    Stdout
}

/// Whether a write found standard output's reader gone.
pub fn closed() -> bool {
    CLOSED.load(Ordering::Relaxed)
}

impl Stdout {
    /// Runs `write` on the real stream unless it is closed, and marks it closed on `BrokenPipe`.
    fn guarded<T>(
        &mut self,
        done: T,
        write: impl FnOnce(&mut io::StdoutLock<'static>) -> io::Result<T>,
    ) -> io::Result<T> {
        if closed() {
            return Ok(done);
        }
        match write(&mut io::stdout().lock()) {
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {
                CLOSED.store(true, Ordering::Relaxed);
                Ok(done)
            }
            other => other,
        }
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.guarded(buf.len(), |out| out.write(buf))
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.guarded((), |out| out.write_all(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.guarded((), |out| out.flush())
    }
}

/// `println!` through [`stdout`]: a closed pipe ends output quietly, other errors are ignored
/// as `println!` would not report them either.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!($crate::output::stdout(), $($arg)*);
    }};
}

/// `print!` through [`stdout`], flushed (used for partial lines such as prompts and streams).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut out = $crate::output::stdout();
        let _ = write!(out, $($arg)*);
        let _ = out.flush();
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_pipe_is_remembered_and_later_writes_succeed() {
        CLOSED.store(true, Ordering::Relaxed);
        let mut out = stdout();
        assert_eq!(out.write(b"dropped").ok(), Some(7));
        assert!(out.write_all(b"dropped").is_ok());
        assert!(out.flush().is_ok());
        CLOSED.store(false, Ordering::Relaxed);
    }
}
