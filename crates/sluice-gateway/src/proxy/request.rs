//! The client's request body as the proxy handles it: its top-level fields in order, each
//! value kept as the JSON text it arrived as. Routing reads a few fields, and the rewrite for
//! a version changes a few, without a JSON tree being built and written out again.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::Endpoint;
use crate::route::Version;

/// A request body: a JSON object's fields in order (a repeated key keeps its last value).
#[derive(Debug, Clone)]
pub(crate) struct ClientBody<'a> {
    fields: Vec<(String, Field<'a>)>,
}

/// A field's value: as it arrived, or written by the gateway.
#[derive(Debug, Clone)]
enum Field<'a> {
    Raw(&'a RawValue),
    Written(String),
}

impl Field<'_> {
    fn text(&self) -> &str {
        match self {
            Field::Raw(raw) => raw.get(),
            Field::Written(text) => text,
        }
    }
}

/// Why a body is not a request.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("the request body is not valid JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("the request body must be a JSON object")]
    NotAnObject,
}

impl<'a> ClientBody<'a> {
    /// Reads `bytes` as a JSON object.
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Self, BodyError> {
        let raw: &RawValue = serde_json::from_slice(bytes).map_err(BodyError::NotJson)?;
        if !raw.get().starts_with('{') {
            return Err(BodyError::NotAnObject);
        }
        serde_json::from_str(raw.get()).map_err(BodyError::NotJson)
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.text())
    }

    fn set(&mut self, key: &str, value: Field<'a>) {
        match self.fields.iter_mut().find(|(name, _)| name == key) {
            Some((_, slot)) => *slot = value,
            None => self.fields.push((key.to_owned(), value)),
        }
    }

    /// Removes a field.
    pub(crate) fn remove(&mut self, key: &str) {
        self.fields.retain(|(name, _)| name != key);
    }

    /// A string field's value; `None` when absent or not a string.
    pub(crate) fn str_field(&self, key: &str) -> Option<Cow<'_, str>> {
        json_str(self.get(key)?)
    }

    /// A boolean field's value; `None` when absent or not a boolean.
    pub(crate) fn bool_field(&self, key: &str) -> Option<bool> {
        serde_json::from_str(self.get(key)?).ok()
    }

    /// Whether the client asked for the usage chunk (`stream_options.include_usage: true`).
    pub(crate) fn wants_usage(&self) -> bool {
        #[derive(Deserialize)]
        struct Options {
            include_usage: Option<bool>,
        }
        self.get("stream_options")
            .and_then(|text| serde_json::from_str::<Options>(text).ok())
            .and_then(|options| options.include_usage)
            == Some(true)
    }

    /// What the user wrote: the text of `user` and `tool` messages (chat) or the prompt
    /// (completions), one part per line.
    pub(crate) fn user_text(&self) -> String {
        #[derive(Deserialize)]
        struct Message<'a> {
            #[serde(borrow, default)]
            role: Option<&'a RawValue>,
            #[serde(borrow, default)]
            content: Option<&'a RawValue>,
        }
        let mut parts: Vec<Cow<'_, str>> = Vec::new();
        let messages = self
            .get("messages")
            .and_then(|text| serde_json::from_str::<Vec<&RawValue>>(text).ok())
            .unwrap_or_default();
        for message in messages {
            let Ok(message) = serde_json::from_str::<Message<'_>>(message.get()) else {
                continue;
            };
            let role = message.role.and_then(|r| json_str(r.get()));
            if matches!(role.as_deref(), Some("user" | "tool"))
                && let Some(content) = message.content
            {
                texts(content.get(), &mut parts);
            }
        }
        if let Some(prompt) = self.get("prompt") {
            texts(prompt, &mut parts);
        }
        parts.join("\n")
    }

    /// Rewrites the request for `version`: its upstream model, its system prompt first, its
    /// default parameters where the client set none, and `include_usage` forced on streams.
    pub(crate) fn rewrite(&mut self, version: &Version, endpoint: Endpoint, stream: bool) {
        self.set("model", Field::Written(json_string(&version.model)));
        if endpoint == Endpoint::Chat
            && let Some(system) = &version.system_prompt
            && let Some(messages) = self.get("messages")
            && let Some(rest) = messages.strip_prefix('[')
        {
            let system = format!(r#"{{"role":"system","content":{}}}"#, json_string(system));
            let separator = if rest.trim_start().starts_with(']') {
                ""
            } else {
                ","
            };
            let messages = format!("[{system}{separator}{rest}");
            self.set("messages", Field::Written(messages));
        }
        for (key, value) in &version.params {
            if self.get(key).is_none() {
                self.set(key, Field::Written(value.to_string()));
            }
        }
        if stream {
            let options = match self.get("stream_options") {
                None => Some(Map::new()),
                Some(text) => serde_json::from_str::<Map<String, Value>>(text).ok(),
            };
            // Options that are not an object are the upstream's to refuse, as sent.
            if let Some(mut options) = options {
                options.insert("include_usage".into(), Value::Bool(true));
                let text = Value::Object(options).to_string();
                self.set("stream_options", Field::Written(text));
            }
        }
    }

    /// The body as JSON bytes.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let size = self
            .fields
            .iter()
            .map(|(key, value)| key.len() + value.text().len() + 4)
            .sum::<usize>();
        let mut out = String::with_capacity(size + 2);
        out.push('{');
        for (i, (key, value)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&json_string(key));
            out.push(':');
            out.push_str(value.text());
        }
        out.push('}');
        out.into_bytes()
    }
}

impl<'de> Deserialize<'de> for ClientBody<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = ClientBody<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut body = ClientBody { fields: Vec::new() };
                while let Some(key) = map.next_key::<String>()? {
                    let value: &'de RawValue = map.next_value()?;
                    body.set(&key, Field::Raw(value));
                }
                Ok(body)
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

/// A JSON string's value (borrowed when it has no escapes); `None` when `text` is not one.
fn json_str(text: &str) -> Option<Cow<'_, str>> {
    match serde_json::from_str::<&str>(text) {
        Ok(plain) => Some(Cow::Borrowed(plain)),
        Err(_) => serde_json::from_str::<String>(text).ok().map(Cow::Owned),
    }
}

fn json_string(text: &str) -> String {
    Value::from(text).to_string()
}

/// The text parts of a message's content or a prompt: a string, or a list of strings and
/// `{text}` parts.
fn texts<'a>(content: &'a str, parts: &mut Vec<Cow<'a, str>>) {
    #[derive(Deserialize)]
    struct Part<'a> {
        #[serde(borrow, default)]
        text: Option<&'a RawValue>,
    }
    if let Some(text) = json_str(content) {
        parts.push(text);
        return;
    }
    let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(content) else {
        return;
    };
    for item in items {
        let item = item.get();
        if let Some(text) = json_str(item) {
            parts.push(text);
        } else if let Ok(part) = serde_json::from_str::<Part<'_>>(item)
            && let Some(text) = part.text.and_then(|t| json_str(t.get()))
        {
            parts.push(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn version(system_prompt: Option<&str>, params: Value) -> Version {
        Version {
            name: "candidate".into(),
            upstreams: crate::route::Upstreams::one("http://x/v1"),
            model: "upstream-model".into(),
            api_key: None,
            system_prompt: system_prompt.map(str::to_owned),
            params: serde_json::from_value(params).unwrap_or_default(),
            timeouts: crate::route::Timeouts::default(),
            safety: Default::default(),
            metrics: Default::default(),
            price: None,
        }
    }

    fn rewritten(body: &Value, version: &Version, stream: bool) -> Value {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let mut parsed = ClientBody::parse(&bytes).unwrap_or(ClientBody { fields: Vec::new() });
        parsed.rewrite(version, Endpoint::Chat, stream);
        serde_json::from_slice(&parsed.to_bytes()).unwrap_or_default()
    }

    #[test]
    fn rewriting_sets_the_upstream_model_and_forces_usage() {
        let version = version(Some("Be brief."), json!({"temperature": 0.2, "top_p": 0.9}));
        let body = json!({
            "model": "chat", "stream": true, "top_p": 0.5,
            "messages": [{"role": "user", "content": "hi"}]
        });
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let parsed = ClientBody::parse(&bytes).unwrap_or(ClientBody { fields: Vec::new() });
        assert!(!parsed.wants_usage());
        assert_eq!(parsed.bool_field("stream"), Some(true));
        assert_eq!(parsed.str_field("model").as_deref(), Some("chat"));
        let out = rewritten(&body, &version, true);
        assert_eq!(out["model"], "upstream-model");
        assert_eq!(
            out["messages"][0],
            json!({"role": "system", "content": "Be brief."})
        );
        assert_eq!(out["messages"][1]["content"], "hi");
        assert_eq!(out["temperature"], 0.2);
        assert_eq!(out["top_p"], 0.5);
        assert_eq!(out["stream_options"]["include_usage"], true);
    }

    #[test]
    fn rewriting_keeps_what_it_does_not_change_exactly() {
        let version = version(Some("Say \"hi\"\n"), json!({}));
        let text = br#"{"z":1,"model":"chat","messages":[],"stream_options":{"include_usage":false,"x":[1, 2]},"a":{"deep":  [true]}}"#;
        let mut body = ClientBody::parse(text).unwrap_or(ClientBody { fields: Vec::new() });
        body.rewrite(&version, Endpoint::Chat, true);
        let out = String::from_utf8(body.to_bytes()).unwrap_or_default();
        assert_eq!(
            out,
            r#"{"z":1,"model":"upstream-model","messages":[{"role":"system","content":"Say \"hi\"\n"}],"stream_options":{"include_usage":true,"x":[1,2]},"a":{"deep":  [true]}}"#
        );
    }

    #[test]
    fn only_json_objects_are_requests() {
        assert!(matches!(
            ClientBody::parse(b"[1]"),
            Err(BodyError::NotAnObject)
        ));
        assert!(matches!(
            ClientBody::parse(b" \"x\""),
            Err(BodyError::NotAnObject)
        ));
        assert!(matches!(
            ClientBody::parse(b"{\"a\":"),
            Err(BodyError::NotJson(_))
        ));
        assert!(matches!(
            ClientBody::parse(b"{} x"),
            Err(BodyError::NotJson(_))
        ));
        let repeated = ClientBody::parse(br#"{"model":"a","model":"b"}"#);
        let repeated = repeated.unwrap_or(ClientBody { fields: Vec::new() });
        assert_eq!(repeated.str_field("model").as_deref(), Some("b"));
        assert_eq!(repeated.to_bytes(), br#"{"model":"b"}"#);
    }

    #[test]
    fn user_text_reads_user_and_tool_messages_and_prompts() {
        let body = json!({
            "messages": [
                {"role": "system", "content": "secret rules"},
                {"role": "user", "content": "plain \"quoted\""},
                {"role": "assistant", "content": "ignored"},
                {"role": "user", "content": [{"type": "text", "text": "part one"}, "part two", {"type": "image_url"}]},
                {"role": "tool", "content": "tool said"}
            ],
            "prompt": ["p1", "p2"]
        });
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let parsed = ClientBody::parse(&bytes).unwrap_or(ClientBody { fields: Vec::new() });
        assert_eq!(
            parsed.user_text(),
            "plain \"quoted\"\npart one\npart two\ntool said\np1\np2"
        );
    }
}
