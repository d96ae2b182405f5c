//! The verifier the HTTP layer uses: a cache of verified tokens in front of the development-key
//! verifier (HS256, `local`/`dev` only) and the OIDC verifier (asymmetric algorithms). The token's
//! `alg` picks the verifier; the other one never sees it.

use std::sync::Arc;

use async_trait::async_trait;
use jsonwebtoken::{decode_header, Algorithm};

use super::cache::VerifiedTokens;
use super::claims::{self, Verified};
use super::jwks::JwksKeys;
use super::jwt::Hs256Verifier;
use super::oidc::OidcVerifier;
use super::{AuthError, TokenVerifier};

/// Verified tokens remembered at most (about 150 bytes each).
pub const CACHE_CAPACITY: usize = 50_000;

pub struct Authenticator {
    dev: Option<Hs256Verifier>,
    oidc: Option<OidcVerifier>,
    cache: VerifiedTokens,
}

impl Authenticator {
    pub fn new(dev: Option<Hs256Verifier>, oidc: Option<OidcVerifier>) -> Self {
        Self {
            dev,
            oidc,
            cache: VerifiedTokens::new(CACHE_CAPACITY),
        }
    }

    /// The issuer's key cache, when issuer tokens are accepted (readiness reports it).
    pub fn jwks(&self) -> Option<Arc<JwksKeys>> {
        self.oidc.as_ref().map(|o| o.keys().clone())
    }

    /// Every check, bypassing the cache (the benchmark's cold path).
    pub async fn verify_uncached(&self, token: &str) -> Result<Verified, AuthError> {
        let header = decode_header(token).map_err(|e| claims::map_error(&e))?;
        claims::check_header(&header)?;
        match (header.alg, &self.dev, &self.oidc) {
            (Algorithm::HS256, Some(dev), _) => dev.verify_token(token),
            (Algorithm::HS256, None, _) => Err(AuthError::Algorithm),
            (_, _, Some(oidc)) => oidc.verify_token(token, &header).await,
            (_, _, None) => Err(AuthError::Algorithm),
        }
    }
}

#[async_trait]
impl TokenVerifier for Authenticator {
    async fn verify(&self, token: &str) -> Result<String, AuthError> {
        let key = VerifiedTokens::key(token);
        if let Some(sub) = self.cache.get(&key) {
            return Ok(sub);
        }
        let v = self.verify_uncached(token).await?;
        self.cache.put(key, &v.sub, v.exp);
        Ok(v.sub)
    }
}
