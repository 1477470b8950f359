//! An incremental `text/event-stream` parser (runtime-gateway.md §4.6): bytes in, complete
//! events out, whatever the chunk boundaries.
//!
//! Lines end with LF, CRLF or CR; a blank line dispatches the event; `event:` sets its type
//! (default `message`); `data:` lines are joined with `\n`; `id:` and `retry:` are read and
//! ignored; lines starting with `:` are comments; one space after the colon is removed. An event
//! cut off by the end of the stream is never dispatched.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
}

/// An event (or a line) larger than the parser accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("server-sent event exceeds {limit} bytes")]
pub struct EventTooLarge {
    pub limit: usize,
}

#[derive(Debug)]
pub struct SseParser {
    /// Bytes of the current, unfinished line.
    line: Vec<u8>,
    /// The previous chunk ended with CR: a LF at the start of the next one belongs to it.
    skip_lf: bool,
    /// A UTF-8 byte-order mark is dropped once, from the first line.
    at_start: bool,
    event: String,
    data: String,
    has_data: bool,
    limit: usize,
}

impl SseParser {
    /// A parser that refuses events (and lines) over `limit` bytes.
    pub fn new(limit: usize) -> Self {
        SseParser {
            line: Vec::new(),
            skip_lf: false,
            at_start: true,
            event: String::new(),
            data: String::new(),
            has_data: false,
            limit,
        }
    }

    /// Feeds one chunk; complete events are appended to `out`.
    pub fn push(&mut self, mut chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), EventTooLarge> {
        if self.skip_lf && !chunk.is_empty() {
            self.skip_lf = false;
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                chunk = rest;
            }
        }
        while let Some(end) = chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
            let terminator = chunk[end];
            self.append_to_line(&chunk[..end])?;
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, out)?;
            chunk = &chunk[end + 1..];
            if terminator == b'\r' {
                match chunk.first() {
                    Some(b'\n') => chunk = &chunk[1..],
                    Some(_) => {}
                    // CR at the end of a chunk: the LF (if any) arrives with the next one.
                    None => self.skip_lf = true,
                }
            }
        }
        self.append_to_line(chunk)
    }

    fn append_to_line(&mut self, bytes: &[u8]) -> Result<(), EventTooLarge> {
        if self.line.len() + bytes.len() > self.limit {
            return Err(EventTooLarge { limit: self.limit });
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) -> Result<(), EventTooLarge> {
        let line = if std::mem::take(&mut self.at_start) {
            line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line)
        } else {
            line
        };
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"event" => self.event = String::from_utf8_lossy(value).into_owned(),
            b"data" => {
                if self.data.len() + value.len() + 1 > self.limit {
                    return Err(EventTooLarge { limit: self.limit });
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&String::from_utf8_lossy(value));
                self.has_data = true;
            }
            // `id`, `retry` and unknown fields: read and ignored.
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = std::mem::take(&mut self.event);
        let data = std::mem::take(&mut self.data);
        if std::mem::take(&mut self.has_data) {
            let event = if event.is_empty() {
                "message".to_owned()
            } else {
                event
            };
            out.push(SseEvent { event, data });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_chunks(input: &[u8], chunk: usize) -> Vec<SseEvent> {
        let mut parser = SseParser::new(1 << 20);
        let mut out = Vec::new();
        for part in input.chunks(chunk.max(1)) {
            parser.push(part, &mut out).unwrap();
        }
        out
    }

    fn event(event: &str, data: &str) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
        }
    }

    #[test]
    fn every_line_ending_and_every_chunking() {
        let inputs: [&[u8]; 3] = [
            b"event: endpoint\ndata: /messages/?s=1\n\ndata: {\"a\":1}\ndata: {\"b\":2}\n\n",
            b"event: endpoint\r\ndata: /messages/?s=1\r\n\r\ndata: {\"a\":1}\r\ndata: {\"b\":2}\r\n\r\n",
            b"event: endpoint\rdata: /messages/?s=1\r\rdata: {\"a\":1}\rdata: {\"b\":2}\r\r",
        ];
        let expected = vec![
            event("endpoint", "/messages/?s=1"),
            event("message", "{\"a\":1}\n{\"b\":2}"),
        ];
        for input in inputs {
            for chunk in 1..=input.len() {
                assert_eq!(parse_in_chunks(input, chunk), expected, "chunk {chunk}");
            }
        }
    }

    #[test]
    fn comments_ids_retry_and_spaces() {
        let input = b": keep-alive\nid: 7\nretry: 100\ndata:no-space\ndata:  two\nfield-only\n\n";
        assert_eq!(
            parse_in_chunks(input, 1000),
            vec![event("message", "no-space\n two")]
        );
    }

    #[test]
    fn events_without_data_and_cut_off_events_are_not_dispatched() {
        assert_eq!(parse_in_chunks(b"event: x\n\n", 100), vec![]);
        assert_eq!(parse_in_chunks(b"data: half", 100), vec![]);
        assert_eq!(
            parse_in_chunks(b"data:\n\n", 100),
            vec![event("message", "")]
        );
    }

    #[test]
    fn byte_order_mark_and_utf8_split_across_chunks() {
        let input = "\u{feff}data: héllo ✓\n\n".as_bytes();
        for chunk in 1..=input.len() {
            assert_eq!(
                parse_in_chunks(input, chunk),
                vec![event("message", "héllo ✓")]
            );
        }
    }

    #[test]
    fn oversized_events_are_refused() {
        let mut parser = SseParser::new(16);
        let mut out = Vec::new();
        assert_eq!(
            parser.push(&[b'x'; 17], &mut out),
            Err(EventTooLarge { limit: 16 })
        );
        let mut parser = SseParser::new(16);
        assert!(parser.push(b"data: 12345678\n", &mut out).is_ok());
        assert!(parser.push(b"data: 12345678\n", &mut out).is_err());
    }
}
