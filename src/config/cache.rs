//! The optional Redis read-through cache (`CACHE_…`; see `crate::cache`).

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::env::{millis, secret, secs};
use super::redact_url;

#[derive(Clone, Debug, clap::Args)]
pub struct CacheSettings {
    /// `redis://host:port[/db]`; unset: no cache. A secret, since it may carry a password.
    #[arg(id = "CACHE_REDIS_URL", env = "CACHE_REDIS_URL", value_parser = secret, hide_env_values = true)]
    pub redis_url: Option<SecretString>,
    /// The deadline of one cache call (connecting included): past it the store answers.
    #[arg(id = "CACHE_TIMEOUT_MS", env = "CACHE_TIMEOUT_MS", default_value = "30", value_parser = millis)]
    pub timeout: Duration,
    /// How long a cached reservation lives: the bound on staleness when Redis failed a writer.
    #[arg(id = "CACHE_TTL_SECONDS", env = "CACHE_TTL_SECONDS", default_value = "30", value_parser = secs)]
    pub ttl: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        super::env::defaults()
    }
}

impl CacheSettings {
    pub fn problems(&self, out: &mut Vec<String>) {
        if !(1..=1000).contains(&self.timeout.as_millis()) {
            out.push("CACHE_TIMEOUT_MS must be 1-1000".into());
        }
        if !(1..=3600).contains(&self.ttl.as_secs()) {
            out.push("CACHE_TTL_SECONDS must be 1-3600".into());
        }
        let Some(u) = self.redis_url.as_ref().map(|u| u.expose_secret()) else {
            return;
        };
        if !u.starts_with("redis://") && !u.starts_with("rediss://") {
            out.push(format!(
                "CACHE_REDIS_URL={:?} must be redis://host:port[/db]",
                redact_url(u)
            ));
        } else if let Err(e) = redis::Client::open(u) {
            out.push(format!("CACHE_REDIS_URL={:?}: {e}", redact_url(u)));
        }
    }

    /// The `config check` lines.
    pub fn describe(&self) -> [String; 3] {
        [
            format!(
                "CACHE_REDIS_URL={}",
                self.redis_url
                    .as_ref()
                    .map_or("(unset: off)".into(), |u| redact_url(u.expose_secret()))
            ),
            format!("CACHE_TIMEOUT_MS={}", self.timeout.as_millis()),
            format!("CACHE_TTL_SECONDS={}", self.ttl.as_secs()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_a_url_must_be_redis() {
        let mut c = CacheSettings::default();
        assert!(c.redis_url.is_none());
        let mut out = Vec::new();
        c.problems(&mut out);
        assert!(out.is_empty(), "{out:?}");
        c.redis_url = Some("http://admin:hunter2@cache:6379".into());
        c.timeout = Duration::ZERO;
        c.problems(&mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out.iter().all(|p| !p.contains("hunter2")), "{out:?}");
        assert!(c.describe()[0].starts_with("CACHE_REDIS_URL=http://"));
    }
}
