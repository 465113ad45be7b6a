//! The service manager's view of the gateway: readiness, status lines and the watchdog (sd_notify).
//!
//! Every call is a no-op when the gateway does not run under systemd (no `NOTIFY_SOCKET`).

use std::net::SocketAddr;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long start-up may take before the gateway gives up waiting for its own `/healthz`.
const READY_WAIT: Duration = Duration::from_secs(30);

/// The address to reach our own listener on: a wildcard bind is asked on loopback.
pub fn self_address(bound: SocketAddr) -> SocketAddr {
    let ip = match bound.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => {
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        }
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => {
            std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        }
        ip => ip,
    };
    SocketAddr::new(ip, bound.port())
}

/// True when `GET /healthz` on `addr` answers 200 within `within`.
pub async fn answers(addr: SocketAddr, within: Duration) -> bool {
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        Ok::<bool, std::io::Error>(head.starts_with(b"HTTP/1.1 200"))
    };
    matches!(tokio::time::timeout(within, probe).await, Ok(Ok(true)))
}

/// Waits until the server answers its own health check, then tells systemd it is ready.
/// Readiness therefore means "a phone can connect now", not just "the socket is bound".
pub async fn announce_ready(addr: SocketAddr, status: &str) {
    let started = tokio::time::Instant::now();
    while !answers(addr, Duration::from_secs(1)).await {
        if started.elapsed() > READY_WAIT {
            log::error!("the server does not answer its own health check; not ready");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells systemd the gateway is stopping (it drains requests in flight first).
pub fn announce_stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: finishing requests in flight"),
    ]);
}

/// When systemd asked for a watchdog (`WatchdogSec=`), pings it at half the interval, but
/// only after the server answered a real request: a wedged server is restarted.
pub fn spawn_watchdog(addr: SocketAddr) {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let period = interval / 2;
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if answers(addr, period).await {
                send(&[NotifyState::Watchdog]);
            } else {
                log::warn!("the health check did not answer; withholding the watchdog ping");
            }
        }
    });
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        log::warn!("cannot notify the service manager: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_binds_are_probed_on_loopback() {
        let any: SocketAddr = "0.0.0.0:9470".parse().unwrap();
        assert_eq!(self_address(any).to_string(), "127.0.0.1:9470");
        let any6: SocketAddr = "[::]:9470".parse().unwrap();
        assert_eq!(self_address(any6).to_string(), "[::1]:9470");
        let one: SocketAddr = "192.0.2.7:80".parse().unwrap();
        assert_eq!(self_address(one), one);
    }

    #[tokio::test]
    async fn a_closed_port_does_not_answer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        assert!(!answers(addr, Duration::from_millis(500)).await);
    }
}
