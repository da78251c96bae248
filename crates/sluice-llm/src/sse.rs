//! Incremental Server-Sent Events parsing, fed with bytes exactly as they arrive.
//!
//! Follows the WHATWG event-stream rules: lines end with `\n`, `\r\n` or `\r` (even when the
//! `\r` and `\n` arrive in different reads), `:` starts a comment, `data:` lines of one event are
//! joined with `\n`, one leading space after the colon is dropped, and a blank line dispatches.

/// One dispatched event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` type, when given.
    pub event: Option<String>,
    /// The joined `data:` lines.
    pub data: String,
    /// The `id:`, when given.
    pub id: Option<String>,
}

/// A push parser: [`SseParser::feed`] bytes, collect the events completed so far.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    skip_next_lf: bool,
    started: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
    id: Option<String>,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes, appending every event they complete to `out`.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<SseEvent>) {
        // A `\r` ended the previous read: a `\n` starting this one belongs to it.
        if self.skip_next_lf && !bytes.is_empty() {
            self.skip_next_lf = false;
            if let Some(rest) = bytes.strip_prefix(b"\n") {
                bytes = rest;
            }
        }
        while let Some(end) = bytes.iter().position(|b| *b == b'\n' || *b == b'\r') {
            self.line.extend_from_slice(&bytes[..end]);
            let terminator = bytes[end];
            bytes = &bytes[end + 1..];
            if terminator == b'\r' {
                match bytes.first() {
                    Some(b'\n') => bytes = &bytes[1..],
                    Some(_) => {}
                    None => self.skip_next_lf = true,
                }
            }
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, out);
        }
        self.line.extend_from_slice(bytes);
    }

    /// Ends the stream: an unterminated last line and an event without its blank line are
    /// still dispatched, since servers that close the connection right after `data: …` exist.
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, out);
        }
        self.dispatch(out);
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        let mut line = line;
        if !self.started {
            self.started = true;
            if let Some(rest) = line.strip_prefix("\u{feff}".as_bytes()) {
                line = rest;
            }
        }
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        let value = String::from_utf8_lossy(value);
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&value);
                self.has_data = true;
            }
            b"event" => self.event = Some(value.into_owned()),
            b"id" if !value.contains('\0') => self.id = Some(value.into_owned()),
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        if self.has_data {
            out.push(SseEvent {
                event: self.event.take(),
                data: std::mem::take(&mut self.data),
                id: self.id.clone(),
            });
        } else {
            self.event = None;
        }
        self.has_data = false;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        for chunk in chunks {
            parser.feed(chunk, &mut out);
        }
        parser.finish(&mut out);
        out
    }

    fn data(events: &[SseEvent]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    #[test]
    fn comments_multiline_data_and_done() {
        let events = parse_all(&[
            b": keep-alive\n\ndata: {\"a\":1}\n\ndata: line1\ndata: line2\n\ndata: [DONE]\n\n",
        ]);
        assert_eq!(data(&events), vec!["{\"a\":1}", "line1\nline2", "[DONE]"]);
    }

    #[test]
    fn crlf_split_across_reads_is_one_terminator() {
        let events = parse_all(&[b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n"]);
        assert_eq!(data(&events), vec!["a", "b"]);
    }

    #[test]
    fn a_read_of_only_the_lf_of_a_split_crlf_does_not_swallow_the_next_lf() {
        let events = parse_all(&[b"data: a\r", b"\n", b"\n", b"data: b\n\n"]);
        assert_eq!(data(&events), vec!["a", "b"]);
    }

    #[test]
    fn event_types_and_missing_space() {
        let events = parse_all(&[b"event: error\ndata:{\"error\":{}}\n\n"]);
        assert_eq!(events[0].event.as_deref(), Some("error"));
        assert_eq!(events[0].data, "{\"error\":{}}");
    }

    #[test]
    fn an_unterminated_last_event_is_still_dispatched() {
        assert_eq!(
            data(&parse_all(&[b"data: x\n\ndata: [DONE]"])),
            vec!["x", "[DONE]"]
        );
    }

    fn stream_strategy() -> impl Strategy<Value = Vec<u8>> {
        let line = prop_oneof![
            "[a-z{}\":, ]{0,12}".prop_map(|s| format!("data: {s}")),
            Just(": comment".to_owned()),
            "[a-z]{1,5}".prop_map(|s| format!("event: {s}")),
            Just(String::new()),
        ];
        let terminator = prop_oneof![Just("\n"), Just("\r\n"), Just("\r")];
        proptest::collection::vec((line, terminator), 0..30).prop_map(|lines| {
            lines
                .into_iter()
                .flat_map(|(l, t)| format!("{l}{t}").into_bytes())
                .collect()
        })
    }

    proptest! {
        /// However the bytes are split into reads, the events are the same.
        #[test]
        fn splitting_never_changes_the_events(stream in stream_strategy(), cuts in proptest::collection::vec(0usize..400, 0..12)) {
            let whole = parse_all(&[&stream]);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(stream.len())).collect();
            cuts.sort_unstable();
            let mut pieces: Vec<&[u8]> = Vec::new();
            let mut start = 0;
            for cut in cuts {
                pieces.push(&stream[start..cut]);
                start = cut;
            }
            pieces.push(&stream[start..]);
            prop_assert_eq!(parse_all(&pieces), whole);
        }

        /// Arbitrary bytes never panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_all(&[&bytes]);
        }
    }
}
