//! Prometheus counters and histograms for `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

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
struct PathLabels {
    path: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// The box's health at one scrape (see `status::update_gauges`).
pub struct Health {
    /// Each readiness reason and whether it holds now.
    pub not_ready: Vec<(&'static str, bool)>,
    pub data_free_bytes: u64,
    pub data_read_only: bool,
    /// `None`: no timesyncd to ask.
    pub clock_synchronized: Option<bool>,
    pub phone_skew_seconds: Option<i64>,
    /// `None`: not checked yet (or checks are off).
    pub pacs_reachable: Option<bool>,
    pub pacs_checked: Option<i64>,
}

/// The health gauges, set at each scrape.
struct HealthGauges {
    ready: Gauge,
    not_ready: Family<ReasonLabels, Gauge>,
    data_free_bytes: Gauge,
    data_read_only: Gauge,
    clock_synchronized: Gauge,
    clock_phone_skew_seconds: Gauge,
    pacs_reachable: Gauge,
    pacs_checked_timestamp_seconds: Gauge,
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
    conversions: Family<PathLabels, Counter>,
    conversions_running: Gauge,
    conversions_peak: Gauge,
    deliveries: Family<ResultLabels, Counter>,
    delivery_attempts: Counter,
    outbox_queued: Gauge,
    outbox_oldest_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    outbox_failed: Gauge,
    outbox_incomplete_removed: Counter,
    staging_swept: Counter,
    health: HealthGauges,
}

/// Registers `metric` under `name` and hands back the handle the gateway updates.
fn register<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// [`register`] for a metric that starts at its default.
fn registered<M: Metric + Clone + Default>(registry: &mut Registry, name: &str, help: &str) -> M {
    register(registry, name, help, M::default())
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
        let http_requests: Family<HttpLabels, Counter> = registered(
            &mut registry,
            "http_requests",
            "HTTP requests by route and status",
        );
        let studies: Family<ResultLabels, Counter> = registered(
            &mut registry,
            "studies",
            "Studies: accepted into the outbox, then sent, partial or failed when delivery ends",
        );
        let instances: Family<ResultLabels, Counter> = registered(
            &mut registry,
            "instances",
            "DICOM objects by final delivery outcome (success, warning, failed)",
        );
        // 5 ms to about 20 s: a thumbnail on a fast box to a 48 MP photo on a Pi Zero.
        let conversion_seconds = register(
            &mut registry,
            "conversion_seconds",
            "Time to turn one photo into a DICOM object",
            Histogram::new(exponential_buckets(0.005, 2.0, 13)),
        );
        let conversions: Family<PathLabels, Counter> = registered(
            &mut registry,
            "conversions",
            "Photos converted, by how their pixels reached the object: kept (the camera's JPEG as it is), transformed (turned or made baseline losslessly) or decoded",
        );
        let conversions_running: Gauge = registered(
            &mut registry,
            "conversions_running",
            "Photos being converted right now",
        );
        // The high-water mark shows whether MAX_CONVERSIONS (the memory budget) ever filled.
        let conversions_peak: Gauge = registered(
            &mut registry,
            "conversions_peak",
            "Most photos converted at the same time since start-up",
        );
        let deliveries: Family<ResultLabels, Counter> = registered(
            &mut registry,
            "deliveries",
            "Instance delivery attempts by result (stored, warning, transient, permanent, configuration)",
        );
        let delivery_attempts: Counter = registered(
            &mut registry,
            "delivery_attempts",
            "Delivery attempts of a study (first ones and retries)",
        );
        let outbox_queued: Gauge = registered(
            &mut registry,
            "outbox_queued",
            "Studies waiting in the outbox for (another) delivery attempt",
        );
        let outbox_oldest_seconds: Gauge<f64, std::sync::atomic::AtomicU64> = registered(
            &mut registry,
            "outbox_oldest_seconds",
            "Age of the oldest study still waiting in the outbox",
        );
        let outbox_failed: Gauge = registered(
            &mut registry,
            "outbox_failed",
            "Studies the PACS refused (all or part), waiting for an admin",
        );
        let outbox_incomplete_removed: Counter = registered(
            &mut registry,
            "outbox_incomplete_removed",
            "Half-built studies (a crash during intake) removed at start-up",
        );
        let staging_swept: Counter = registered(
            &mut registry,
            "staging_swept",
            "Upload staging folders a crash left, removed at start-up",
        );
        let health = HealthGauges {
            ready: registered(
                &mut registry,
                "ready",
                "1 when the box can take and keep photos (what /readyz answers 200 for)",
            ),
            not_ready: registered(
                &mut registry,
                "not_ready",
                "1 for each reason the box is not ready: DATA_READ_ONLY, DATA_LOW_SPACE, SETTINGS_LOCKED, OUTBOX_STUCK",
            ),
            data_free_bytes: registered(
                &mut registry,
                "data_free_bytes",
                "Free bytes on the data partition (the outbox's file system)",
            ),
            data_read_only: registered(
                &mut registry,
                "data_read_only",
                "1 when the data partition is mounted read-only",
            ),
            clock_synchronized: registered(
                &mut registry,
                "clock_synchronized",
                "1 when systemd-timesyncd has set the clock, 0 when not, -1 without timesyncd",
            ),
            clock_phone_skew_seconds: registered(
                &mut registry,
                "clock_phone_skew_seconds",
                "The box's clock minus the last phone's, when the study arrived",
            ),
            pacs_reachable: registered(
                &mut registry,
                "pacs_reachable",
                "1 when the last echo of the PACS succeeded, 0 when it failed, -1 before the first",
            ),
            pacs_checked_timestamp_seconds: registered(
                &mut registry,
                "pacs_checked_timestamp_seconds",
                "When the PACS was last echoed (Unix time)",
            ),
        };
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
            conversions,
            conversions_running,
            conversions_peak,
            deliveries,
            delivery_attempts,
            outbox_queued,
            outbox_oldest_seconds,
            outbox_failed,
            outbox_incomplete_removed,
            health,
            staging_swept,
        }
    }

    /// One instance's delivery attempt ended with `result`.
    pub fn delivery(&self, result: &'static str) {
        self.deliveries
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// `studies` studies had a delivery attempt.
    pub fn delivery_attempts(&self, studies: u64) {
        self.delivery_attempts.inc_by(studies);
    }

    pub fn outbox(&self, queued: i64, oldest_seconds: f64, failed: i64) {
        self.outbox_queued.set(queued);
        self.outbox_oldest_seconds.set(oldest_seconds);
        self.outbox_failed.set(failed);
    }

    pub fn health(&self, h: Health) {
        let g = &self.health;
        g.ready
            .set(i64::from(h.not_ready.iter().all(|(_, failing)| !failing)));
        for (reason, failing) in h.not_ready {
            g.not_ready
                .get_or_create(&ReasonLabels { reason })
                .set(i64::from(failing));
        }
        g.data_free_bytes
            .set(i64::try_from(h.data_free_bytes).unwrap_or(i64::MAX));
        g.data_read_only.set(i64::from(h.data_read_only));
        g.clock_synchronized
            .set(h.clock_synchronized.map_or(-1, i64::from));
        g.clock_phone_skew_seconds
            .set(h.phone_skew_seconds.unwrap_or(0));
        g.pacs_reachable.set(h.pacs_reachable.map_or(-1, i64::from));
        g.pacs_checked_timestamp_seconds
            .set(h.pacs_checked.unwrap_or(0));
    }

    pub fn outbox_incomplete_removed(&self, n: u64) {
        self.outbox_incomplete_removed.inc_by(n);
    }

    pub fn staging_swept(&self, n: u64) {
        self.staging_swept.inc_by(n);
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

    pub fn conversion(&self, seconds: f64, path: &'static str) {
        self.conversion_seconds.observe(seconds);
        self.conversions.get_or_create(&PathLabels { path }).inc();
    }

    /// Counts a conversion as running for as long as the guard lives.
    pub fn conversion_started(self: &std::sync::Arc<Self>) -> ConversionGuard {
        let now = self.conversions_running.inc() + 1;
        self.conversions_peak
            .inner()
            .fetch_max(now, std::sync::atomic::Ordering::Relaxed);
        ConversionGuard(self.clone())
    }

    /// OpenMetrics 1.0 text (served as such by `GET /metrics`).
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
        m.conversion(0.02, "kept");
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
        assert!(
            text.contains(r#"photo_pacs_conversions_total{path="kept"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"photo_pacs_build{version="#), "{text}");
    }
}
