//! Answers of a version whose safety action is `redact` or `block`: the text of each choice,
//! and the arguments of each tool call it makes, are read before they are passed on. A whole answer has its findings replaced with their labels,
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

/// A tool call's arguments text (`function.arguments`), when it has one.
fn arguments_of(call: &mut Value) -> Option<&mut Value> {
    call.get_mut("function")
        .and_then(|f| f.get_mut("arguments"))
        .filter(|a| a.is_string())
}

/// Guards the choices of a whole answer in place; returns what was done (`redacted`,
/// `blocked`), if anything.
pub(crate) fn whole(scanner: &Scanner, answer: &mut Value) -> Option<&'static str> {
    let mut done = None;
    let choices = answer.get_mut("choices").and_then(Value::as_array_mut)?;
    for choice in choices.iter_mut().filter_map(Value::as_object_mut) {
        let calls = choice
            .get_mut("message")
            .and_then(|m| m.get_mut("tool_calls"))
            .and_then(Value::as_array_mut);
        let mut tool_blocked = false;
        for call in calls.into_iter().flatten() {
            let Some(arguments) = arguments_of(call) else {
                continue;
            };
            let (redacted, kinds) = scanner.redact(arguments.as_str().unwrap_or_default());
            if kinds.is_empty() {
                continue;
            }
            match scanner.action {
                Action::Log => {}
                Action::Redact => {
                    *arguments = Value::String(redacted);
                    done.get_or_insert("redacted");
                }
                Action::Block => tool_blocked = true,
            }
        }
        if tool_blocked {
            if let Some(message) = choice.get_mut("message").and_then(Value::as_object_mut) {
                message.remove("tool_calls");
                message.insert("content".into(), Value::String(String::new()));
            }
            choice.insert("finish_reason".into(), json!("content_filter"));
            done = Some("blocked");
            continue;
        }
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
    /// The arguments of each of its tool calls, by the call's index.
    tools: BTreeMap<u64, StreamGuard>,
    /// Finished or blocked: nothing more of it goes out.
    closed: bool,
}

impl Choice {
    /// Guards the tool-call argument fragments of a streamed choice in place; at its end
    /// (`finished`), what each guard still holds is added as one more fragment. Returns whether
    /// one of them is blocked, and whether anything was redacted.
    fn guard_tools(
        &mut self,
        scanner: &Scanner,
        choice: &mut Map<String, Value>,
        finished: bool,
    ) -> (bool, bool) {
        let (mut blocked, mut redacted) = (false, false);
        let mut note = |release: Release| match release {
            Release::Text(out, kinds) => {
                redacted |= !kinds.is_empty();
                Some(out)
            }
            Release::Blocked(_) => {
                blocked = true;
                None
            }
        };
        let delta = choice
            .entry("delta")
            .or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(delta) = delta else {
            return (false, false);
        };
        if let Some(Value::Array(calls)) = delta.get_mut("tool_calls") {
            for (position, call) in calls.iter_mut().enumerate() {
                let index = call
                    .get("index")
                    .and_then(Value::as_u64)
                    .unwrap_or(position as u64);
                let Some(arguments) = arguments_of(call) else {
                    continue;
                };
                let text = arguments.as_str().unwrap_or_default().to_owned();
                let guard = self.tools.entry(index).or_default();
                if let Some(out) = note(guard.push(scanner, &text)) {
                    *arguments = Value::String(out);
                }
            }
        }
        if finished {
            let mut rest = Vec::new();
            for (index, guard) in &mut self.tools {
                if let Some(out) = note(guard.finish(scanner))
                    && !out.is_empty()
                {
                    rest.push(json!({"index": index, "function": {"arguments": out}}));
                }
            }
            if !rest.is_empty() {
                let calls = delta
                    .entry("tool_calls")
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(calls) = calls {
                    calls.extend(rest);
                }
            }
        }
        if blocked {
            delta.remove("tool_calls");
        }
        (blocked, redacted)
    }
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
            if self.chat && !matches!(release, Release::Blocked(_)) {
                let (blocked, redacted) = state.guard_tools(&self.scanner, &mut choice, finished);
                self.redacted |= redacted;
                if blocked {
                    release = Release::Blocked(Vec::new());
                }
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
            let mut release = state.guard.finish(&self.scanner);
            let mut tool_args = false;
            if self.chat && !matches!(release, Release::Blocked(_)) {
                let (blocked, redacted) = state.guard_tools(&self.scanner, &mut choice, true);
                self.redacted |= redacted;
                tool_args = choice
                    .get("delta")
                    .and_then(|d| d.get("tool_calls"))
                    .is_some();
                if blocked {
                    release = Release::Blocked(Vec::new());
                }
            }
            match release {
                Release::Text(out, kinds) => {
                    self.redacted |= !kinds.is_empty();
                    if out.is_empty() && !tool_args {
                        continue;
                    }
                    if !out.is_empty() {
                        put_text(&mut choice, out, self.chat);
                    }
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
        let called = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "send", "arguments": "{\"key\": \"sk-proj-R3dT34mPl4nt3dK3yD0N0tUs3\"}"}}
        ]}, "finish_reason": "tool_calls"}]});
        let mut redacted = called.clone();
        assert_eq!(
            whole(&scanner(Action::Redact), &mut redacted),
            Some("redacted")
        );
        assert_eq!(
            redacted["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"key\": \"[API_KEY]\"}"
        );
        let mut blocked = called;
        assert_eq!(
            whole(&scanner(Action::Block), &mut blocked),
            Some("blocked")
        );
        assert!(blocked["choices"][0]["message"]["tool_calls"].is_null());
        assert_eq!(blocked["choices"][0]["finish_reason"], "content_filter");
        let mut completion = json!({"choices": [{"index": 0, "text": "mail bob@example.com"}]});
        whole(&scanner(Action::Redact), &mut completion);
        assert_eq!(completion["choices"][0]["text"], "mail [EMAIL]");
    }

    fn events(guard: &mut EventGuard, fragments: &[&str]) -> Vec<Value> {
        let mut out: Vec<Bytes> = Vec::new();
        for (i, fragment) in fragments.iter().enumerate() {
            let last = i + 1 == fragments.len();
            let event = json!({"id": "x", "choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": 0, "function": {"arguments": fragment}}
            ]}, "finish_reason": if last { json!("tool_calls") } else { Value::Null }}]});
            out.extend(guard.event(Bytes::from(format!("data: {event}\n\n"))));
        }
        let mut rest = VecDeque::new();
        guard.flush(&mut rest);
        out.extend(rest);
        out.iter()
            .map(|e| {
                serde_json::from_str(
                    std::str::from_utf8(e)
                        .unwrap()
                        .trim_start_matches("data: ")
                        .trim(),
                )
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn streamed_tool_call_arguments_are_guarded_too() {
        let fragments = [
            "{\"key\": \"sk-pr",
            "oj-R3dT34mPl4nt3",
            "dK3yD0N0tUs3\", ",
            "\"to\": \"x\"}",
        ];
        let metrics = crate::metrics::Metrics::default().version("r", "v");
        let mut guard = EventGuard::new(
            Arc::new(scanner(Action::Redact)),
            Arc::clone(&metrics),
            true,
        );
        let sent = events(&mut guard, &fragments);
        let arguments: String = sent
            .iter()
            .flat_map(|e| {
                e["choices"][0]["delta"]["tool_calls"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .map(|c| {
                c["function"]["arguments"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        assert_eq!(arguments, "{\"key\": \"[API_KEY]\", \"to\": \"x\"}");
        let mut guard = EventGuard::new(Arc::new(scanner(Action::Block)), metrics, true);
        let sent = events(&mut guard, &fragments);
        assert!(
            !serde_json::to_string(&sent).unwrap().contains("sk-pr"),
            "{sent:?}"
        );
        assert!(
            sent.iter()
                .any(|e| e["choices"][0]["finish_reason"] == "content_filter")
        );
    }
}
