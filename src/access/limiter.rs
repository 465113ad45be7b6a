//! Failed-guess limits: a few tries a minute per client and a budget for all clients
//! together, with every attempt counted as a failure from the moment it starts.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Clients tracked at once; beyond this the quietest are forgotten (they had no recent
/// failures worth remembering anyway).
const MAX_CLIENTS: usize = 4096;

pub struct Limiter {
    per_client: usize,
    total: usize,
    window: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    clients: HashMap<IpAddr, VecDeque<Instant>>,
    all: VecDeque<Instant>,
}

/// One guess being checked. It counts as a failure until [`Attempt::succeed`]: a guess
/// whose check is cut short (a dropped connection, a panic) is never free.
#[must_use]
pub struct Attempt<'a> {
    limiter: &'a Limiter,
    client: IpAddr,
    at: Instant,
}

impl Attempt<'_> {
    /// The guess was right: the client's record is cleared and the guess given back.
    pub fn succeed(self) {
        let mut state = self.limiter.lock();
        state.clients.remove(&self.client);
        if let Some(i) = state.all.iter().rposition(|t| *t == self.at) {
            state.all.remove(i);
        }
    }
}

/// The key a client's failures are counted under: an IPv6 client by its /64 (one host
/// usually has a whole /64 to pick from), an IPv4-mapped address as the IPv4 one.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

impl Limiter {
    /// `per_client` failures per `window` for one client, `total` for all clients together.
    pub fn new(per_client: usize, total: usize, window: Duration) -> Self {
        Limiter {
            per_client,
            total,
            window,
            state: Mutex::new(State::default()),
        }
    }

    /// Counts a guess by `client` before it is checked, or `Err(seconds to wait)` when the
    /// client, or everyone together, has used up the failures for now. Checking and
    /// counting are one step, so guesses sent at once cannot all slip under the limit.
    pub fn reserve(&self, client: IpAddr) -> Result<Attempt<'_>, u64> {
        let client = client_key(client);
        let now = Instant::now();
        let mut state = self.lock();
        let window = self.window;
        let expire = |list: &mut VecDeque<Instant>| {
            while list
                .front()
                .is_some_and(|t| now.duration_since(*t) >= window)
            {
                list.pop_front();
            }
        };
        expire(&mut state.all);
        let wait = |oldest: Option<Instant>| {
            let waited = now.duration_since(oldest.unwrap_or(now));
            window.saturating_sub(waited).as_secs().max(1)
        };
        if state.all.len() >= self.total {
            return Err(wait(state.all.front().copied()));
        }
        if state.clients.len() >= MAX_CLIENTS && !state.clients.contains_key(&client) {
            state
                .clients
                .retain(|_, l| l.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        let list = state.clients.entry(client).or_default();
        expire(list);
        if list.len() >= self.per_client {
            return Err(wait(list.front().copied()));
        }
        list.push_back(now);
        state.all.push_back(now);
        Ok(Attempt {
            limiter: self,
            client,
            at: now,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn five_guesses_then_a_wait_per_client() {
        let l = Limiter::new(5, 100, Duration::from_secs(60));
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        for _ in 0..5 {
            drop(l.reserve(a).unwrap());
        }
        let wait = l.reserve(a).err().unwrap();
        assert!((1..=60).contains(&wait));
        assert!(l.reserve(b).is_ok(), "another client is not affected");
    }

    #[test]
    fn guesses_in_flight_count_before_they_are_judged() {
        let l = Limiter::new(5, 100, Duration::from_secs(60));
        let a = ip("10.0.0.1");
        let held: Vec<_> = (0..5).map(|_| l.reserve(a).unwrap()).collect();
        assert!(l.reserve(a).is_err(), "a sixth guess at once is refused");
        for attempt in held {
            attempt.succeed();
        }
        assert!(l.reserve(a).is_ok(), "a right guess clears the record");
    }

    #[test]
    fn all_clients_share_a_budget() {
        let l = Limiter::new(5, 8, Duration::from_secs(60));
        for i in 0..8 {
            drop(l.reserve(ip(&format!("10.0.1.{i}"))).unwrap());
        }
        assert!(l.reserve(ip("10.0.2.1")).is_err());
    }

    #[test]
    fn ipv6_clients_are_grouped_by_64_and_mapped_ipv4_is_ipv4() {
        assert_eq!(
            client_key(ip("2001:db8:1:2:aaaa::1")),
            client_key(ip("2001:db8:1:2:bbbb::9"))
        );
        assert_ne!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(client_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        let l = Limiter::new(1, 100, Duration::from_secs(60));
        drop(l.reserve(ip("2001:db8::1")).unwrap());
        assert!(l.reserve(ip("2001:db8::2")).is_err());
    }

    #[test]
    fn failures_expire_with_the_window() {
        let l = Limiter::new(2, 100, Duration::from_millis(100));
        let a = ip("10.0.0.1");
        drop(l.reserve(a).unwrap());
        drop(l.reserve(a).unwrap());
        assert!(l.reserve(a).is_err());
        std::thread::sleep(Duration::from_millis(120));
        assert!(l.reserve(a).is_ok());
    }
}
