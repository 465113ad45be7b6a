//! The HTTP server: hyper 1 over tokio, one router, graceful shutdown.

mod access;
mod assets;
mod body;
mod error;
mod health;
mod json;
mod openapi;
mod outbox;
mod pacs;
mod router;
mod settings;
mod studies;

pub use openapi::DOCUMENT as OPENAPI;
pub use router::{API_ROUTES, Guard};

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::app::App;

/// On shutdown, requests in flight get this long to finish (an upload being delivered).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Serves until `shutdown` completes, then stops accepting and lets requests in flight finish.
pub async fn serve(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    // Bounds open connections: past the limit, new clients wait in the kernel's backlog.
    let slots = Arc::new(tokio::sync::Semaphore::new(app.env.max_connections));
    let header_timeout = app.env.header_timeout;
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Usually out of file descriptors: back off instead of spinning.
                        log::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let app = app.clone();
                let service = service_fn(move |req| {
                    let app = app.clone();
                    async move { Ok::<_, Infallible>(router::handle(app, req, peer).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    // Slow-loris: headers must be complete this long after they start.
                    .header_read_timeout(header_timeout)
                    .serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _slot = slot;
                    if let Err(e) = conn.await {
                        log::debug!("connection ended with an error: {e}");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    log::info!("shutting down: waiting for requests in flight");
    tokio::select! {
        () = graceful.shutdown() => log::info!("all requests finished"),
        () = tokio::time::sleep(DRAIN_TIMEOUT) => log::warn!("requests still running after {}s; stopping anyway", DRAIN_TIMEOUT.as_secs()),
    }
}
