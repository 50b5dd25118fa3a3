//! Server-sent events as OpenAI-compatible servers stream them: `data:` lines grouped into
//! events by blank lines, `[DONE]` at the end, comments and other fields ignored. Only the
//! framing lives here; what a chunk means is `stream`'s job.

/// One complete event of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseEvent {
    /// The event's data (several `data:` lines joined by newlines).
    Data(String),
    /// The `[DONE]` sentinel: the server has nothing more to send.
    Done,
}

/// Turns lines of the response body into events. An event is dispatched on the blank line
/// that ends it; an event cut off by the end of the body is never dispatched (the caller sees
/// the stream end without a finish and retries).
#[derive(Debug, Default)]
pub struct SseDecoder {
    data: Option<String>,
}

impl SseDecoder {
    pub fn new() -> SseDecoder {
        SseDecoder::default()
    }

    /// Takes one line, without its line ending; returns the event it completes, if any.
    pub fn line(&mut self, line: &str) -> Option<SseEvent> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            let data = self.data.take()?;
            return Some(if data.trim() == "[DONE]" {
                SseEvent::Done
            } else {
                SseEvent::Data(data)
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        if field == "data" {
            match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            }
        }
        None
    }

    /// True while an event has begun but not ended.
    pub fn has_partial(&self) -> bool {
        self.data.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode(text: &str) -> Vec<SseEvent> {
        let mut d = SseDecoder::new();
        text.split('\n').filter_map(|l| d.line(l)).collect()
    }

    #[test]
    fn events_end_on_blank_lines_and_done_is_recognised() {
        let text = ": keep-alive\n\ndata: {\"a\":1}\n\nevent: x\ndata: one\ndata: two\r\n\r\ndata: [DONE]\n\n";
        assert_eq!(
            decode(text),
            vec![
                SseEvent::Data("{\"a\":1}".into()),
                SseEvent::Data("one\ntwo".into()),
                SseEvent::Done
            ]
        );
    }

    #[test]
    fn an_event_cut_off_by_the_end_of_the_body_is_not_dispatched() {
        let mut d = SseDecoder::new();
        assert_eq!(d.line("data: {\"choices\":[{\"delta\":{\"con"), None);
        assert!(d.has_partial());
    }

    proptest! {
        #[test]
        fn data_round_trips(values in proptest::collection::vec("[^\r\n]{0,20}", 0..6)) {
            let mut text = String::new();
            for v in &values {
                text.push_str(&format!("data: {v}\n\n"));
            }
            let expected: Vec<SseEvent> = values
                .iter()
                .map(|v| if v.trim() == "[DONE]" { SseEvent::Done } else { SseEvent::Data(v.clone()) })
                .collect();
            prop_assert_eq!(decode(&text), expected);
        }
    }
}
