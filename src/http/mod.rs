//! The HTTP server: hyper 1 over tokio, one router, graceful shutdown.

mod access;
mod assets;
mod backup;
mod body;
mod error;
mod form;
mod health;
mod json;
mod linger;
mod openapi;
mod outbox;
mod pace;
mod pacs;
mod router;
mod settings;
mod status;
mod studies;
mod update;
mod worklist;

pub use openapi::DOCUMENT as OPENAPI;
pub use router::{API_ROUTES, Guard};

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::app::App;

/// On shutdown, requests in flight get this long to finish (an upload being delivered).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Connections beyond `MAX_CONNECTIONS` (or a client's share of them) that are still
/// accepted, to answer `/healthz` and tell everyone else "busy": the watchdog and a
/// monitoring probe get through when slow clients hold every slot.
const RESERVE_CONNECTIONS: usize = 8;
/// A reserved connection's request head must arrive this fast.
const RESERVE_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// Open connections per client address, for the per-client share.
#[derive(Default)]
struct PerClient(std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>);

/// One connection counted against its client; uncounted when dropped.
struct ClientSlot {
    table: Arc<PerClient>,
    ip: IpAddr,
}

impl PerClient {
    /// Counts a connection from `ip` if the client is under `cap`.
    fn take(self: &Arc<Self>, ip: IpAddr, cap: usize) -> Option<ClientSlot> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_default();
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            table: self.clone(),
            ip,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut map = self.table.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Serves until `shutdown` completes, then stops accepting and lets requests in flight finish.
pub async fn serve(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    // Bounds open connections: past the limit, new clients wait in the kernel's backlog.
    let slots = Arc::new(tokio::sync::Semaphore::new(
        app.env.max_connections + RESERVE_CONNECTIONS,
    ));
    let general = Arc::new(tokio::sync::Semaphore::new(app.env.max_connections));
    let per_client = Arc::new(PerClient::default());
    let share = app.env.max_connections_per_client;
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
                // A full connection needs a general slot and the client within its share.
                let counted = if crate::access::is_own_loopback(peer.ip()) {
                    Some(None)
                } else {
                    per_client.take(peer.ip().to_canonical(), share).map(Some)
                };
                let over_share = counted.is_none();
                let full = counted.and_then(|client| {
                    general.clone().try_acquire_owned().ok().map(|g| (g, client))
                });
                let reserved = full.is_none();
                let app = app.clone();
                let service = service_fn(move |req| {
                    let app = app.clone();
                    async move {
                        Ok::<_, Infallible>(if reserved {
                            router::handle_reserved(app, req, peer, over_share).await
                        } else {
                            router::handle(app, req, peer).await
                        })
                    }
                });
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    // Slow-loris: headers must be complete this long after they start.
                    .header_read_timeout(if reserved { RESERVE_HEADER_TIMEOUT } else { header_timeout })
                    .keep_alive(!reserved);
                let conn = builder.serve_connection(TokioIo::new(linger::Lingering::new(stream)), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _slot = slot;
                    let _full = full;
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
