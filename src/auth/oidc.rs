//! Tokens from the platform's OIDC issuer: signed by a key the issuer publishes (matched by
//! `kid`), with an accepted asymmetric algorithm, `iss` equal to the issuer, `aud` containing
//! `JWT_AUDIENCE` when set, and the shared claim rules.

use std::sync::Arc;

use jsonwebtoken::{decode, Algorithm, Header, Validation};

use super::claims::{self, Verified};
use super::jwks::JwksKeys;
use super::AuthError;

pub struct OidcVerifier {
    keys: Arc<JwksKeys>,
    /// One validation per accepted algorithm: `jsonwebtoken` requires every algorithm of a
    /// validation to match the key's family, so RS256 and ES256 cannot share one.
    validations: Vec<(Algorithm, Validation)>,
}

impl OidcVerifier {
    /// `algorithms` must be asymmetric (the configuration refuses HS* and `none`).
    pub fn new(
        keys: Arc<JwksKeys>,
        issuer: &str,
        audience: Option<&str>,
        algorithms: &[Algorithm],
        leeway_secs: u64,
    ) -> Self {
        let validations = algorithms
            .iter()
            .map(|alg| {
                let mut v = claims::validation(&[*alg], leeway_secs);
                claims::with_issuer_and_audience(&mut v, issuer, audience);
                (*alg, v)
            })
            .collect();
        Self { keys, validations }
    }

    pub fn keys(&self) -> &Arc<JwksKeys> {
        &self.keys
    }

    /// Every check of a token whose header was already decoded and checked.
    pub async fn verify_token(&self, token: &str, header: &Header) -> Result<Verified, AuthError> {
        let Some((_, validation)) = self.validations.iter().find(|(a, _)| *a == header.alg) else {
            return Err(AuthError::Algorithm);
        };
        let kid = header
            .kid
            .as_deref()
            .ok_or(AuthError::Claim("the token has no kid"))?;
        let key = self.keys.key_for(kid).await?;
        if key.alg.is_some_and(|a| a != header.alg) {
            return Err(AuthError::Algorithm);
        }
        let data = decode::<claims::Claims>(token, &key.decoding, validation)
            .map_err(|e| claims::map_error(&e))?;
        claims::verified(data.claims)
    }
}
