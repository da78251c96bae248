//! Turning a profile and a prompt into a plan: the answer's token pieces, when each one is
//! due, and which fault (if any) to inject.

use std::time::Duration;

use crate::config::{Answer, DefaultAnswer, Matcher, Profile};
use crate::text;

/// What to do with one request.
pub(crate) enum Outcome {
    /// Answer according to the plan.
    Answer(Plan),
    /// Answer with an error status.
    Error {
        /// The status.
        status: u16,
        /// `retry-after` seconds, for 429 and 503.
        retry_after_s: Option<f64>,
    },
    /// Never answer; close after this long.
    Hang(Duration),
}

/// A planned answer.
pub(crate) struct Plan {
    /// Token pieces of the text answer (empty for a tool call).
    pub pieces: Vec<String>,
    /// A tool call answer: name and JSON arguments.
    pub tool_call: Option<(String, String)>,
    /// `stop`, `length` or `tool_calls`.
    pub finish_reason: &'static str,
    /// When each piece is due, from the arrival of the request; the first is the TTFT.
    pub due: Vec<Duration>,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Cut the answer off half-way.
    pub truncate: bool,
    /// Send invalid JSON.
    pub malformed: bool,
    /// Send an in-band error half-way.
    pub stream_error: bool,
}

impl Plan {
    /// Completion tokens.
    pub fn completion_tokens(&self) -> u64 {
        match &self.tool_call {
            Some((name, arguments)) => text::count(name) + text::count(arguments),
            None => self.pieces.len() as u64,
        }
    }

    /// The whole answer text.
    pub fn text(&self) -> String {
        self.pieces.concat()
    }

    /// When the complete answer is due.
    pub fn finished_at(&self) -> Duration {
        self.due.last().copied().unwrap_or_default()
    }
}

/// The request as the planner sees it.
pub(crate) struct Prompt<'a> {
    /// The text scripts match against and echo repeats: the last user message, or the prompt.
    pub matched: &'a str,
    /// Every message's text, one per line (what `echo_all` repeats).
    pub all: &'a str,
    /// All prompt text, for `prompt_tokens`.
    pub prompt_tokens: u64,
    /// User messages in the conversation (1 for a completion prompt).
    pub user_turns: usize,
    /// Output token cap.
    pub max_tokens: Option<u64>,
    /// Stop sequences.
    pub stop: &'a [String],
}

impl Profile {
    /// Decides what to do with one request.
    pub(crate) fn plan(&self, prompt: &Prompt<'_>, rng: &mut fastrand::Rng) -> Outcome {
        let faults = &self.faults;
        if faults.error_rate > 0.0 && rng.f64() < faults.error_rate {
            let status = faults.error_statuses[rng.usize(..faults.error_statuses.len())];
            let retry_after_s = matches!(status, 429 | 503).then_some(faults.retry_after_s);
            return Outcome::Error {
                status,
                retry_after_s,
            };
        }
        if faults.hang_rate > 0.0 && rng.f64() < faults.hang_rate {
            return Outcome::Hang(Duration::from_millis(faults.hang_ms));
        }
        let truncate = faults.truncate_rate > 0.0 && rng.f64() < faults.truncate_rate;
        let malformed = faults.malformed_rate > 0.0 && rng.f64() < faults.malformed_rate;
        let stream_error = faults.stream_error_rate > 0.0 && rng.f64() < faults.stream_error_rate;

        let answer = self
            .rules
            .iter()
            .find(|rule| {
                prompt.user_turns >= rule.min_turns && rule.matcher.matches(prompt.matched)
            })
            .map(|rule| &rule.answer);
        let (mut answer_text, tool_call) = match answer {
            Some(Answer::Text(text)) => (text.clone(), None),
            Some(Answer::Choice(choices)) => (pick(choices, rng).to_owned(), None),
            Some(Answer::ToolCall { name, arguments }) => {
                (String::new(), Some((name.clone(), arguments.clone())))
            }
            None => match &self.default {
                DefaultAnswer::Echo => (prompt.matched.to_owned(), None),
                DefaultAnswer::EchoAll => (prompt.all.to_owned(), None),
                DefaultAnswer::Lorem(tokens) => (text::lorem(*tokens), None),
                DefaultAnswer::Fixed(text) => (text.clone(), None),
            },
        };
        let mut finish_reason = if tool_call.is_some() {
            "tool_calls"
        } else {
            "stop"
        };
        if let Some(cut) = prompt
            .stop
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| answer_text.find(s.as_str()))
            .min()
        {
            answer_text.truncate(cut);
        }
        let mut pieces: Vec<String> = text::pieces(&answer_text)
            .into_iter()
            .map(str::to_owned)
            .collect();
        if let Some(max) = prompt.max_tokens
            && pieces.len() as u64 > max
        {
            pieces.truncate(max as usize);
            finish_reason = "length";
        }
        let emitted = if tool_call.is_some() {
            1
        } else {
            pieces.len().max(1)
        };
        let mut due = Vec::with_capacity(emitted);
        let mut at = self.ttft.sample_ms(rng);
        due.push(Duration::from_secs_f64(at / 1000.0));
        for _ in 1..emitted {
            if let Some(tps) = self.tokens_per_second {
                let jitter = 1.0 + self.jitter * (2.0 * rng.f64() - 1.0);
                at += 1000.0 / tps * jitter;
            }
            due.push(Duration::from_secs_f64(at / 1000.0));
        }
        Outcome::Answer(Plan {
            pieces,
            tool_call,
            finish_reason,
            due,
            prompt_tokens: prompt.prompt_tokens,
            truncate,
            malformed,
            stream_error,
        })
    }
}

/// Draws one of `choices` by weight.
fn pick<'a>(choices: &'a [(String, f64)], rng: &mut fastrand::Rng) -> &'a str {
    let total: f64 = choices.iter().map(|(_, w)| w).sum();
    let mut target = rng.f64() * total;
    for (text, weight) in choices {
        if target < *weight {
            return text;
        }
        target -= weight;
    }
    choices.last().map_or("", |(text, _)| text)
}

impl Matcher {
    fn matches(&self, prompt: &str) -> bool {
        match self {
            Matcher::Contains(needle) => prompt.to_lowercase().contains(needle.as_str()),
            Matcher::Exact(text) => prompt.trim() == text,
            Matcher::Regex(regex) => regex.is_match(prompt),
        }
    }
}
