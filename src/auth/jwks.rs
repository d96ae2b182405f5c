//! The issuer's signing keys: found by OIDC discovery (or at `JWT_JWKS_URI`), kept in memory,
//! refreshed in the background, and refetched when a token names a key we do not know — at most
//! once per [`JwksSettings::min_refetch_interval`], one fetch shared by every waiting request, so
//! that a storm of forged `kid`s cannot hammer the issuer. A failed fetch keeps the keys we have.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt, Shared};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::AuthError;

/// A JWKS or discovery document larger than this is refused.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

#[derive(Clone, Debug)]
pub struct JwksSettings {
    pub issuer: String,
    /// Skip discovery and fetch the keys here.
    pub jwks_uri: Option<String>,
    /// Deadline of one HTTP fetch.
    pub fetch_timeout: Duration,
    /// At most one fetch for unknown `kid`s per this interval.
    pub min_refetch_interval: Duration,
    /// Background refresh when the issuer sends no `Cache-Control: max-age`.
    pub default_refresh: Duration,
}

impl JwksSettings {
    pub fn new(issuer: &str, jwks_uri: Option<&str>) -> Self {
        Self {
            issuer: issuer.to_owned(),
            jwks_uri: jwks_uri.map(str::to_owned),
            fetch_timeout: Duration::from_secs(5),
            min_refetch_interval: Duration::from_secs(10),
            default_refresh: Duration::from_secs(300),
        }
    }
}

/// One published key, ready to verify with.
pub struct PublishedKey {
    pub decoding: DecodingKey,
    /// The key's `alg`, when the issuer published one: a token must then use exactly it.
    pub alg: Option<Algorithm>,
}

type Fetch = Shared<BoxFuture<'static, Option<Duration>>>;

#[derive(Default)]
struct Refetch {
    last_started: Option<Instant>,
    in_flight: Option<Fetch>,
}

pub struct JwksKeys {
    settings: JwksSettings,
    http: reqwest::Client,
    keys: RwLock<Arc<HashMap<String, Arc<PublishedKey>>>>,
    loaded: AtomicBool,
    /// From discovery, once it succeeded (or `JWT_JWKS_URI`).
    jwks_uri: Mutex<Option<String>>,
    refetch: Mutex<Refetch>,
    stop: CancellationToken,
    /// The refresh task, until the application takes it to watch.
    refresh: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[derive(Deserialize)]
struct Discovery {
    jwks_uri: String,
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

impl JwksKeys {
    pub fn new(settings: JwksSettings) -> Result<Arc<Self>, String> {
        let http = reqwest::Client::builder()
            .timeout(settings.fetch_timeout)
            .connect_timeout(settings.fetch_timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| format!("JWKS HTTP client: {e}"))?;
        Ok(Arc::new(Self {
            jwks_uri: Mutex::new(settings.jwks_uri.clone()),
            settings,
            http,
            keys: RwLock::new(Arc::new(HashMap::new())),
            loaded: AtomicBool::new(false),
            refetch: Mutex::new(Refetch::default()),
            stop: CancellationToken::new(),
            refresh: Mutex::new(None),
        }))
    }

    /// Keys were loaded at least once (readiness).
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    pub fn lookup(&self, kid: &str) -> Option<Arc<PublishedKey>> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner()).clone();
        keys.get(kid).cloned()
    }

    /// The key named `kid`; an unknown one triggers a (rate-limited, shared) refetch first.
    pub async fn key_for(self: &Arc<Self>, kid: &str) -> Result<Arc<PublishedKey>, AuthError> {
        if let Some(k) = self.lookup(kid) {
            return Ok(k);
        }
        if let Some(fetch) = self.start_fetch(true) {
            fetch.await;
        }
        self.lookup(kid).ok_or(if self.is_loaded() {
            AuthError::UnknownKey
        } else {
            AuthError::KeysUnavailable
        })
    }

    /// Join the fetch in flight, or start one. `rate_limited`: not if one started within the
    /// minimum interval (the background refresh is not rate-limited, it sets its own pace).
    fn start_fetch(self: &Arc<Self>, rate_limited: bool) -> Option<Fetch> {
        let mut r = self.refetch.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = &r.in_flight {
            if f.peek().is_none() {
                return Some(f.clone());
            }
        }
        if rate_limited
            && r.last_started
                .is_some_and(|t| t.elapsed() < self.settings.min_refetch_interval)
        {
            return None;
        }
        r.last_started = Some(Instant::now());
        let this = self.clone();
        // Spawned, so that a request that gives up does not cancel the fetch others wait for.
        let task = tokio::spawn(async move { this.fetch().await });
        let fetch = async move { task.await.ok().flatten() }.boxed().shared();
        r.in_flight = Some(fetch.clone());
        Some(fetch)
    }

    /// One fetch; `Some(max-age)` on success. Failures keep the keys we have.
    async fn fetch(&self) -> Option<Duration> {
        match self.try_fetch().await {
            Ok((count, max_age)) => {
                metrics::counter!("jwks_refresh_total", "result" => "ok").increment(1);
                tracing::info!(keys = count, "loaded the issuer's signing keys");
                Some(max_age.unwrap_or(self.settings.default_refresh))
            }
            Err(e) => {
                metrics::counter!("jwks_refresh_total", "result" => "error").increment(1);
                tracing::warn!(error = %e, "could not fetch the issuer's signing keys; keeping the known ones");
                None
            }
        }
    }

    async fn try_fetch(&self) -> Result<(usize, Option<Duration>), String> {
        let uri = match self.known_jwks_uri() {
            Some(u) => u,
            None => self.discover().await?,
        };
        let (body, max_age) = self.get(&uri).await?;
        let keys = parse_keys(&body)?;
        let count = keys.len();
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        self.loaded.store(true, Ordering::Release);
        Ok((count, max_age))
    }

    fn known_jwks_uri(&self) -> Option<String> {
        self.jwks_uri
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn discover(&self) -> Result<String, String> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.settings.issuer.trim_end_matches('/')
        );
        let (body, _) = self.get(&url).await?;
        let d: Discovery =
            serde_json::from_slice(&body).map_err(|e| format!("discovery document: {e}"))?;
        crate::config::check_issuer_url("jwks_uri", &d.jwks_uri)?;
        *self.jwks_uri.lock().unwrap_or_else(|e| e.into_inner()) = Some(d.jwks_uri.clone());
        Ok(d.jwks_uri)
    }

    async fn get(&self, url: &str) -> Result<(Vec<u8>, Option<Duration>), String> {
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("GET {url}: {e}"))?;
        let max_age = max_age(resp.headers());
        if resp
            .content_length()
            .is_some_and(|n| n as usize > MAX_DOCUMENT_BYTES)
        {
            return Err(format!("GET {url}: the document is over 1 MiB"));
        }
        let body = resp.bytes().await.map_err(|e| format!("GET {url}: {e}"))?;
        if body.len() > MAX_DOCUMENT_BYTES {
            return Err(format!("GET {url}: the document is over 1 MiB"));
        }
        Ok((body.to_vec(), max_age))
    }

    /// Refresh in the background until [`JwksKeys::stop`]: at the issuer's `max-age` (10 s to
    /// 24 h), else every 5 minutes; while no key was ever loaded, retry from 1 s backing off to 30 s.
    pub fn spawn_refresh(self: &Arc<Self>) {
        let weak: Weak<Self> = Arc::downgrade(self);
        let stop = self.stop.clone();
        let task = tokio::spawn(async move {
            let mut retry = Duration::from_secs(1);
            loop {
                let Some(this) = weak.upgrade() else { return };
                let fetch = this.start_fetch(false);
                let loaded = this.is_loaded();
                drop(this);
                let outcome = match fetch {
                    // Shutdown does not wait for a fetch (up to its timeout).
                    Some(f) => tokio::select! {
                        _ = stop.cancelled() => return,
                        o = f => o,
                    },
                    None => None,
                };
                let wait = match outcome {
                    Some(max_age) => {
                        retry = Duration::from_secs(1);
                        max_age.clamp(Duration::from_secs(10), Duration::from_secs(86_400))
                    }
                    None if !loaded => {
                        let w = retry;
                        retry = (retry * 2).min(Duration::from_secs(30));
                        w
                    }
                    None => Duration::from_secs(30),
                };
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        });
        *self.refresh.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
    }

    /// The refresh task of [`Self::spawn_refresh`], for the application to watch (once).
    pub fn take_refresh(&self) -> Option<tokio::task::JoinHandle<()>> {
        self.refresh
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }
}

/// `Cache-Control: max-age=N`.
fn max_age(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = h.get(reqwest::header::CACHE_CONTROL)?.to_str().ok()?;
    v.split(',')
        .filter_map(|d| d.trim().strip_prefix("max-age="))
        .find_map(|n| n.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// The usable keys of a JWKS by `kid`. A key we cannot use (no `kid`, symmetric, encryption-only,
/// an unknown type) is skipped rather than failing the whole set.
fn parse_keys(body: &[u8]) -> Result<HashMap<String, Arc<PublishedKey>>, String> {
    let set: RawSet = serde_json::from_slice(body).map_err(|e| format!("JWKS: {e}"))?;
    let mut keys = HashMap::new();
    for raw in set.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(raw) else {
            continue;
        };
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        if matches!(
            jwk.common.public_key_use,
            Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
        ) {
            continue;
        }
        let Ok(decoding) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        // An HMAC key in a JWKS would let anyone who read the JWKS sign tokens.
        if decoding.family() == jsonwebtoken::AlgorithmFamily::Hmac {
            continue;
        }
        let alg = jwk
            .common
            .key_algorithm
            .and_then(|a| Algorithm::try_from(a).ok());
        keys.insert(kid, Arc::new(PublishedKey { decoding, alg }));
    }
    if keys.is_empty() {
        return Err("JWKS: no usable signing key".into());
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(max_age(&h), None);
        h.insert("cache-control", "public, max-age=120".parse().unwrap());
        assert_eq!(max_age(&h), Some(Duration::from_secs(120)));
    }

    #[test]
    fn symmetric_and_kidless_keys_are_skipped() {
        let body = br#"{"keys":[
            {"kty":"oct","kid":"h","k":"c2VjcmV0"},
            {"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty":"weird","kid":"w"}
        ]}"#;
        assert!(parse_keys(body).is_err());
        let body = br#"{"keys":[
            {"kty":"oct","kid":"h","k":"c2VjcmV0"},
            {"kty":"EC","kid":"e","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
        ]}"#;
        let keys = parse_keys(body).unwrap();
        assert_eq!(keys.keys().collect::<Vec<_>>(), vec!["e"]);
    }
}
