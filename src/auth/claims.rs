//! The header and claim rules every token passes, whoever signed it (the development key or the
//! issuer): `exp` required, `nbf` honoured, no `crit` header we do not understand (RFC 7515 §4.1.11
//! — we understand none), and a `sub` that can safely be a user id.

use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::Deserialize;

use super::AuthError;

/// The longest `sub` accepted: it becomes a key prefix and a stored user id.
pub const MAX_SUB_CHARS: usize = 255;

/// The claims read after `jsonwebtoken` has checked `exp`, `nbf`, `iss` and `aud`.
#[derive(Debug, Deserialize)]
pub struct Claims {
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default)]
    pub exp: Option<f64>,
}

/// A token that passed every check: its user and when it expires (unix seconds).
#[derive(Clone, Debug, PartialEq)]
pub struct Verified {
    pub sub: String,
    pub exp: i64,
}

/// Shared validation: the algorithms given, `exp` required, `nbf` honoured, with `leeway`
/// seconds of clock skew. The caller adds `iss` and `aud`.
pub fn validation(algorithms: &[Algorithm], leeway: u64) -> Validation {
    let mut v = Validation::new(algorithms.first().copied().unwrap_or(Algorithm::RS256));
    v.algorithms = algorithms.to_vec();
    v.leeway = leeway;
    v.validate_nbf = true;
    v.set_required_spec_claims(&["exp"]);
    // Checked only when an audience is configured (`with_audience`).
    v.validate_aud = false;
    v
}

/// Require `iss` to equal `issuer` and, when given, `aud` to contain `audience`.
pub fn with_issuer_and_audience(v: &mut Validation, issuer: &str, audience: Option<&str>) {
    v.set_issuer(&[issuer]);
    let mut required = vec!["exp", "iss"];
    if let Some(aud) = audience {
        v.set_audience(&[aud]);
        v.validate_aud = true;
        required.push("aud");
    }
    v.set_required_spec_claims(&required);
}

/// The header rules: an unknown critical extension means we cannot know how to verify it.
pub fn check_header(h: &Header) -> Result<(), AuthError> {
    if h.crit.is_some() {
        return Err(AuthError::Claim(
            "the token has a critical header extension (crit) this service does not understand",
        ));
    }
    Ok(())
}

/// The user id rules: present, not blank, at most 255 characters, no control characters.
pub fn check_subject(sub: Option<&str>) -> Result<(), AuthError> {
    let Some(sub) = sub else {
        return Err(AuthError::Claim("the token has no sub"));
    };
    if sub.trim().is_empty() {
        return Err(AuthError::Claim("the token's sub is blank"));
    }
    if sub.chars().count() > MAX_SUB_CHARS {
        return Err(AuthError::Claim("the token's sub is over 255 characters"));
    }
    if sub.chars().any(char::is_control) {
        return Err(AuthError::Claim("the token's sub has control characters"));
    }
    Ok(())
}

/// The verified claims, once the subject passes its rules.
pub fn verified(claims: Claims) -> Result<Verified, AuthError> {
    check_subject(claims.sub.as_deref())?;
    Ok(Verified {
        sub: claims.sub.unwrap_or_default(),
        exp: claims.exp.unwrap_or_default() as i64,
    })
}

/// `jsonwebtoken`'s error as ours; anything unexpected is just "invalid" (never a 500).
pub fn map_error(e: &Error) -> AuthError {
    match e.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::MissingRequiredClaim(c) if c == "aud" => AuthError::WrongAudience,
        ErrorKind::MissingRequiredClaim(c) if c == "iss" => AuthError::WrongIssuer,
        ErrorKind::MissingRequiredClaim(_) => AuthError::Claim("the token lacks a required claim"),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => AuthError::Algorithm,
        _ => AuthError::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_rules() {
        assert!(check_subject(Some("u-1")).is_ok());
        assert!(check_subject(Some(&"é".repeat(255))).is_ok());
        for bad in [None, Some(""), Some("   "), Some("a\0b"), Some("a\nb")] {
            assert!(check_subject(bad).is_err(), "{bad:?}");
        }
        assert!(check_subject(Some(&"x".repeat(256))).is_err());
        assert!(check_subject(Some(&"x".repeat(10_000))).is_err());
    }

    #[test]
    fn a_crit_header_is_refused() {
        let mut h = Header::new(Algorithm::RS256);
        assert!(check_header(&h).is_ok());
        h.crit = Some(vec!["exp".into()]);
        assert!(check_header(&h).is_err());
    }
}
