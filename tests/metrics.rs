//! `GET /metrics`: OpenMetrics text, labelled as such, and scraped by a real Prometheus
//! (Debian's `prometheus` package) on loopback.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::storescp::{Logs, StartError, free_port, terminate, wait_listening};
use common::*;
use serde_json::Value;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long Prometheus may take to listen, and then to report a good scrape and its samples
/// (it scrapes every second here).
const PROMETHEUS_TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn metrics_are_openmetrics_and_labelled_so() {
    let (_dir, gw) = gateway(&[]);
    let resp = client()
        .get(gw.url("/metrics"))
        .send()
        .expect("GET /metrics");
    assert_eq!(resp.status().as_u16(), 200);
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(content_type, OPENMETRICS);
    let text = resp.text().expect("metrics body");
    // What only OpenMetrics has: the end marker, and a counter typed without its `_total`.
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(
        text.contains("# TYPE photo_pacs_delivery_attempts counter\n"),
        "{text}"
    );
    assert!(
        text.contains("\nphoto_pacs_delivery_attempts_total 0\n"),
        "{text}"
    );
}

/// A Prometheus server on 127.0.0.1 scraping one target every second; killed on drop.
struct Prometheus {
    child: Child,
    base: String,
    logs: Logs,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(binary: &Path, target: &str) -> Prometheus {
        let dir = tempfile::Builder::new()
            .prefix("prometheus-")
            .tempdir()
            .expect("create a temp dir for Prometheus");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: photo-pacs\n    static_configs:\n      \
                 - targets: ['{target}']\n"
            ),
        )
        .expect("write prometheus.yml");
        let mut last_error = String::new();
        // A port taken between probing and binding: try another.
        for _attempt in 0..3 {
            let port = free_port();
            let mut child = Command::new(binary)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("tsdb").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start prometheus");
            let logs = Logs::capture(&mut child);
            match wait_listening(&mut child, &[port], PROMETHEUS_TIMEOUT, "prometheus") {
                Ok(()) => {
                    return Prometheus {
                        child,
                        base: format!("http://127.0.0.1:{port}"),
                        logs,
                        _dir: dir,
                    };
                }
                Err(StartError::Exited(status)) => {
                    std::thread::sleep(Duration::from_millis(50));
                    last_error = format!("prometheus exited ({status}):\n{}", logs.text());
                    if !logs.text().contains("address already in use") {
                        break;
                    }
                }
                Err(StartError::Timeout) => {
                    terminate(&mut child, Duration::from_secs(5));
                    panic!(
                        "prometheus did not listen on {port} within {PROMETHEUS_TIMEOUT:?}:\n{}",
                        logs.text()
                    );
                }
            }
        }
        panic!("prometheus did not start: {last_error}");
    }

    /// `GET /api/v1/<path>`'s `data`, or why there is none yet.
    fn api(&self, path: &str) -> Result<Value, String> {
        let doc: Value = client()
            .get(format!("{}/api/v1/{path}", self.base))
            .send()
            .and_then(|r| r.json())
            .map_err(|e| e.to_string())?;
        if doc["status"] != "success" {
            return Err(doc.to_string());
        }
        Ok(doc["data"].clone())
    }

    /// Polls `check` (given `data` of `/api/v1/<path>`) until it gives a value.
    fn wait_for<T>(&self, path: &str, check: impl Fn(&Value) -> Option<T>) -> T {
        let deadline = Instant::now() + PROMETHEUS_TIMEOUT;
        loop {
            let last = self.api(path);
            if let Some(found) = last.as_ref().ok().and_then(&check) {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "/api/v1/{path} after {PROMETHEUS_TIMEOUT:?}: {last:?}\nprometheus log:\n{}",
                self.logs.text()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(5));
    }
}

#[test]
#[cfg_attr(
    missing_peer = "prometheus",
    ignore = "Prometheus is not installed (apt-get install prometheus)"
)]
fn prometheus_scrapes_the_metrics() {
    let Some(binary) = peer("prometheus", "prometheus") else {
        return;
    };
    let (_dir, gw) = gateway(&[]);
    let target = gw.base.trim_start_matches("http://").to_string();
    // A request to count before the first scrape.
    assert_eq!(gw.get_json("/healthz")["status"], "ok");
    let prometheus = Prometheus::start(&binary, &target);

    let scrape_url = gw.url("/metrics");
    prometheus.wait_for("targets", |data| {
        let targets = data["activeTargets"].as_array()?;
        let ours = targets
            .iter()
            .find(|t| t["scrapeUrl"] == scrape_url.as_str())?;
        // A body that failed to parse leaves the target down with the parser's error.
        (ours["health"] == "up" && ours["lastError"] == "").then_some(())
    });

    let healthz = prometheus.wait_for("query?query=photo_pacs_http_requests_total", |data| {
        data["result"].as_array()?.iter().find_map(|series| {
            (series["metric"]["route"] == "/healthz")
                .then(|| series["value"][1].as_str()?.parse::<f64>().ok())
                .flatten()
        })
    });
    assert!(healthz >= 1.0, "GET /healthz counted {healthz} times");

    // The types arrive too: the family, named without `_total`, is a counter.
    let metadata = prometheus.wait_for("metadata?metric=photo_pacs_http_requests", |data| {
        data["photo_pacs_http_requests"]
            .as_array()?
            .first()
            .cloned()
    });
    assert_eq!(metadata["type"], "counter", "{metadata}");
}
