//! Verified tokens, remembered so that the steady-state cost of authentication is a hash and a
//! lookup instead of a signature check. Keyed by the token's SHA-256; an entry lives until the
//! token's `exp`, at most [`MAX_TTL`]; at most `capacity` entries.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Keys rotate and users get blocked: a verified token is trusted from memory this long at most.
pub const MAX_TTL: Duration = Duration::from_secs(300);

pub struct VerifiedTokens {
    entries: Mutex<HashMap<[u8; 32], (String, Instant)>>,
    capacity: usize,
}

impl VerifiedTokens {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::with_capacity(capacity.min(1024))),
            capacity,
        }
    }

    pub fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// The user of a token verified before and not yet expired.
    pub fn get(&self, key: &[u8; 32]) -> Option<String> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(sub, _)| sub.clone())
    }

    /// Remember `sub` for a token expiring at `exp` (unix seconds).
    pub fn put(&self, key: [u8; 32], sub: &str, exp: i64) {
        let left = exp - chrono::Utc::now().timestamp();
        if left <= 0 {
            return;
        }
        let until = Instant::now() + Duration::from_secs(left as u64).min(MAX_TTL);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity {
            let now = Instant::now();
            entries.retain(|_, (_, u)| *u > now);
            // Still full of live entries: forget them all rather than grow (a re-verify is cheap
            // next to unbounded memory, and the map refills with the tokens in use).
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (sub.to_owned(), until));
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_with_the_token_and_the_map_stays_bounded() {
        let c = VerifiedTokens::new(3);
        let now = chrono::Utc::now().timestamp();
        c.put(VerifiedTokens::key("a"), "u", now + 3600);
        assert_eq!(c.get(&VerifiedTokens::key("a")).as_deref(), Some("u"));
        c.put(VerifiedTokens::key("old"), "u", now - 1);
        assert_eq!(c.get(&VerifiedTokens::key("old")), None);
        for i in 0..10 {
            c.put(VerifiedTokens::key(&i.to_string()), "u", now + 3600);
            assert!(c.len() <= 3);
        }
    }
}
