//! Answers of a version whose safety action is `redact` or `block`: the text of each choice is
//! read before it is passed on. A whole answer has its findings replaced with their labels,
//! or a choice with a finding is withheld (`finish_reason: content_filter`, empty content). A
//! stream is guarded choice by choice with a [`StreamGuard`], which holds back the text a
//! finding could still be growing into; a blocked choice ends there and the rest of its tokens
//! are dropped.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value, json};
use sluice_safety::scanner::Release;
use sluice_safety::{Action, Scanner, StreamGuard};

use crate::metrics::VersionMetrics;

/// Where a choice's text is: `message`/`delta.content` (chat) or `text` (completions).
fn text_of(choice: &mut Map<String, Value>, streamed: bool) -> Option<&mut Value> {
    if choice.contains_key("text") {
        return choice.get_mut("text");
    }
    let holder = if streamed { "delta" } else { "message" };
    choice
        .get_mut(holder)
        .and_then(Value::as_object_mut)
        .and_then(|m| m.get_mut("content"))
        .filter(|c| c.is_string())
}

/// Guards the choices of a whole answer in place; returns what was done (`redacted`,
/// `blocked`), if anything.
pub(crate) fn whole(scanner: &Scanner, answer: &mut Value) -> Option<&'static str> {
    let mut done = None;
    let choices = answer.get_mut("choices").and_then(Value::as_array_mut)?;
    for choice in choices.iter_mut().filter_map(Value::as_object_mut) {
        let Some(slot) = text_of(choice, false) else {
            continue;
        };
        let text = slot.as_str().unwrap_or_default();
        match scanner.action {
            Action::Log => {}
            Action::Redact => {
                let (redacted, kinds) = scanner.redact(text);
                if !kinds.is_empty() {
                    *slot = Value::String(redacted);
                    done.get_or_insert("redacted");
                }
            }
            Action::Block => {
                if !scanner.findings(text).is_empty() {
                    *slot = Value::String(String::new());
                    choice.insert("finish_reason".into(), json!("content_filter"));
                    done = Some("blocked");
                }
            }
        }
    }
    done
}

/// One choice of a stream.
#[derive(Default)]
struct Choice {
    guard: StreamGuard,
    /// Finished or blocked: nothing more of it goes out.
    closed: bool,
}

/// Guards the events of one streamed answer.
pub(crate) struct EventGuard {
    scanner: Arc<Scanner>,
    metrics: Arc<VersionMetrics>,
    choices: BTreeMap<u64, Choice>,
    /// The last event's fields besides its choices (`id`, `model`, …), for events made here.
    template: Map<String, Value>,
    /// Chat (`delta.content`) or completions (`text`).
    chat: bool,
    redacted: bool,
    blocked: bool,
}

impl EventGuard {
    pub(crate) fn new(scanner: Arc<Scanner>, metrics: Arc<VersionMetrics>, chat: bool) -> Self {
        Self {
            scanner,
            metrics,
            choices: BTreeMap::new(),
            template: Map::new(),
            chat,
            redacted: false,
            blocked: false,
        }
    }

    /// An event from upstream, as it goes to the client (`None`: nothing of it goes).
    pub(crate) fn event(&mut self, event: Bytes) -> Option<Bytes> {
        let data: String = String::from_utf8_lossy(&event)
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .collect();
        let Ok(Value::Object(mut value)) = serde_json::from_str::<Value>(&data) else {
            return Some(event);
        };
        let Some(Value::Array(choices)) = value.remove("choices") else {
            return Some(event);
        };
        if self.template.is_empty() {
            // `id`, `model`, `created`… are the same on every event of a stream.
            self.template = value.clone();
            self.template.remove("usage");
        }
        let mut kept = Vec::with_capacity(choices.len());
        for (position, choice) in choices.into_iter().enumerate() {
            let Value::Object(mut choice) = choice else {
                continue;
            };
            let index = choice
                .get("index")
                .and_then(Value::as_u64)
                .unwrap_or(position as u64);
            let state = self.choices.entry(index).or_default();
            if state.closed {
                continue;
            }
            let finished = choice
                .get("finish_reason")
                .is_some_and(|reason| !reason.is_null());
            let text = text_of(&mut choice, true)
                .and_then(|slot| slot.as_str().map(str::to_owned))
                .unwrap_or_default();
            let mut release = state.guard.push(&self.scanner, &text);
            if finished && let Release::Text(before, kinds) = release {
                release = match state.guard.finish(&self.scanner) {
                    Release::Text(rest, more) => {
                        Release::Text(before + &rest, kinds.into_iter().chain(more).collect())
                    }
                    blocked => blocked,
                };
            }
            match release {
                Release::Text(out, kinds) => {
                    self.redacted |= !kinds.is_empty();
                    if let Some(slot) = text_of(&mut choice, true) {
                        *slot = Value::String(out);
                    } else if !out.is_empty() {
                        put_text(&mut choice, out, self.chat);
                    }
                    state.closed = finished;
                }
                Release::Blocked(_) => {
                    self.blocked = true;
                    state.closed = true;
                    if let Some(slot) = text_of(&mut choice, true) {
                        *slot = Value::String(String::new());
                    }
                    choice.insert("finish_reason".into(), json!("content_filter"));
                }
            }
            kept.push(Value::Object(choice));
        }
        if kept.is_empty() && value.get("usage").is_none_or(Value::is_null) {
            return None;
        }
        value.insert("choices".into(), Value::Array(kept));
        Some(Self::encode(&value))
    }

    /// The answer ended: events with the text each open choice still holds.
    pub(crate) fn flush(&mut self, into: &mut VecDeque<Bytes>) {
        let open: Vec<u64> = self
            .choices
            .iter()
            .filter(|(_, c)| !c.closed)
            .map(|(i, _)| *i)
            .collect();
        for index in open {
            let Some(state) = self.choices.get_mut(&index) else {
                continue;
            };
            state.closed = true;
            let mut choice = Map::new();
            choice.insert("index".into(), json!(index));
            match state.guard.finish(&self.scanner) {
                Release::Text(out, kinds) => {
                    self.redacted |= !kinds.is_empty();
                    if out.is_empty() {
                        continue;
                    }
                    put_text(&mut choice, out, self.chat);
                    choice.insert("finish_reason".into(), Value::Null);
                }
                Release::Blocked(_) => {
                    self.blocked = true;
                    put_text(&mut choice, String::new(), self.chat);
                    choice.insert("finish_reason".into(), json!("content_filter"));
                }
            }
            let mut value = self.template.clone();
            value.insert("choices".into(), json!([choice]));
            into.push_back(Self::encode(&value));
        }
    }

    fn encode(value: &Map<String, Value>) -> Bytes {
        Bytes::from(format!(
            "data: {}\n\n",
            serde_json::to_string(value).unwrap_or_default()
        ))
    }
}

fn put_text(choice: &mut Map<String, Value>, text: String, chat: bool) {
    if chat {
        let delta = choice
            .entry("delta")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(delta) = delta {
            delta.insert("content".into(), Value::String(text));
        }
    } else {
        choice.insert("text".into(), Value::String(text));
    }
}

impl Drop for EventGuard {
    fn drop(&mut self) {
        if self.blocked {
            self.metrics.record_action("blocked");
        } else if self.redacted {
            self.metrics.record_action("redacted");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanner(action: Action) -> Scanner {
        Scanner {
            action,
            ..Scanner::all()
        }
    }

    #[test]
    fn a_whole_answer_is_redacted_or_blocked_choice_by_choice() {
        let answer = json!({"choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Key: sk-proj-R3dT34mPl4nt3dK3yD0N0tUs3."}, "finish_reason": "stop"},
            {"index": 1, "message": {"role": "assistant", "content": "Nothing to see."}, "finish_reason": "stop"}
        ]});
        let mut redacted = answer.clone();
        assert_eq!(
            whole(&scanner(Action::Redact), &mut redacted),
            Some("redacted")
        );
        assert_eq!(
            redacted["choices"][0]["message"]["content"],
            "Key: [API_KEY]."
        );
        assert_eq!(
            redacted["choices"][1]["message"]["content"],
            "Nothing to see."
        );
        let mut blocked = answer.clone();
        assert_eq!(
            whole(&scanner(Action::Block), &mut blocked),
            Some("blocked")
        );
        assert_eq!(blocked["choices"][0]["message"]["content"], "");
        assert_eq!(blocked["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(blocked["choices"][1]["finish_reason"], "stop");
        let mut completion = json!({"choices": [{"index": 0, "text": "mail bob@example.com"}]});
        whole(&scanner(Action::Redact), &mut completion);
        assert_eq!(completion["choices"][0]["text"], "mail [EMAIL]");
    }
}
