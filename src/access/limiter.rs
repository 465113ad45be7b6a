//! Failed-guess limits per client address: a few tries a minute, then a wait.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Clients tracked at once; beyond this the quietest are forgotten (they had no recent
/// failures worth remembering anyway).
const MAX_CLIENTS: usize = 4096;

pub struct Limiter {
    max: usize,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl Limiter {
    pub fn new(max: usize, window: Duration) -> Self {
        Limiter {
            max,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds to wait)` when `client` has used up its failures for now.
    pub fn check(&self, client: IpAddr) -> Result<(), u64> {
        let mut map = self.lock();
        let now = Instant::now();
        let Some(list) = map.get_mut(&client) else {
            return Ok(());
        };
        while list
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            list.pop_front();
        }
        if list.len() < self.max {
            return Ok(());
        }
        let oldest = list.front().copied().unwrap_or(now);
        let wait = self.window.saturating_sub(now.duration_since(oldest));
        Err(wait.as_secs().max(1))
    }

    pub fn fail(&self, client: IpAddr) {
        let mut map = self.lock();
        if map.len() >= MAX_CLIENTS && !map.contains_key(&client) {
            let now = Instant::now();
            map.retain(|_, l| {
                l.back()
                    .is_some_and(|t| now.duration_since(*t) < self.window)
            });
        }
        let list = map.entry(client).or_default();
        list.push_back(Instant::now());
        while list.len() > self.max {
            list.pop_front();
        }
    }

    /// A success clears the client's record.
    pub fn succeed(&self, client: IpAddr) {
        self.lock().remove(&client);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, VecDeque<Instant>>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_then_a_wait_per_client() {
        let l = Limiter::new(5, Duration::from_secs(60));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..5 {
            assert!(l.check(a).is_ok());
            l.fail(a);
        }
        let wait = l.check(a).unwrap_err();
        assert!((1..=60).contains(&wait));
        assert!(l.check(b).is_ok(), "another client is not affected");
        l.succeed(a);
        assert!(l.check(a).is_ok());
    }

    #[test]
    fn failures_expire_with_the_window() {
        let l = Limiter::new(2, Duration::from_millis(100));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        l.fail(a);
        l.fail(a);
        assert!(l.check(a).is_err());
        std::thread::sleep(Duration::from_millis(120));
        assert!(l.check(a).is_ok());
    }
}
