//! Structured logs through `tracing`: one JSON object per line on stdout.
//!
//! `tracing-subscriber`'s fmt layer does the work (span bookkeeping, one locked write
//! per line, non-blocking of other threads); the event format is ours so that a line
//! keeps the keys people grep for: `ts`, `level`, `msg` first, then the event's
//! fields (`method`, `route`, `status`, `duration_ms`, …), then `request_id` from the
//! enclosing request span. The built-in JSON format would rename them (`timestamp`,
//! `message`) and nest the span.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Installs the JSON subscriber for the process (the binary, the benchmark). Tests
/// that serve the app in-process leave it off and log nothing.
pub fn init() {
    let _ = tracing_subscriber::fmt()
        .event_format(JsonLine)
        .fmt_fields(JsonFields)
        .with_writer(std::io::stdout)
        .try_init();
}

/// The request header the load balancer sets on every request it forwards.
pub const ALB_TRACE_HEADER: &str = "x-amzn-trace-id";
/// The header the request id is echoed in (and taken from, when a client sends one).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The id a request's log lines carry: the load balancer's trace id when present,
/// else a client's `x-request-id` if it is sane, else a fresh one.
pub fn request_id(alb_trace: Option<&str>, client: Option<&str>) -> String {
    let sane =
        |s: &&str| !s.is_empty() && s.len() <= 200 && s.bytes().all(|b| b.is_ascii_graphic());
    alb_trace
        .filter(sane)
        .or(client.filter(sane))
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{:016x}", fastrand::u64(..)))
}

/// Formats one event as one JSON line.
struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = FieldMap::default();
        event.record(&mut fields);
        let msg = fields
            .0
            .iter()
            .position(|(k, _)| k == "message")
            .map_or(Value::from(""), |i| fields.0.remove(i).1);
        // The enclosing spans' fields (the request id), outermost first.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                if let Some(f) = ext.get::<FormattedFields<N>>()
                    && let Ok(Value::Object(span_fields)) = serde_json::from_str(f.as_str())
                {
                    fields.0.extend(span_fields);
                }
            }
        }
        // Written by hand so that `ts`, `level` and `msg` always come first.
        let q = |s: &str| Value::from(s).to_string();
        write!(
            writer,
            "{{\"ts\":{},\"level\":{},\"msg\":{}",
            q(&now_rfc3339()),
            q(&event.metadata().level().as_str().to_ascii_lowercase()),
            msg
        )?;
        for (k, v) in &fields.0 {
            write!(writer, ",{}:{v}", q(k))?;
        }
        writeln!(writer, "}}")
    }
}

/// Span fields kept as a JSON object, for [`JsonLine`] to merge into each line.
struct JsonFields;

impl<'writer> FormatFields<'writer> for JsonFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut map = FieldMap::default();
        fields.record(&mut map);
        write!(writer, "{}", Value::Object(map.0.into_iter().collect()))
    }
}

/// Collects an event's or span's fields with their JSON types, in order.
#[derive(Default)]
struct FieldMap(Vec<(String, Value)>);

impl FieldMap {
    fn put(&mut self, field: &Field, value: Value) {
        self.0.push((field.name().to_owned(), value));
    }
}

impl Visit for FieldMap {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::from(format!("{value:?}")));
    }
}

/// UTC time as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn now_rfc3339() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format_rfc3339(d.as_secs(), d.subsec_millis())
}

fn format_rfc3339(secs: u64, millis: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[test]
    fn timestamps() {
        assert_eq!(format_rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_rfc3339(951_782_400 + 3661, 7),
            "2000-02-29T01:01:01.007Z"
        );
        assert_eq!(
            format_rfc3339(1_735_689_599, 999),
            "2024-12-31T23:59:59.999Z"
        );
    }

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_line_keeps_the_grep_keys_and_the_request_id() {
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .event_format(JsonLine)
            .fmt_fields(JsonFields)
            .with_writer(move || out.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", request_id = "abc-123");
            let _in = span.enter();
            tracing::info!(
                method = "GET",
                route = "/x",
                status = 200u16,
                duration_ms = 1.5,
                "say \"hi\"\n"
            );
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(
            text.ends_with("}\n") && text.matches('\n').count() == 1,
            "{text}"
        );
        assert!(text.starts_with("{\"ts\":\""), "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["level"], "info");
        assert_eq!(v["msg"], "say \"hi\"\n");
        assert_eq!(v["status"], 200);
        assert_eq!(v["duration_ms"], 1.5);
        assert_eq!(v["route"], "/x");
        assert_eq!(v["request_id"], "abc-123");
    }

    #[test]
    fn request_ids_come_from_the_load_balancer_first() {
        assert_eq!(request_id(Some("Root=1-abc"), Some("mine")), "Root=1-abc");
        assert_eq!(request_id(None, Some("mine")), "mine");
        // A header with spaces or control characters is not echoed back.
        let fresh = request_id(None, Some("bad value\n"));
        assert_eq!(fresh.len(), 16);
        assert_ne!(request_id(None, None), request_id(None, None));
    }
}
