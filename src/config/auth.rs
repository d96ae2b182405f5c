//! Who may call: the OIDC issuer (`JWT_…`), the waiting room's admission (`ADMISSION_MODE`,
//! `REDIS_…`) and the rate limits (`RATE_LIMIT_…`).

use std::time::Duration;

use jsonwebtoken::Algorithm;
use secrecy::SecretString;

use super::env::secs;
use super::AdmissionMode;

/// The OIDC issuer's tokens (`JWT_…`).
#[derive(Clone, Debug, PartialEq, clap::Args)]
pub struct IssuerSettings {
    /// The keys' address; unset: found by OIDC discovery.
    #[arg(id = "JWT_JWKS_URI", env = "JWT_JWKS_URI")]
    pub jwks_uri: Option<String>,
    /// When set, the token's `aud` must contain it.
    #[arg(id = "JWT_AUDIENCE", env = "JWT_AUDIENCE")]
    pub audience: Option<String>,
    /// Accepted signing algorithms, asymmetric only. (The full path keeps clap from reading the
    /// `Vec` as a repeated argument: the variable is one comma-separated list.)
    #[arg(id = "JWT_ALGORITHMS", env = "JWT_ALGORITHMS", default_value = "RS256,ES256", value_parser = parse_algorithms)]
    pub algorithms: ::std::vec::Vec<Algorithm>,
    /// Clock skew allowed on `exp` and `nbf` (development tokens too).
    #[arg(id = "JWT_LEEWAY_SECONDS", env = "JWT_LEEWAY_SECONDS", default_value = "60", value_parser = secs)]
    pub leeway: Duration,
}

impl Default for IssuerSettings {
    fn default() -> Self {
        super::env::defaults()
    }
}

#[derive(Clone, Debug)]
pub struct AdmissionSettings {
    /// `ADMISSION_MODE`: `off` by default in local and dev, `redis` in prod.
    pub mode: AdmissionMode,
    /// `REDIS_URL`: `redis://host:port[/db]`; a secret, since it may carry a password.
    pub redis_url: Option<SecretString>,
    /// `REDIS_TIMEOUT_MS`: the deadline of one Redis call (connecting included).
    pub timeout: Duration,
}

/// Token buckets, per replica (`RATE_LIMIT_…`; 0 turns one off).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// `RATE_LIMIT_USER_RPS`: requests a second per user (`sub`).
    pub user_rps: u32,
    /// `RATE_LIMIT_USER_BURST`: the user's bucket size (0: equal to the rate).
    pub user_burst: u32,
    /// `RATE_LIMIT_GLOBAL_RPS`: requests a second for the whole replica (its burst is one second's worth).
    pub global_rps: u32,
}

/// `JWT_ALGORITHMS`: a comma-separated list of asymmetric JWS algorithms.
pub fn parse_algorithms(v: &str) -> Result<Vec<Algorithm>, String> {
    let mut algs = Vec::new();
    for name in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let alg: Algorithm = name
            .parse()
            .map_err(|_| format!("JWT_ALGORITHMS: unknown algorithm {name:?}"))?;
        if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
            return Err(format!(
                "JWT_ALGORITHMS: {name} is symmetric; issuer tokens must be signed with a published public key"
            ));
        }
        if !algs.contains(&alg) {
            algs.push(alg);
        }
    }
    if algs.is_empty() {
        return Err("JWT_ALGORITHMS must name at least one algorithm".into());
    }
    Ok(algs)
}

/// An issuer or JWKS address: `https://`, or `http://` to a loopback host only.
pub fn check_issuer_url(name: &str, url: &str) -> Result<(), String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("{name}={url:?}: {e}"))?;
    let loopback = matches!(u.host(), Some(url::Host::Domain("localhost")))
        || matches!(u.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
        || matches!(u.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback());
    match u.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(format!(
            "{name}={url:?}: an http:// issuer is allowed only on loopback (127.0.0.1, localhost); use https://"
        )),
        other => Err(format!("{name}={url:?}: scheme {other:?} is not https")),
    }
}

/// `url` with its password (and a user name) replaced, for printing.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() || !u.username().is_empty() => {
            let _ = u.set_username("redacted");
            let _ = u.set_password(Some("redacted"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "(unparsable, redacted)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_algorithms_are_asymmetric_only() {
        assert_eq!(
            parse_algorithms("RS256, ES256,RS256").unwrap(),
            vec![Algorithm::RS256, Algorithm::ES256]
        );
        assert!(parse_algorithms("HS256").unwrap_err().contains("symmetric"));
        assert!(parse_algorithms("none").is_err());
        assert!(parse_algorithms(" , ").is_err());
        assert_eq!(
            IssuerSettings::default().algorithms,
            vec![Algorithm::RS256, Algorithm::ES256]
        );
    }

    #[test]
    fn a_url_is_printed_without_its_credentials() {
        let r = redact_url("redis://admin:hunter2@redis:6379/0");
        assert!(!r.contains("hunter2") && !r.contains("admin"), "{r}");
        assert_eq!(redact_url("redis://redis:6379"), "redis://redis:6379");
    }
}
