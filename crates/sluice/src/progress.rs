//! Progress of long commands on standard error: a bar redrawn in place on a terminal, plain
//! lines at every tenth otherwise (CI logs), nothing for runs too small to need it.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Cells in the bar.
const WIDTH: usize = 30;
/// A terminal bar appears only once a run has taken this long.
const SHOW_AFTER: Duration = Duration::from_millis(200);
/// Redraws at most this often.
const REDRAW_EVERY: Duration = Duration::from_millis(100);
/// Runs with fewer steps print no progress lines to a log.
const MIN_STEPS_FOR_LINES: usize = 100;

/// A progress display for `total` steps.
pub struct Progress {
    total: usize,
    terminal: bool,
    started: Instant,
    last_draw: Option<Instant>,
    last_tenth: usize,
}

impl Progress {
    /// A display on standard error, a bar when it is a terminal.
    pub fn new(total: usize) -> Self {
        Self {
            total,
            terminal: std::io::stderr().is_terminal(),
            started: Instant::now(),
            last_draw: None,
            last_tenth: 0,
        }
    }

    /// Records that `done` steps have finished, `errors` of them with errors.
    pub fn tick(&mut self, done: usize, errors: u64) {
        if self.total == 0 {
            return;
        }
        let elapsed = self.started.elapsed();
        if self.terminal {
            let due = match self.last_draw {
                None => elapsed >= SHOW_AFTER,
                Some(last) => last.elapsed() >= REDRAW_EVERY || done == self.total,
            };
            if due {
                let mut err = std::io::stderr().lock();
                let _ = write!(
                    err,
                    "\r\x1b[2K{}",
                    render(done, self.total, elapsed, errors)
                );
                let _ = err.flush();
                self.last_draw = Some(Instant::now());
            }
        } else if self.total >= MIN_STEPS_FOR_LINES {
            let tenth = done * 10 / self.total;
            if tenth > self.last_tenth {
                self.last_tenth = tenth;
                eprintln!(
                    "  progress: {done}/{} ({}%), {errors} errors, {:.1} s",
                    self.total,
                    tenth * 10,
                    elapsed.as_secs_f64()
                );
            }
        }
    }

    /// Clears the bar, if one was drawn.
    pub fn finish(&self) {
        if self.terminal && self.last_draw.is_some() {
            eprint!("\r\x1b[2K");
        }
    }
}

/// One line of the bar: `  [█████░░░] 512/1000  51%  1234/s  eta 0:03  3 errors`.
pub fn render(done: usize, total: usize, elapsed: Duration, errors: u64) -> String {
    let fraction = if total == 0 {
        1.0
    } else {
        (done as f64 / total as f64).min(1.0)
    };
    let filled = (fraction * WIDTH as f64).round() as usize;
    let bar: String = "█".repeat(filled) + &"░".repeat(WIDTH - filled);
    let seconds = elapsed.as_secs_f64();
    let rate = if seconds > 0.0 {
        done as f64 / seconds
    } else {
        0.0
    };
    let eta = if rate > 0.0 && done < total {
        let left = ((total - done) as f64 / rate).round() as u64;
        format!("  eta {}:{:02}", left / 60, left % 60)
    } else {
        String::new()
    };
    let errors = match errors {
        0 => String::new(),
        1 => "  1 error".to_owned(),
        n => format!("  {n} errors"),
    };
    format!(
        "  [{bar}] {done}/{total} {:>3.0}%  {rate:.0}/s{eta}{errors}",
        fraction * 100.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_shows_share_rate_eta_and_errors() {
        let line = render(50, 200, Duration::from_secs(5), 2);
        assert_eq!(
            line,
            format!(
                "  [{}{}] 50/200  25%  10/s  eta 0:15  2 errors",
                "█".repeat(8),
                "░".repeat(22)
            )
        );
        let done = render(200, 200, Duration::from_secs(10), 0);
        assert!(done.contains(&"█".repeat(30)), "{done}");
        assert!(done.ends_with("200/200 100%  20/s"), "{done}");
        assert!(render(0, 0, Duration::ZERO, 0).contains("100%"));
    }
}
