//! Server-sent events, as the neuron channel uses them: an incremental
//! parser fed with arbitrary byte chunks (`event:` / `data:` fields, a blank
//! line ends an event, `:` lines are comments), plus the pure pieces of the
//! neuron wire the load generator needs (lease frames, ISO-8601 timestamps,
//! the tenant claim of a JWT).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// Longest line accepted before the stream is declared broken (a lease frame
/// carries its task input, which the gateway caps far below this).
pub(crate) const MAX_LINE_BYTES: usize = 4 << 20;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `event:` field, `message` when the event had none.
    pub(crate) event: String,
    /// The `data:` lines joined with `\n`.
    pub(crate) data: String,
}

/// The stream broke the framing rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LineTooLong;

impl std::fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SSE line longer than {MAX_LINE_BYTES} bytes")
    }
}

impl std::error::Error for LineTooLong {}

/// Incremental SSE parser (WHATWG `text/event-stream` rules for the fields
/// used here): lines end with LF, CRLF or CR, also when the CR and LF arrive
/// in different chunks; `field: value` loses one space after the colon; an
/// event with no `data:` line is not dispatched; `id:` and `retry:` are
/// ignored.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    /// The current, unfinished line.
    line: Vec<u8>,
    /// The previous chunk ended with CR: a leading LF belongs to it.
    after_cr: bool,
    event: String,
    data: String,
    has_data: bool,
    /// Comment lines seen (`: ping` keep-alives, `: connected`).
    comments: u64,
}

impl SseParser {
    /// Consumes `chunk`, appending every event it completes to `out`.
    pub(crate) fn feed(
        &mut self,
        chunk: &[u8],
        out: &mut Vec<SseEvent>,
    ) -> Result<(), LineTooLong> {
        let mut rest = chunk;
        if self.after_cr {
            self.after_cr = false;
            if let Some(tail) = rest.strip_prefix(b"\n") {
                rest = tail;
            }
        }
        while let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.push(&rest[..end])?;
            self.end_line(out);
            let crlf = rest[end] == b'\r';
            rest = &rest[end + 1..];
            if crlf {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        self.push(rest)
    }

    /// Comment lines seen so far.
    pub(crate) fn comments(&self) -> u64 {
        self.comments
    }

    fn push(&mut self, bytes: &[u8]) -> Result<(), LineTooLong> {
        if self.line.len() + bytes.len() > MAX_LINE_BYTES {
            return Err(LineTooLong);
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            let data = std::mem::take(&mut self.data);
            if std::mem::take(&mut self.has_data) {
                out.push(SseEvent {
                    event: if event.is_empty() {
                        "message".to_owned()
                    } else {
                        event
                    },
                    data,
                });
            }
            return;
        }
        if line[0] == b':' {
            self.comments += 1;
            return;
        }
        let line = String::from_utf8_lossy(&line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
    }
}

/// What the load generator needs from a `lease` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lease {
    /// `lease.leaseId`, echoed in the ack.
    pub(crate) lease_id: String,
    /// `lease.task.taskId`: the intent id for tasks published on the bus.
    pub(crate) task_id: String,
    /// `lease.task.attempt`: 0 on first delivery.
    pub(crate) attempt: u64,
    /// `lease.task.input.agw_loadgen_run`: which load-generator run
    /// published the task, if one did.
    pub(crate) run: Option<String>,
}

/// Key of the run marker inside published payloads (and so task inputs).
pub(crate) const RUN_MARKER: &str = "agw_loadgen_run";

/// Reads a `lease` frame's JSON; `None` when a required field is missing.
pub(crate) fn parse_lease(data: &str) -> Option<Lease> {
    let frame: Value = serde_json::from_str(data).ok()?;
    let lease = frame.get("lease")?;
    let task = lease.get("task")?;
    let task_id = match task.get("taskId")? {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    Some(Lease {
        lease_id: lease.get("leaseId")?.as_str()?.to_owned(),
        task_id,
        attempt: task.get("attempt").and_then(Value::as_u64).unwrap_or(0),
        run: task
            .get("input")
            .and_then(|i| i.get(RUN_MARKER))
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for `t` (UTC, millisecond precision; times
/// before 1970 print as the epoch).
pub(crate) fn iso8601(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days(i64::try_from(secs / 86_400).unwrap_or(i64::MAX));
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// (year, month, day) of a count of days since 1970-01-01 (proleptic
/// Gregorian; H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    // Both are in range by construction (1..=31 and 1..=12).
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The `tenant` claim of a JWT, read without verifying it (the gateway
/// verifies; this only catches a `--tenant` that does not match the token).
pub(crate) fn jwt_tenant(token: &str) -> Option<String> {
    let mut parts = token.split('.');
    let (_, payload, _, None) = (parts.next()?, parts.next()?, parts.next()?, parts.next()) else {
        return None;
    };
    let claims: Value = serde_json::from_slice(&base64url_decode(payload)?).ok()?;
    claims.get("tenant")?.as_str().map(str::to_owned)
}

/// Decodes unpadded (or padded) base64url, the JWT segment encoding.
fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // A single leftover character carries fewer than 8 bits: not base64.
    (bits < 6).then_some(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ev(event: &str, data: &str) -> SseEvent {
        SseEvent {
            event: event.to_owned(),
            data: data.to_owned(),
        }
    }

    fn parse_all(chunks: &[&[u8]]) -> (Vec<SseEvent>, u64) {
        let mut parser = SseParser::default();
        let mut out = Vec::new();
        for chunk in chunks {
            parser.feed(chunk, &mut out).unwrap();
        }
        (out, parser.comments())
    }

    const GATEWAY: &[u8] = b": connected\n\n\
        event: registered\ndata: {\"type\":\"registered\",\"sessionId\":\"s1\"}\n\n\
        : ping\n\n\
        event: lease\ndata: {\"type\":\"lease\"}\n\n";

    #[test]
    fn gateway_frames_in_one_chunk() {
        let (events, comments) = parse_all(&[GATEWAY]);
        assert_eq!(
            events,
            [
                ev("registered", r#"{"type":"registered","sessionId":"s1"}"#),
                ev("lease", r#"{"type":"lease"}"#),
            ]
        );
        assert_eq!(comments, 2);
    }

    #[test]
    fn any_split_gives_the_same_events() {
        let (whole, _) = parse_all(&[GATEWAY]);
        for split in 0..=GATEWAY.len() {
            let (a, b) = GATEWAY.split_at(split);
            assert_eq!(parse_all(&[a, b]).0, whole, "split at {split}");
        }
        let bytes: Vec<&[u8]> = GATEWAY.chunks(1).collect();
        assert_eq!(parse_all(&bytes).0, whole);
    }

    #[test]
    fn line_endings_crlf_and_cr_across_chunks() {
        let want = vec![ev("lease", "a"), ev("cancel", "b")];
        assert_eq!(
            parse_all(&[b"event: lease\r\ndata: a\r\n\r\nevent: cancel\rdata: b\r\r"]).0,
            want
        );
        // CR at the end of one chunk, LF at the start of the next: one line end.
        assert_eq!(
            parse_all(&[
                b"event: lease\r",
                b"\ndata: a\r",
                b"\n\r",
                b"\nevent: cancel\r\ndata: b\r\n\r\n"
            ])
            .0,
            want
        );
    }

    #[test]
    fn field_rules() {
        // Multi-line data joins with \n; only one leading space is stripped;
        // no space at all is fine; unknown fields, id and retry are ignored.
        let (events, _) = parse_all(&[b"data:x\ndata:  y\nid: 7\nretry: 10\nfoo: bar\n\n"]);
        assert_eq!(events, [ev("message", "x\n y")]);
        // An event with no data is not dispatched, and its name does not leak.
        let (events, _) = parse_all(&[b"event: lease\n\ndata: z\n\n"]);
        assert_eq!(events, [ev("message", "z")]);
        // A line with no colon is a field with an empty value.
        let (events, _) = parse_all(&[b"data\n\n"]);
        assert_eq!(events, [ev("message", "")]);
        // An unterminated event is held back until its blank line.
        let mut parser = SseParser::default();
        let mut out = Vec::new();
        parser.feed(b"event: lease\ndata: {}\n", &mut out).unwrap();
        assert!(out.is_empty());
        parser.feed(b"\n", &mut out).unwrap();
        assert_eq!(out, [ev("lease", "{}")]);
    }

    #[test]
    fn overlong_lines_are_refused() {
        let mut parser = SseParser::default();
        let mut out = Vec::new();
        let big = vec![b'x'; MAX_LINE_BYTES];
        parser.feed(&big, &mut out).unwrap();
        assert_eq!(parser.feed(b"y", &mut out), Err(LineTooLong));
    }

    #[test]
    fn lease_frames() {
        let data = r#"{"type":"lease","sentAt":"2024-01-01T00:00:00.000Z","lease":{"leaseId":"0190-ab.ffffffffffffffffffffffffffffffff","expiresAt":"2024-01-01T00:00:30.000Z","task":{"taskId":"0190-ab","workflowId":"0190-ab","capability":"bench/neuron","input":{"agw_loadgen_run":"r1","n":3},"attempt":0}}}"#;
        assert_eq!(
            parse_lease(data),
            Some(Lease {
                lease_id: "0190-ab.ffffffffffffffffffffffffffffffff".to_owned(),
                task_id: "0190-ab".to_owned(),
                attempt: 0,
                run: Some("r1".to_owned()),
            })
        );
        let foreign =
            r#"{"lease":{"leaseId":"l","task":{"taskId":42,"input":"text","attempt":2}}}"#;
        assert_eq!(
            parse_lease(foreign),
            Some(Lease {
                lease_id: "l".to_owned(),
                task_id: "42".to_owned(),
                attempt: 2,
                run: None,
            })
        );
        assert_eq!(parse_lease(r#"{"lease":{"leaseId":"l","task":{}}}"#), None);
        assert_eq!(parse_lease(r#"{"lease":{"task":{"taskId":"t"}}}"#), None);
        assert_eq!(parse_lease("not json"), None);
    }

    #[test]
    fn iso8601_utc() {
        let at = |secs: u64, millis: u64| {
            iso8601(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis))
        };
        // Expected values from Python's datetime.fromtimestamp(t, timezone.utc).
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(1_700_000_000, 5), "2023-11-14T22:13:20.005Z");
        assert_eq!(at(951_782_400, 999), "2000-02-29T00:00:00.999Z");
        assert_eq!(at(1_709_164_800, 0), "2024-02-29T00:00:00.000Z");
        assert_eq!(at(4_102_444_799, 0), "2099-12-31T23:59:59.000Z");
        assert_eq!(at(253_402_300_799, 0), "9999-12-31T23:59:59.000Z");
        assert_eq!(
            iso8601(UNIX_EPOCH - Duration::from_secs(1)),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn tenant_claim_of_a_jwt() {
        // Payload {"sub":"b?>?>?>","tenant":"bench","aud":"bigbrain"} has both
        // base64url-only characters ('-' and '_') in its encoding.
        let token = "eyJhbGciOiJIUzI1NiJ9.PAYLOAD.c2ln";
        let payload = "eyJzdWIiOiJiPz4_Pj8-IiwidGVuYW50IjoiYmVuY2giLCJhdWQiOiJiaWdicmFpbiJ9";
        let token = token.replace("PAYLOAD", payload);
        assert_eq!(jwt_tenant(&token), Some("bench".to_owned()));
        assert_eq!(jwt_tenant("a.b"), None);
        assert_eq!(jwt_tenant("a.b.c.d"), None);
        assert_eq!(jwt_tenant("a.!!.c"), None);
        assert_eq!(jwt_tenant("agw_rawapikey"), None);
        assert_eq!(base64url_decode("aGk"), Some(b"hi".to_vec()));
        assert_eq!(base64url_decode("aGk="), Some(b"hi".to_vec()));
        assert_eq!(base64url_decode("a"), None);
    }
}
