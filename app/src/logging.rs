//! Structured logs: one JSON object per line on stdout.
//!
//! Hand-rolled so `ts`, `level` and `msg` always come first and no logging
//! framework is pulled in. Each line is written with one locked write so lines
//! from concurrent requests never interleave.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

pub fn info(msg: &str, fields: &[(&str, Value)]) {
    emit("info", msg, fields);
}

pub fn warn(msg: &str, fields: &[(&str, Value)]) {
    emit("warn", msg, fields);
}

pub fn error(msg: &str, fields: &[(&str, Value)]) {
    emit("error", msg, fields);
}

fn emit(level: &str, msg: &str, fields: &[(&str, Value)]) {
    let line = format_line(&now_rfc3339(), level, msg, fields);
    let mut out = std::io::stdout().lock();
    // A closed stdout must not take the server down; the line is lost either way.
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
}

fn format_line(ts: &str, level: &str, msg: &str, fields: &[(&str, Value)]) -> String {
    let q = |s: &str| Value::from(s).to_string();
    let mut line = format!(
        "{{\"ts\":{},\"level\":{},\"msg\":{}",
        q(ts),
        q(level),
        q(msg)
    );
    for (k, v) in fields {
        line.push(',');
        line.push_str(&q(k));
        line.push(':');
        line.push_str(&v.to_string());
    }
    line.push_str("}\n");
    line
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
    use serde_json::json;

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

    #[test]
    fn line_is_one_json_object() {
        let line = format_line(
            "t",
            "info",
            "say \"hi\"\n",
            &[("status", json!(200)), ("route", json!("/x"))],
        );
        assert!(line.ends_with("}\n") && line.matches('\n').count() == 1);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["msg"], "say \"hi\"\n");
        assert_eq!(v["status"], 200);
        assert!(line.starts_with("{\"ts\":\"t\",\"level\":\"info\""));
    }
}
