//! Request counters, latency histograms and the cache's counters, kept with
//! `prometheus-client` and rendered in its text format.
//!
//! Counters are atomics; a family's map takes a shared (read) lock to find a series,
//! and a histogram locks only its own series, so concurrent requests on different
//! routes never wait on each other. Labels use the matched route template
//! (`/employees/{id}`), never the raw path, so the number of series stays bounded
//! whatever URLs clients send.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::cache::CacheStats;

/// Upper bounds (seconds) of the latency buckets; `+Inf` is implied.
pub const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The exposition's content type (OpenMetrics text, which Prometheus scrapes).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

type Latency = Family<RouteLabels, Histogram, fn() -> Histogram>;

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Latency,
    /// 1 while a stress run burns CPU.
    pub stress_running: Gauge,
}

impl Metrics {
    /// The registry, with the cache's counters (shared, not copied) in it.
    pub fn new(cache: &CacheStats) -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests served, by route template, method and status",
            requests.clone(),
        );
        let latency: Latency = Family::new_with_constructor(|| Histogram::new(BUCKETS));
        registry.register(
            "http_request_duration_seconds",
            "Time to produce a response, by route template",
            latency.clone(),
        );
        for (name, help, counter) in [
            (
                "cache_hits",
                "Reads answered from a fresh cache entry",
                &cache.hits,
            ),
            (
                "cache_stale_served",
                "Reads answered from an expired entry while one background read refreshed it",
                &cache.stale,
            ),
            (
                "cache_misses",
                "Reads that found no usable entry and waited for a table read",
                &cache.misses,
            ),
            (
                "cache_coalesced",
                "Misses that joined a table read another request had started (single flight)",
                &cache.coalesced,
            ),
            ("cache_fills", "Table reads made by the cache", &cache.fills),
        ] {
            registry.register(name, help, counter.clone());
        }
        let stress_running = Gauge::default();
        registry.register(
            "stress_running",
            "1 while a stress run burns CPU",
            stress_running.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            stress_running,
        }
    }

    pub fn observe(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let cache = CacheStats::default();
        let m = Metrics::new(&cache);
        m.observe("/employees/{id}", "GET", 200, Duration::from_millis(3));
        m.observe("/employees/{id}", "GET", 200, Duration::from_millis(700));
        m.observe("/employees/{id}", "GET", 404, Duration::from_millis(1));
        for _ in 0..7 {
            cache.hits.inc();
        }
        let text = m.render();
        assert!(
            text.contains(
                "http_requests_total{route=\"/employees/{id}\",method=\"GET\",status=\"200\"} 2\n"
            ),
            "{text}"
        );
        assert!(text.contains(
            "http_requests_total{route=\"/employees/{id}\",method=\"GET\",status=\"404\"} 1\n"
        ));
        assert!(text.contains(
            "http_request_duration_seconds_bucket{le=\"0.005\",route=\"/employees/{id}\"} 2\n"
        ));
        assert!(text.contains(
            "http_request_duration_seconds_bucket{le=\"0.5\",route=\"/employees/{id}\"} 2\n"
        ));
        assert!(text.contains(
            "http_request_duration_seconds_bucket{le=\"1.0\",route=\"/employees/{id}\"} 3\n"
        ));
        assert!(text.contains(
            "http_request_duration_seconds_bucket{le=\"+Inf\",route=\"/employees/{id}\"} 3\n"
        ));
        assert!(
            text.contains("http_request_duration_seconds_count{route=\"/employees/{id}\"} 3\n")
        );
        assert!(text.contains("cache_hits_total 7\n"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
