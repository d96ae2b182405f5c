//! HS256 tokens with the development key: the same claim rules as issuer tokens ([`claims`]),
//! `sub` is the user.

use async_trait::async_trait;
use jsonwebtoken::{
    decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use serde::{Deserialize, Serialize};

use super::claims::{self, Verified};
use super::{AuthError, TokenVerifier};

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
}

pub const DEV_ISSUER: &str = "reservation-api-dev";

/// Built once at start-up: the key and the validation rules are reused for every request.
pub struct Hs256Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl Hs256Verifier {
    pub fn new(secret: &[u8]) -> Self {
        Self::with_leeway(secret, 60)
    }

    pub fn with_leeway(secret: &[u8], leeway_secs: u64) -> Self {
        Self {
            key: DecodingKey::from_secret(secret),
            validation: claims::validation(&[Algorithm::HS256], leeway_secs),
        }
    }

    /// Every check, without the trait's indirection (the authenticator caches the result).
    pub fn verify_token(&self, token: &str) -> Result<Verified, AuthError> {
        let header = decode_header(token).map_err(|e| claims::map_error(&e))?;
        claims::check_header(&header)?;
        let data = decode::<claims::Claims>(token, &self.key, &self.validation)
            .map_err(|e| claims::map_error(&e))?;
        claims::verified(data.claims)
    }
}

#[async_trait]
impl TokenVerifier for Hs256Verifier {
    async fn verify(&self, token: &str) -> Result<String, AuthError> {
        self.verify_token(token).map(|v| v.sub)
    }
}

/// A development token for `sub`, valid `ttl_secs` from now.
pub fn mint(secret: &[u8], sub: &str, ttl_secs: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = Claims {
        sub: sub.into(),
        exp: now + ttl_secs,
        iat: Some(now),
        iss: Some(DEV_ISSUER.into()),
    };
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("HS256 encoding")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_minted_token_verifies_to_its_subject() {
        let v = Hs256Verifier::new(b"secret");
        assert_eq!(
            v.verify(&mint(b"secret", "u123", 3600)).await,
            Ok("u123".into())
        );
    }

    #[tokio::test]
    async fn wrong_key_expired_and_garbage_are_refused() {
        let v = Hs256Verifier::new(b"secret");
        assert_eq!(
            v.verify(&mint(b"other", "u1", 3600)).await,
            Err(AuthError::Invalid)
        );
        assert_eq!(
            v.verify(&mint(b"secret", "u1", -120)).await,
            Err(AuthError::Expired)
        );
        // Within the 60 s leeway an expired token still passes.
        assert!(v.verify(&mint(b"secret", "u1", -30)).await.is_ok());
        assert_eq!(v.verify("not.a.jwt").await, Err(AuthError::Invalid));
    }

    #[tokio::test]
    async fn a_token_without_exp_is_refused() {
        #[derive(Serialize)]
        struct NoExp {
            sub: String,
        }
        let t = encode(
            &Header::new(Algorithm::HS256),
            &NoExp { sub: "u".into() },
            &EncodingKey::from_secret(b"s"),
        )
        .unwrap();
        assert!(Hs256Verifier::new(b"s").verify(&t).await.is_err());
    }
}
