//! The rules a whole configuration must keep: ranges, and what the prod profile refuses.

use secrecy::ExposeSecret;

use super::{check_issuer_url, redact_url, AdmissionMode, Config, Profile, StoreKind};

impl Config {
    /// Every problem of this configuration, one line each. Checks only; contacts nothing.
    /// [`Config::from_env`] runs it; a configuration built in code (tests) is trusted as built.
    pub fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if !(1..=3600).contains(&self.hold_ttl.as_secs()) {
            out.push("HOLD_TTL_SECONDS must be 1-3600".into());
        }
        if self.idempotency_ttl.is_zero() || self.idempotency_lease.is_zero() {
            out.push(
                "IDEMPOTENCY_TTL_SECONDS and IDEMPOTENCY_LEASE_SECONDS must be positive".into(),
            );
        }
        self.outbox.problems(&mut out);
        self.http.problems(&mut out);
        self.retention.problems(&mut out);
        self.cache.problems(&mut out);
        self.dynamodb.index_shards.problems(&mut out);
        if self.profile == Profile::Prod {
            self.prod_problems(&mut out);
        }
        if self.issuer.algorithms.is_empty() {
            out.push("JWT_ALGORITHMS must name at least one algorithm".into());
        }
        if !(1..=60_000).contains(&self.admission.timeout.as_millis()) {
            out.push("REDIS_TIMEOUT_MS must be 1-60000".into());
        }
        if let Some(issuer) = &self.jwt_issuer_uri {
            out.extend(check_issuer_url("JWT_ISSUER_URI", issuer).err());
        }
        if let Some(jwks) = &self.issuer.jwks_uri {
            out.extend(check_issuer_url("JWT_JWKS_URI", jwks).err());
        }
        if self.admission.mode == AdmissionMode::Redis {
            match self.admission.redis_url.as_ref().map(|u| u.expose_secret()) {
                None => {
                    out.push("ADMISSION_MODE=redis needs REDIS_URL (redis://host:port[/db])".into())
                }
                Some(u) if !u.starts_with("redis://") && !u.starts_with("rediss://") => {
                    out.push(format!(
                        "REDIS_URL={:?} must be redis://host:port[/db]",
                        redact_url(u)
                    ))
                }
                // What `serve` does with it, short of connecting (the client connects lazily).
                Some(u) => {
                    if let Err(e) = redis::Client::open(u) {
                        out.push(format!("REDIS_URL={:?}: {e}", redact_url(u)));
                    }
                }
            }
        }
        self.inventory_client.problems("INVENTORY", &mut out);
        self.payment_client.problems("PAYMENT", &mut out);
        out
    }

    /// What the prod profile refuses: what loses data, oversells, or trusts a development key.
    fn prod_problems(&self, out: &mut Vec<String>) {
        let mut bad = |p: &str| out.push(p.to_owned());
        if self.dynamodb.auto_create {
            bad("DYNAMODB_AUTO_CREATE is for local and dev; create prod tables with `reservation-api tables create`");
        }
        if self.jwt_dev_secret.is_some() {
            bad("the prod profile refuses the development JWT key: unset JWT_DEV_SECRET");
        }
        if self.jwt_issuer_uri.is_none() {
            bad("the prod profile needs JWT_ISSUER_URI (an OIDC issuer)");
        }
        if self.store == StoreKind::Memory {
            bad("the prod profile refuses STORE=memory: it loses every reservation on restart and is not shared across replicas; use STORE=dynamodb");
        }
        if self.inventory_grpc_address.is_none() || self.payment_grpc_address.is_none() {
            bad("the prod profile needs INVENTORY_GRPC_ADDRESS and PAYMENT_GRPC_ADDRESS: the bundled in-process inventory would oversell across replicas");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn problem(c: &Config) -> String {
        c.problems().join("; ")
    }

    #[test]
    fn prod_refuses_the_dev_key_and_needs_an_issuer() {
        let mut c = Config {
            profile: Profile::Prod,
            ..Config::default()
        };
        assert!(problem(&c).contains("JWT_ISSUER_URI"));
        c.jwt_issuer_uri = Some("https://issuer.example".into());
        c.jwt_dev_secret = Some("dev".into());
        assert!(problem(&c).contains("development JWT key"));
    }

    #[test]
    fn prod_refuses_memory_the_bundled_peers_and_a_remote_http_issuer() {
        let mut c = Config {
            profile: Profile::Prod,
            jwt_issuer_uri: Some("https://issuer.example".into()),
            ..Config::default()
        };
        assert!(problem(&c).contains("STORE=memory"));
        c.store = StoreKind::Dynamodb;
        assert!(problem(&c).contains("INVENTORY_GRPC_ADDRESS"));
        c.inventory_grpc_address = Some("inv:9090".into());
        assert!(problem(&c).contains("PAYMENT_GRPC_ADDRESS"));
        c.payment_grpc_address = Some("pay:9090".into());
        assert!(c.problems().is_empty(), "{}", problem(&c));
        c.jwt_issuer_uri = Some("http://issuer.example".into());
        assert!(problem(&c).contains("loopback"));
        for ok in ["http://127.0.0.1:8080/realms/x", "http://localhost:1"] {
            c.jwt_issuer_uri = Some(ok.into());
            assert!(c.problems().is_empty(), "{ok}");
        }
    }

    #[test]
    fn local_is_the_default_and_valid() {
        let c = Config::default();
        assert_eq!(c.profile, Profile::Local);
        assert_eq!(c.hold_ttl, Duration::from_secs(60));
        assert_eq!(c.store, StoreKind::Memory);
        assert!(c.problems().is_empty(), "{}", problem(&c));
        assert!("PROD".parse::<Profile>().is_ok());
        assert!("staging".parse::<Profile>().is_err());
    }

    #[test]
    fn a_hold_ttl_out_of_range_and_a_bad_grpc_client_are_each_one_line() {
        let mut c = Config {
            hold_ttl: Duration::ZERO,
            ..Config::default()
        };
        c.payment_client.timeout = Duration::ZERO;
        let p = c.problems();
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].starts_with("HOLD_TTL_SECONDS") && p[1].starts_with("PAYMENT_TIMEOUT_MS"));
    }
}
