//! Who is calling: a bearer JWT whose `sub` is the user.
//!
//! [`TokenVerifier`] is the seam. [`Authenticator`] puts the development HS256 verifier
//! ([`jwt`]) and the OIDC/JWKS verifier ([`oidc`]) behind one cache of verified tokens; both apply
//! the same claim rules ([`claims`]). [`admission`] checks the waiting room's admission tokens.

pub mod admission;
pub mod authenticator;
pub mod cache;
pub mod claims;
pub mod dev_key;
pub mod jwks;
pub mod jwt;
pub mod oidc;

use async_trait::async_trait;

pub use authenticator::Authenticator;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("the token is expired")]
    Expired,
    #[error("the token is invalid")]
    Invalid,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token was not issued by the configured issuer")]
    WrongIssuer,
    #[error("the token is not meant for this audience")]
    WrongAudience,
    /// A claim or header rule: the message says which.
    #[error("{0}")]
    Claim(&'static str),
    #[error("the token's algorithm is not accepted")]
    Algorithm,
    #[error("the token's signing key is not published by the issuer")]
    UnknownKey,
    /// The issuer's keys were never loaded (it has been unreachable since start): not the token's fault.
    #[error("the issuer's signing keys are not available yet")]
    KeysUnavailable,
}

impl AuthError {
    /// The `reason` label of `auth_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Expired => "expired",
            Self::Invalid => "invalid",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongIssuer => "issuer",
            Self::WrongAudience => "audience",
            Self::Claim(_) => "claims",
            Self::Algorithm => "algorithm",
            Self::UnknownKey => "unknown_kid",
            Self::KeysUnavailable => "keys_unavailable",
        }
    }
}

#[async_trait]
pub trait TokenVerifier: Send + Sync + 'static {
    /// The user (`sub`) of a valid token.
    async fn verify(&self, token: &str) -> Result<String, AuthError>;
}
