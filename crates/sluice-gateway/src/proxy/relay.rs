//! The stream relay: an upstream stream passed to the client one whole server-sent event at
//! a time, guarded, with usage chunks read (and dropped when the client did not ask), timeouts
//! that know streams, and an in-band error event for a stream that breaks.

use super::*;

/// A streamed upstream answer on its way to the client, one whole server-sent event at a time.
pub(crate) struct ProxyBody {
    pub(super) upstream: Incoming,
    /// Guards a stream's text when the version redacts or blocks.
    pub(super) guard: Option<Box<EventGuard>>,
    /// Events ready to go out before anything else is read.
    pub(super) ready: VecDeque<Bytes>,
    /// Bytes read that do not make a whole event yet.
    pub(super) buffer: BytesMut,
    /// Drop usage-only chunks (the client did not ask for them).
    pub(super) strip_usage: bool,
    /// Whether `[DONE]` has been seen: a stream that ends without it was cut off.
    pub(super) saw_done: bool,
    /// The next deadline: the first chunk's (streams), then the total.
    pub(super) deadline: Pin<Box<Sleep>>,
    pub(super) total_deadline: Instant,
    pub(super) waiting_first: bool,
    pub(super) finish: Option<Finish>,
    pub(super) ended: bool,
}

/// Where the first complete event in `buffer` ends (after its blank line).
pub(super) fn event_end(buffer: &[u8]) -> Option<usize> {
    let lf = buffer.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// An event's data: its `data:` lines (one optional space after the colon dropped), joined
/// by newlines; `None` when it has none (a comment, a keep-alive).
pub(super) fn event_data(event: &[u8]) -> Option<Cow<'_, str>> {
    let text = std::str::from_utf8(event).ok()?;
    let mut lines = text
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(|data| data.strip_prefix(' ').unwrap_or(data));
    let first = lines.next()?;
    match lines.next() {
        None => Some(Cow::Borrowed(first)),
        Some(second) => {
            let mut joined = format!("{first}\n{second}");
            for line in lines {
                joined.push('\n');
                joined.push_str(line);
            }
            Some(Cow::Owned(joined))
        }
    }
}

impl ProxyBody {
    pub(super) fn finish(&mut self, class: Class) {
        if let Some(finish) = &mut self.finish {
            finish.upstream_ended.get_or_insert_with(Instant::now);
            finish.end(class);
        }
        self.ended = true;
    }

    /// Ends a stream that failed after its headers were sent: the outcome is recorded, and
    /// the client gets the error as an in-band event (never `[DONE]`).
    pub(super) fn fail(&mut self, error: ApiError) -> Bytes {
        self.finish(error.class());
        error.event()
    }

    /// Takes the next complete event off the buffer; `None` when there is none yet. Usage-only
    /// chunks are read for their token counts and, when the client did not ask for them,
    /// dropped.
    pub(super) fn next_event(&mut self) -> Option<Bytes> {
        if let Some(event) = self.ready.pop_front() {
            return Some(event);
        }
        loop {
            let end = event_end(&self.buffer)?;
            let event = self.buffer.split_to(end).freeze();
            let data = event_data(&event);
            let done = data.as_deref().is_some_and(|d| d.trim() == "[DONE]");
            let chunk = data
                .as_deref()
                .filter(|_| !done)
                .and_then(sluice_llm::wire::chunk);
            if let (Some(finish), Some(chunk)) = (&mut self.finish, &chunk) {
                if finish.ttft.is_none() && chunk.carries_token {
                    finish.ttft = Some(finish.arrived.elapsed());
                }
                if let Some(usage) = chunk.usage {
                    finish.set_usage(usage);
                }
                finish.add_text(&chunk.text);
                finish.note_answer(
                    chunk.model.as_deref(),
                    chunk.finish_reason.as_deref(),
                    chunk.tool_calls,
                );
            }
            if done {
                self.saw_done = true;
                if let Some(guard) = &mut self.guard {
                    guard.flush(&mut self.ready);
                    self.ready.push_back(event);
                    return self.ready.pop_front();
                }
                return Some(event);
            }
            if self.strip_usage && chunk.is_some_and(|c| c.usage_only) {
                continue;
            }
            if let Some(guard) = &mut self.guard {
                match guard.event(event) {
                    Some(event) => return Some(event),
                    None => continue,
                }
            }
            return Some(event);
        }
    }

    pub(super) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if let Some(event) = self.ready.pop_front() {
            return Poll::Ready(Some(event));
        }
        if self.ended {
            return Poll::Ready(None);
        }
        loop {
            if let Some(event) = self.next_event() {
                return Poll::Ready(Some(event));
            }
            match Pin::new(&mut self.upstream).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(bytes) = frame.into_data() else {
                        continue;
                    };
                    if self.waiting_first {
                        self.waiting_first = false;
                        let total = self.total_deadline;
                        self.deadline.as_mut().reset(total.into());
                    }
                    if let Some(finish) = &mut self.finish {
                        finish.keep(&bytes);
                    }
                    self.buffer.extend_from_slice(&bytes);
                }
                Poll::Ready(Some(Err(e))) => {
                    warn!(error = %e, "Upstream body failed.");
                    let message = format!("the upstream stream failed: {e}");
                    return Poll::Ready(Some(self.fail(ApiError::Broken(message))));
                }
                Poll::Ready(None) => {
                    let rest = (!self.buffer.is_empty()).then(|| self.buffer.split().freeze());
                    // What a guard still holds goes out (guarded) before the rest.
                    if let Some(guard) = &mut self.guard {
                        guard.flush(&mut self.ready);
                    }
                    self.ready.extend(rest);
                    // A stream that ends without `[DONE]` was cut off: the client is told so
                    // in band, and gets no `[DONE]`.
                    if self.saw_done {
                        self.finish(Class::Ok);
                    } else {
                        warn!("The upstream stream ended without [DONE].");
                        let event = self.fail(ApiError::Broken(
                            "the upstream stream ended early, without its final event".into(),
                        ));
                        self.ready.push_back(event);
                    }
                    return Poll::Ready(self.ready.pop_front());
                }
                Poll::Pending => {
                    if self.deadline.as_mut().poll(cx).is_ready() {
                        let what = if self.waiting_first {
                            "the first chunk"
                        } else {
                            "the end of the answer"
                        };
                        return Poll::Ready(Some(self.fail(ApiError::Timeout(format!(
                            "the upstream timed out waiting for {what}"
                        )))));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}
