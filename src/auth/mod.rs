//! Who is calling: a bearer JWT whose `sub` is the user.
//!
//! [`TokenVerifier`] is the seam: the development HS256 verifier today; an OIDC/JWKS verifier
//! slots in beside it.

pub mod dev_key;
pub mod jwt;

use async_trait::async_trait;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("the token is expired")]
    Expired,
    #[error("the token is invalid")]
    Invalid,
}

#[async_trait]
pub trait TokenVerifier: Send + Sync + 'static {
    /// The user (`sub`) of a valid token.
    async fn verify(&self, token: &str) -> Result<String, AuthError>;
}
