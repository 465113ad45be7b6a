//! Access: who may change settings (an admin password and sessions), who may upload (an
//! optional PIN), and how often a client may guess either.

mod limiter;
mod password;
mod sessions;

pub use limiter::{Attempt, Limiter, client_key};
pub use password::{PasswordError, Verifier, hash_password, is_valid_hash, verify_password};
pub use sessions::Sessions;

use std::net::IpAddr;
use std::time::Duration;

/// Failed admin-password guesses a client may make per window before it must wait, and
/// all clients together (a guesser with many addresses).
pub const PASSWORD_FAILURES: (usize, usize) = (5, 20);
/// The same for the upload PIN: a nurse mistyping it is more common, and a PIN guards less.
pub const PIN_FAILURES: (usize, usize) = (10, 60);
/// Patient lookups per minute, per client and for all together: a nurse scanning one
/// wristband after another makes a few; someone trying IDs to collect names makes many.
pub const LOOKUPS: (usize, usize) = (30, 240);
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Password checks (argon2, 19 MiB each) running at once at most; more wait their turn.
pub const PASSWORD_CHECKS: usize = 2;

/// The cookie that carries an admin session.
pub const SESSION_COOKIE: &str = "photo_pacs_session";

/// Why a request is refused.
#[derive(Debug, thiserror::Error)]
pub enum Denied {
    #[error("an admin login is needed")]
    LoginRequired,
    #[error("wrong password")]
    WrongPassword,
    #[error("the upload PIN is needed")]
    PinRequired,
    #[error("wrong upload PIN")]
    WrongPin,
    #[error("too many failed attempts; try again in {retry_after} s")]
    TooManyAttempts { retry_after: u64 },
}

/// The box's own loopback addresses: the tunnel (cloudflared) and the gateway's own health
/// checks arrive from there, for many clients at once. Other 127/8 addresses are not the
/// box's own services.
pub fn is_own_loopback(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4 == std::net::Ipv4Addr::LOCALHOST,
        IpAddr::V6(v6) => v6 == std::net::Ipv6Addr::LOCALHOST,
    }
}

/// This machine's host name, lowercased (`""` when it cannot be read). Read each time:
/// provisioning may rename the box while the gateway runs.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|n| n.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// The client a request speaks for. Behind the tunnel every request arrives from loopback,
/// so there (and only there) the forwarding proxy's header names the real client.
pub fn client_address(peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
    // A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d.
    let peer = peer.to_canonical();
    if peer.is_loopback()
        && let Some(first) = forwarded_for.and_then(|v| v.split(',').next())
        && let Ok(ip) = first.trim().parse::<IpAddr>()
    {
        return ip;
    }
    peer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_addresses_count_only_from_loopback() {
        let lan: IpAddr = "192.168.1.20".parse().unwrap();
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            client_address(lan, Some("10.9.9.9")),
            lan,
            "a LAN client cannot pick its own address"
        );
        assert_eq!(
            client_address(local, Some("203.0.113.7, 10.0.0.1")),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_address(local, Some("not an ip")), local);
        assert_eq!(client_address(local, None), local);
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(
            client_address(mapped, Some("203.0.113.7")),
            "203.0.113.7".parse::<IpAddr>().unwrap(),
            "IPv4-mapped loopback is loopback"
        );
    }
}
