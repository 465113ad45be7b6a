//! Prometheus counters and histograms for `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    version: &'static str,
    backend: &'static str,
}

pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    studies: Family<ResultLabels, Counter>,
    instances: Family<ResultLabels, Counter>,
    conversion_seconds: Histogram,
    conversions_running: Gauge,
    conversions_peak: Gauge,
}

/// Marks one conversion as running until dropped.
pub struct ConversionGuard(std::sync::Arc<Metrics>);

impl Drop for ConversionGuard {
    fn drop(&mut self) {
        self.0.conversions_running.dec();
    }
}

impl Metrics {
    pub fn new(backend: &'static str) -> Self {
        let mut registry = Registry::with_prefix("photo_pacs");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            http_requests.clone(),
        );
        let studies = Family::<ResultLabels, Counter>::default();
        registry.register(
            "studies",
            "Submissions by outcome (sent, failed, invalid)",
            studies.clone(),
        );
        let instances = Family::<ResultLabels, Counter>::default();
        registry.register(
            "instances",
            "DICOM objects by delivery outcome (success, warning, failed)",
            instances.clone(),
        );
        // 5 ms to about 20 s: a thumbnail on a fast box to a 48 MP photo on a Pi Zero.
        let conversion_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 13));
        registry.register(
            "conversion_seconds",
            "Time to turn one photo into a DICOM object",
            conversion_seconds.clone(),
        );
        let conversions_running = Gauge::default();
        registry.register(
            "conversions_running",
            "Photos being converted right now",
            conversions_running.clone(),
        );
        // The high-water mark shows whether MAX_CONVERSIONS (the memory budget) ever filled.
        let conversions_peak = Gauge::default();
        registry.register(
            "conversions_peak",
            "Most photos converted at the same time since start-up",
            conversions_peak.clone(),
        );
        let info = Family::<InfoLabels, Gauge>::default();
        info.get_or_create(&InfoLabels {
            version: env!("CARGO_PKG_VERSION"),
            backend,
        })
        .set(1);
        registry.register("build", "Version and PACS backend of this gateway", info);
        Metrics {
            registry,
            http_requests,
            studies,
            instances,
            conversion_seconds,
            conversions_running,
            conversions_peak,
        }
    }

    pub fn http_request(&self, method: &str, route: &'static str, status: u16) {
        self.http_requests
            .get_or_create(&HttpLabels {
                method: method.to_string(),
                route,
                status,
            })
            .inc();
    }

    pub fn study(&self, result: &'static str) {
        self.studies.get_or_create(&ResultLabels { result }).inc();
    }

    pub fn instance(&self, result: &'static str) {
        self.instances.get_or_create(&ResultLabels { result }).inc();
    }

    pub fn conversion(&self, seconds: f64) {
        self.conversion_seconds.observe(seconds);
    }

    /// Counts a conversion as running for as long as the guard lives.
    pub fn conversion_started(self: &std::sync::Arc<Self>) -> ConversionGuard {
        let now = self.conversions_running.inc() + 1;
        self.conversions_peak
            .inner()
            .fetch_max(now, std::sync::atomic::Ordering::Relaxed);
        ConversionGuard(self.clone())
    }

    /// The text exposition format.
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
    fn counters_appear_in_the_text() {
        let m = std::sync::Arc::new(Metrics::new("mock"));
        m.http_request("GET", "/healthz", 200);
        m.study("sent");
        m.instance("success");
        m.conversion(0.02);
        {
            let _a = m.conversion_started();
            let _b = m.conversion_started();
        }
        let _c = m.conversion_started();
        let text = m.render();
        assert!(text.contains("photo_pacs_conversions_running 1"), "{text}");
        assert!(text.contains("photo_pacs_conversions_peak 2"), "{text}");
        assert!(
            text.contains(
                r#"photo_pacs_http_requests_total{method="GET",route="/healthz",status="200"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"photo_pacs_studies_total{result="sent"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("photo_pacs_conversion_seconds_count 1"),
            "{text}"
        );
        assert!(text.contains(r#"photo_pacs_build{version="#), "{text}");
    }
}
