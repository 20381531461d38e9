//! Request counters and latency histograms, rendered in the Prometheus text format.
//!
//! Labels use the matched route template (`/employees/{id}`), never the raw
//! path, so the number of series stays bounded whatever URLs clients send.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the latency buckets; `+Inf` is implied.
pub const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<(String, String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
}

#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

/// Extra single-value series appended to the exposition (name, help, type, value).
pub struct Extra<'a> {
    pub name: &'a str,
    pub help: &'a str,
    pub kind: &'a str,
    pub value: u64,
}

impl Metrics {
    pub fn observe(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *inner
            .requests
            .entry((route.to_owned(), method.to_owned(), status))
            .or_default() += 1;
        let h = inner.latency.entry(route.to_owned()).or_default();
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }

    pub fn render(&self, extra: &[Extra<'_>]) -> String {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        out.push_str("# HELP http_requests_total HTTP requests served, by route template, method and status.\n");
        out.push_str("# TYPE http_requests_total counter\n");
        for ((route, method, status), n) in &inner.requests {
            let _ = writeln!(
                out,
                "http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {n}",
                escape(route),
                escape(method)
            );
        }
        out.push_str(
            "# HELP http_request_duration_seconds Time to produce a response, by route template.\n",
        );
        out.push_str("# TYPE http_request_duration_seconds histogram\n");
        for (route, h) in &inner.latency {
            let r = escape(route);
            for (le, n) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    out,
                    "http_request_duration_seconds_bucket{{route=\"{r}\",le=\"{le}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "http_request_duration_seconds_bucket{{route=\"{r}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "http_request_duration_seconds_sum{{route=\"{r}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "http_request_duration_seconds_count{{route=\"{r}\"}} {}",
                h.count
            );
        }
        for e in extra {
            let _ = writeln!(out, "# HELP {} {}", e.name, e.help);
            let _ = writeln!(out, "# TYPE {} {}", e.name, e.kind);
            let _ = writeln!(out, "{} {}", e.name, e.value);
        }
        out
    }
}

/// Label value escaping per the exposition format.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.observe("/employees/{id}", "GET", 200, Duration::from_millis(3));
        m.observe("/employees/{id}", "GET", 200, Duration::from_millis(700));
        m.observe("/employees/{id}", "GET", 404, Duration::from_millis(1));
        let text = m.render(&[Extra {
            name: "cache_hits_total",
            help: "h",
            kind: "counter",
            value: 7,
        }]);
        assert!(text.contains(
            "http_requests_total{route=\"/employees/{id}\",method=\"GET\",status=\"200\"} 2\n"
        ));
        assert!(text.contains(
            "http_requests_total{route=\"/employees/{id}\",method=\"GET\",status=\"404\"} 1\n"
        ));
        assert!(text.contains(
            "http_request_duration_seconds_bucket{route=\"/employees/{id}\",le=\"0.005\"} 2\n"
        ));
        assert!(text.contains(
            "http_request_duration_seconds_bucket{route=\"/employees/{id}\",le=\"0.5\"} 2\n"
        ));
        assert!(text.contains(
            "http_request_duration_seconds_bucket{route=\"/employees/{id}\",le=\"1\"} 3\n"
        ));
        assert!(text.contains(
            "http_request_duration_seconds_bucket{route=\"/employees/{id}\",le=\"+Inf\"} 3\n"
        ));
        assert!(
            text.contains("http_request_duration_seconds_count{route=\"/employees/{id}\"} 3\n")
        );
        assert!(text.contains("cache_hits_total 7\n"));
    }

    #[test]
    fn escapes_labels() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
