//! Admin sessions: random tokens held in memory, ended by idle time or logout.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;

/// At most this many sessions are kept; the least recently used goes first.
const MAX_SESSIONS: usize = 64;

pub struct Sessions {
    idle: Duration,
    map: Mutex<HashMap<String, Instant>>,
}

impl Sessions {
    pub fn new(idle: Duration) -> Self {
        Sessions {
            idle,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// A new session token: 256 random bits, URL-safe.
    pub fn create(&self) -> String {
        let mut bytes = [0u8; 32];
        // The OS random source does not fail on Linux; a zero token would be refused below.
        let _ = getrandom::fill(&mut bytes);
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let mut map = self.lock();
        let now = Instant::now();
        map.retain(|_, seen| now.duration_since(*seen) < self.idle);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, seen)| **seen)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(token.clone(), now);
        token
    }

    /// Whether `token` is a live session; using it keeps it alive.
    pub fn touch(&self, token: &str) -> bool {
        let mut map = self.lock();
        let now = Instant::now();
        match map.get_mut(token) {
            Some(seen) if now.duration_since(*seen) < self.idle => {
                *seen = now;
                true
            }
            Some(_) => {
                map.remove(token);
                false
            }
            None => false,
        }
    }

    pub fn end(&self, token: &str) {
        self.lock().remove(token);
    }

    /// Ends every session (after a password change).
    pub fn end_all(&self) {
        self.lock().clear();
    }

    pub fn idle(&self) -> Duration {
        self.idle
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_live_until_idle_or_ended() {
        let s = Sessions::new(Duration::from_millis(200));
        let a = s.create();
        assert_eq!(a.len(), 43);
        assert!(s.touch(&a));
        assert!(!s.touch("forged"));
        std::thread::sleep(Duration::from_millis(250));
        assert!(!s.touch(&a), "idle too long");
        let b = s.create();
        s.end(&b);
        assert!(!s.touch(&b));
        let c = s.create();
        s.end_all();
        assert!(!s.touch(&c));
    }

    #[test]
    fn the_number_of_sessions_is_bounded() {
        let s = Sessions::new(Duration::from_secs(60));
        let first = s.create();
        for _ in 0..MAX_SESSIONS {
            s.create();
        }
        assert!(!s.touch(&first), "the oldest made room");
        assert!(s.lock().len() <= MAX_SESSIONS);
    }
}
