//! Token verification, cold (header, signature, claims) against cached (a SHA-256 and a lookup),
//! with keys from a real JWKS served on loopback (the API tests' issuer).
//!
//! `./run_local.sh bench auth` (or `cargo bench --bench auth`).

#[allow(dead_code)]
#[path = "../tests/api/issuer.rs"]
mod issuer;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use reservation_api::auth::jwks::{JwksKeys, JwksSettings};
use reservation_api::auth::oidc::OidcVerifier;
use reservation_api::auth::{Authenticator, TokenVerifier};

fn verification(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (issuer, auth) = rt.block_on(async {
        let issuer = issuer::Issuer::start().await;
        let keys = JwksKeys::new(JwksSettings::new(&issuer.url, None)).unwrap();
        keys.spawn_refresh();
        while !keys.is_loaded() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let algs = [
            jsonwebtoken::Algorithm::RS256,
            jsonwebtoken::Algorithm::ES256,
        ];
        let oidc = OidcVerifier::new(keys, &issuer.url, Some(issuer::AUDIENCE), &algs, 60);
        (issuer, Authenticator::new(None, Some(oidc)))
    });
    let rs = issuer.token(&issuer.rsa, "fan");
    let es = issuer.token(&issuer.ec, "fan");
    c.bench_function("verify RS256 cold (signature + claims)", |b| {
        b.iter(|| rt.block_on(auth.verify_uncached(&rs)).unwrap())
    });
    c.bench_function("verify ES256 cold (signature + claims)", |b| {
        b.iter(|| rt.block_on(auth.verify_uncached(&es)).unwrap())
    });
    rt.block_on(auth.verify(&rs)).unwrap();
    c.bench_function("verify cached (SHA-256 + lookup)", |b| {
        b.iter(|| rt.block_on(auth.verify(&rs)).unwrap())
    });
}

criterion_group!(benches, verification);
criterion_main!(benches);
