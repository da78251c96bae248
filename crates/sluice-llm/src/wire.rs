//! Reading answers as they cross a proxy, without building a JSON tree: a whole answer's
//! `usage`, model, and first choice's text and finish reason, and a stream chunk's `usage`,
//! whether it is a usage-only chunk, whether it carries a generated token, its text, model and
//! finish reason. Any JSON is accepted: a field
//! of an unexpected type reads as absent, so only bytes that are not JSON are an error.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::types::Usage;

/// What a proxy reads of a whole (non-streamed) answer.
#[derive(Debug, Default, PartialEq)]
pub struct AnswerView {
    /// The answer's token counts, when it has them.
    pub usage: Option<Usage>,
    /// The first choice's message content (chat) or text (completions).
    pub text: String,
    /// The model that answered, as the answer names it.
    pub model: Option<String>,
    /// Why the first choice ended (`stop`, `length`, `tool_calls`…).
    pub finish_reason: Option<String>,
    /// Whether the first choice's message calls a tool.
    pub tool_calls: bool,
}

/// What a proxy reads of one streamed chunk (the JSON after `data:`).
#[derive(Debug, Default, PartialEq)]
pub struct ChunkView {
    /// The chunk's token counts, when it has them (the usage chunk).
    pub usage: Option<Usage>,
    /// A chunk whose `choices` is an empty list: usage and nothing else.
    pub usage_only: bool,
    /// Whether it carries a generated token: non-empty text or reasoning, or a tool call.
    /// Role-only chunks do not.
    pub carries_token: bool,
    /// The first choice's delta content (chat) or text (completions).
    pub text: String,
    /// The model that answered, as the chunk names it.
    pub model: Option<String>,
    /// Why the first choice ended, on the chunk that ends it.
    pub finish_reason: Option<String>,
    /// Whether the chunk carries part of a tool call.
    pub tool_calls: bool,
}

#[derive(Deserialize)]
struct Top<'a> {
    #[serde(borrow, default)]
    usage: Option<&'a RawValue>,
    #[serde(borrow, default)]
    choices: Option<&'a RawValue>,
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(borrow, default)]
    message: Option<&'a RawValue>,
    #[serde(borrow, default)]
    delta: Option<&'a RawValue>,
    #[serde(borrow, default)]
    text: Option<&'a RawValue>,
    #[serde(borrow, default)]
    finish_reason: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
    #[serde(borrow, default)]
    reasoning_content: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tool_calls: Option<&'a RawValue>,
}

/// Reads a whole answer; an error only when `bytes` are not one JSON value.
pub fn answer(bytes: &[u8]) -> Result<AnswerView, serde_json::Error> {
    let raw: &RawValue = serde_json::from_slice(bytes)?;
    let Ok(top) = serde_json::from_str::<Top<'_>>(raw.get()) else {
        return Ok(AnswerView::default());
    };
    let choice = first_choice(top.choices);
    let message = choice
        .as_ref()
        .and_then(|c| c.message)
        .and_then(parse::<Message<'_>>);
    let tool_calls = message
        .as_ref()
        .and_then(|m| m.tool_calls)
        .and_then(parse::<Vec<&RawValue>>)
        .is_some_and(|calls| !calls.is_empty());
    let text = message
        .and_then(|m| string(m.content))
        .or_else(|| choice.as_ref().and_then(|c| string(c.text)))
        .map(Cow::into_owned)
        .unwrap_or_default();
    Ok(AnswerView {
        usage: top.usage.and_then(usage),
        text,
        model: string(top.model).map(Cow::into_owned),
        finish_reason: choice
            .and_then(|c| string(c.finish_reason))
            .map(Cow::into_owned),
        tool_calls,
    })
}

/// Reads one chunk's JSON; `None` when it is not a JSON object (`[DONE]`, a comment).
pub fn chunk(data: &str) -> Option<ChunkView> {
    let top: Top<'_> = serde_json::from_str(data.trim()).ok()?;
    let choices: Option<Vec<&RawValue>> = top.choices.and_then(parse);
    let usage_only = choices.as_ref().is_some_and(Vec::is_empty);
    let mut view = ChunkView {
        usage: top.usage.and_then(usage),
        usage_only,
        model: string(top.model).map(Cow::into_owned),
        ..ChunkView::default()
    };
    let Some(choice) = choices
        .and_then(|c| c.first().copied())
        .and_then(parse::<Choice<'_>>)
    else {
        return Some(view);
    };
    let delta = choice.delta.and_then(parse::<Message<'_>>);
    let content = delta.as_ref().and_then(|d| string(d.content));
    let text = content.or_else(|| string(choice.text));
    let reasoning = delta.as_ref().and_then(|d| string(d.reasoning_content));
    let tool_call = delta
        .as_ref()
        .and_then(|d| d.tool_calls)
        .and_then(parse::<Vec<&RawValue>>)
        .is_some_and(|calls| !calls.is_empty());
    view.carries_token = text.as_ref().is_some_and(|t| !t.is_empty())
        || reasoning.is_some_and(|t| !t.is_empty())
        || tool_call;
    view.tool_calls = tool_call;
    view.text = text.map(Cow::into_owned).unwrap_or_default();
    view.finish_reason = string(choice.finish_reason).map(Cow::into_owned);
    Some(view)
}

fn first_choice(choices: Option<&RawValue>) -> Option<Choice<'_>> {
    let choices: Vec<&RawValue> = choices.and_then(parse)?;
    choices.first().copied().and_then(parse)
}

fn parse<'a, T: Deserialize<'a>>(raw: &'a RawValue) -> Option<T> {
    serde_json::from_str(raw.get()).ok()
}

fn string(raw: Option<&RawValue>) -> Option<Cow<'_, str>> {
    raw.and_then(parse::<Cow<'_, str>>)
}

/// Token counts from a `usage` object; a count that is not a whole number reads as 0.
fn usage(raw: &RawValue) -> Option<Usage> {
    #[derive(Deserialize)]
    struct Counts<'a> {
        #[serde(borrow, default)]
        prompt_tokens: Option<&'a RawValue>,
        #[serde(borrow, default)]
        completion_tokens: Option<&'a RawValue>,
        #[serde(borrow, default)]
        total_tokens: Option<&'a RawValue>,
    }
    let counts: Counts<'_> = parse(raw)?;
    let count = |raw: Option<&RawValue>| raw.and_then(parse::<u64>).unwrap_or(0);
    Some(Usage {
        prompt_tokens: count(counts.prompt_tokens),
        completion_tokens: count(counts.completion_tokens),
        total_tokens: count(counts.total_tokens),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chat_answer_gives_its_text_and_usage() {
        let view = answer(
            br#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"Paris \"is\" it."}}],
               "usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}"#,
        )
        .unwrap_or_default();
        assert_eq!(view.text, "Paris \"is\" it.");
        assert_eq!(
            view.usage,
            Some(Usage {
                prompt_tokens: 7,
                completion_tokens: 3,
                total_tokens: 10
            })
        );
    }

    #[test]
    fn answers_and_chunks_give_their_model_and_finish_reason() {
        let view = answer(
            br#"{"model":"m-1","choices":[{"message":{"content":"x"},"finish_reason":"length"}]}"#,
        )
        .unwrap_or_default();
        assert_eq!(
            (view.model.as_deref(), view.finish_reason.as_deref()),
            (Some("m-1"), Some("length"))
        );
        let last = chunk(r#"{"model":"m-2","choices":[{"delta":{},"finish_reason":"stop"}]}"#)
            .unwrap_or_default();
        assert_eq!(
            (last.model.as_deref(), last.finish_reason.as_deref()),
            (Some("m-2"), Some("stop"))
        );
        let middle = chunk(r#"{"choices":[{"delta":{"content":"a"},"finish_reason":null}]}"#)
            .unwrap_or_default();
        assert_eq!(middle.finish_reason, None);
        assert!(!middle.tool_calls);
        let call = answer(
            br#"{"choices":[{"message":{"content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}"#,
        )
        .unwrap_or_default();
        assert!(call.tool_calls);
        let part = chunk(
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{"}}]}}]}"#,
        )
        .unwrap_or_default();
        assert!(part.tool_calls);
    }

    #[test]
    fn a_completion_answer_gives_its_text() {
        let view = answer(br#"{"choices":[{"text":" once upon"}]}"#).unwrap_or_default();
        assert_eq!(view.text, " once upon");
        assert_eq!(view.usage, None);
    }

    #[test]
    fn any_json_is_an_answer_and_odd_fields_read_as_absent() {
        for json in [
            &br#"[1, 2]"#[..],
            br#""text""#,
            br#"{"choices":"none","usage":[1]}"#,
            br#"{"choices":[{"message":{"content":[{"type":"text"}]}}],"usage":{"prompt_tokens":1.5}}"#,
            br#"{"choices":[]}"#,
        ] {
            let view = answer(json);
            assert!(view.is_ok(), "{}", String::from_utf8_lossy(json));
            assert_eq!(view.unwrap_or_default().text, "");
        }
        let odd =
            answer(br#"{"usage":{"prompt_tokens":1.5,"completion_tokens":2}}"#).unwrap_or_default();
        assert_eq!(
            odd.usage.map(|u| (u.prompt_tokens, u.completion_tokens)),
            Some((0, 2))
        );
    }

    #[test]
    fn bytes_that_are_not_json_are_an_error() {
        for bytes in [&b"<html>oops</html>"[..], b"{\"choices\":[", b"", b"{} {}"] {
            assert!(answer(bytes).is_err(), "{}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn chunks_say_whether_they_carry_a_token() {
        let role = chunk(r#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#);
        assert_eq!(role.map(|c| c.carries_token), Some(false));
        let token = chunk(r#"{"choices":[{"delta":{"content":"Hi"}}]}"#).unwrap_or_default();
        assert!(token.carries_token);
        assert_eq!(token.text, "Hi");
        let text = chunk(r#" {"choices":[{"text":" once","index":0}]} "#).unwrap_or_default();
        assert!(text.carries_token);
        assert_eq!(text.text, " once");
        let reasoning = chunk(r#"{"choices":[{"delta":{"reasoning_content":"hm"}}]}"#);
        assert_eq!(
            reasoning.map(|c| (c.carries_token, c.text)),
            Some((true, String::new()))
        );
        let tool = chunk(r#"{"choices":[{"delta":{"tool_calls":[{"index":0}]}}]}"#);
        assert_eq!(tool.map(|c| c.carries_token), Some(true));
        let no_tool = chunk(r#"{"choices":[{"delta":{"tool_calls":[]}}]}"#);
        assert_eq!(no_tool.map(|c| c.carries_token), Some(false));
    }

    #[test]
    fn usage_chunks_are_told_apart() {
        let only = chunk(r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":9}}"#)
            .unwrap_or_default();
        assert!(only.usage_only && !only.carries_token);
        assert_eq!(only.usage.map(|u| u.completion_tokens), Some(9));
        let with_text =
            chunk(r#"{"choices":[{"delta":{"content":"x"}}],"usage":{"completion_tokens":1}}"#)
                .unwrap_or_default();
        assert!(!with_text.usage_only && with_text.carries_token);
        assert_eq!(chunk("[DONE]"), None);
        assert_eq!(chunk(": keep-alive"), None);
    }
}
