//! What `sluice pipeline run` shows while it runs, on stderr: on a terminal, a block with one
//! line per running stage and its time so far, redrawn in place under the lines of the
//! stages that ended; elsewhere (a CI log, a pipe) one JSON object per started attempt and per
//! ended stage; nothing with `--json` (the report is the output).

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write as _};
use std::time::Instant;

use serde_json::json;
use sluice_pipeline::{Event, Outcome, State};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Nothing.
    Quiet,
    /// A block redrawn in place (a terminal).
    Live,
    /// A line per event (a terminal whose stages print their own output).
    Lines,
    /// A JSON object per event (a CI log or a pipe).
    JsonLines,
}

impl Mode {
    /// The mode for these flags and this stderr.
    pub fn choose(json: bool, echo: bool) -> Mode {
        match (json, std::io::stderr().is_terminal(), echo) {
            (true, _, _) => Mode::Quiet,
            (false, true, false) => Mode::Live,
            (false, true, true) => Mode::Lines,
            (false, false, _) => Mode::JsonLines,
        }
    }
}

/// The progress display.
#[derive(Debug)]
pub struct Progress {
    mode: Mode,
    clock: Instant,
    running: BTreeMap<String, (Instant, u32)>,
    drawn: usize,
}

impl Progress {
    /// A display in `mode`.
    pub fn new(mode: Mode) -> Self {
        Progress {
            mode,
            clock: Instant::now(),
            running: BTreeMap::new(),
            drawn: 0,
        }
    }

    /// Whether it redraws on a timer.
    pub fn live(&self) -> bool {
        self.mode == Mode::Live
    }

    /// Shows one event.
    pub fn event(&mut self, event: &Event<'_>) {
        let text = match event {
            Event::Started { name, attempt } => {
                self.running
                    .insert((*name).to_owned(), (Instant::now(), *attempt));
                match self.mode {
                    Mode::JsonLines => Some(
                        json!({
                            "event": "started",
                            "stage": name,
                            "attempt": attempt,
                            "at_s": self.clock.elapsed().as_secs_f64(),
                        })
                        .to_string(),
                    ),
                    Mode::Lines if *attempt == 1 => Some(format!("  start  {name}")),
                    Mode::Lines => Some(format!("  retry  {name} (attempt {attempt})")),
                    Mode::Live | Mode::Quiet => None,
                }
            }
            Event::Finished(outcome) => {
                self.running.remove(&outcome.name);
                match self.mode {
                    Mode::JsonLines => Some(
                        json!({
                            "event": "finished",
                            "stage": outcome.name,
                            "state": outcome.state.name(),
                            "allowed": outcome.allowed,
                            "attempts": outcome.attempts,
                            "duration_s": outcome.duration.as_secs_f64(),
                            "reason": outcome.reason,
                        })
                        .to_string(),
                    ),
                    Mode::Lines | Mode::Live => Some(ended_line(outcome)),
                    Mode::Quiet => None,
                }
            }
        };
        match self.mode {
            Mode::Live => self.redraw(text.as_deref()),
            Mode::Quiet => {}
            Mode::Lines | Mode::JsonLines => {
                if let Some(text) = text {
                    eprintln!("{text}");
                }
            }
        }
    }

    /// Redraws the running stages' block (a terminal only).
    pub fn tick(&mut self) {
        if self.mode == Mode::Live {
            self.redraw(None);
        }
    }

    fn redraw(&mut self, ended: Option<&str>) {
        let (text, drawn) = block(self.drawn, ended, &self.running, Instant::now());
        self.drawn = drawn;
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(text.as_bytes()).and_then(|()| err.flush());
    }
}

/// The text that replaces the last block of `drawn` lines: the line of a stage that ended,
/// then one line per running stage; and how many lines the new block has.
fn block(
    drawn: usize,
    ended: Option<&str>,
    running: &BTreeMap<String, (Instant, u32)>,
    now: Instant,
) -> (String, usize) {
    let mut text = String::new();
    if drawn > 0 {
        // Up to the block's first line, then clear to the end of the screen.
        text.push_str(&format!("\x1b[{drawn}F\x1b[J"));
    }
    if let Some(line) = ended {
        text.push_str(line);
        text.push('\n');
    }
    for (name, (since, attempt)) in running {
        let retry = if *attempt > 1 {
            format!(", attempt {attempt}")
        } else {
            String::new()
        };
        let seconds = now.saturating_duration_since(*since).as_secs_f64();
        text.push_str(&format!("  ⋯ {name} ({seconds:.1}s{retry})\n"));
    }
    (text, running.len())
}

/// The line of a stage that ended.
fn ended_line(outcome: &Outcome) -> String {
    let label = match outcome.state {
        State::Cached => "cached",
        _ if outcome.ok() => "done",
        State::Skipped => "skip",
        State::Cancelled => "stop",
        _ => "FAIL",
    };
    format!(
        "  {label:<6} {} — {}: {}",
        outcome.name,
        outcome.state.name(),
        outcome.reason
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_live_block_is_redrawn_in_place() {
        let start = Instant::now();
        let running = BTreeMap::from([
            ("eval".to_owned(), (start, 1)),
            ("bench".to_owned(), (start, 2)),
        ]);
        let now = start + Duration::from_millis(1500);
        let (first, drawn) = block(0, None, &running, now);
        assert_eq!(first, "  ⋯ bench (1.5s, attempt 2)\n  ⋯ eval (1.5s)\n");
        assert_eq!(drawn, 2);
        let (next, drawn) = block(2, Some("  done   lint"), &running, now);
        assert!(
            next.starts_with("\x1b[2F\x1b[J  done   lint\n  ⋯ bench"),
            "{next:?}"
        );
        assert_eq!(drawn, 2);
    }
}
