//! An OIDC issuer on loopback, run by the test: discovery and a JWKS over real HTTP, RSA and EC
//! keys generated at test time, hits counted, keys published and the issuer stopped on demand.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use aws_lc_rs::encoding::{AsBigEndian, AsDer, EcPublicKeyUncompressedBin};
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

pub const AUDIENCE: &str = "reservation-api";

/// A signing key and its public JWK.
#[derive(Clone)]
pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    pub jwk: Value,
    /// The public key as PEM (an attacker's HS256 "secret").
    pub public_pem: String,
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl TestKey {
    pub fn rsa(kid: &str) -> Self {
        // RSA generation is the slow part: one key pair per test binary, under any kid.
        static PAIR: OnceLock<aws_lc_rs::rsa::KeyPair> = OnceLock::new();
        static OTHER: OnceLock<aws_lc_rs::rsa::KeyPair> = OnceLock::new();
        let cell = if kid.starts_with("other") {
            &OTHER
        } else {
            &PAIR
        };
        let pair = cell.get_or_init(|| {
            aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap()
        });
        let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(pair).unwrap();
        let public = pair.public_key();
        let public_der = AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(public).unwrap();
        Self {
            kid: kid.into(),
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_pem(pem("PRIVATE KEY", der.as_ref()).as_bytes())
                .unwrap(),
            jwk: json!({
                "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                "n": b64(public.modulus().big_endian_without_leading_zero()),
                "e": b64(public.exponent().big_endian_without_leading_zero()),
            }),
            public_pem: pem("PUBLIC KEY", public_der.as_ref()),
        }
    }

    pub fn ec(kid: &str) -> Self {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let pkcs8 = pair.to_pkcs8v1().unwrap();
        let point: EcPublicKeyUncompressedBin = pair.public_key().as_be_bytes().unwrap();
        let point = point.as_ref();
        Self {
            kid: kid.into(),
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_pem(pem("PRIVATE KEY", pkcs8.as_ref()).as_bytes())
                .unwrap(),
            jwk: json!({
                "kty": "EC", "use": "sig", "alg": "ES256", "kid": kid, "crv": "P-256",
                "x": b64(&point[1..33]), "y": b64(&point[33..65]),
            }),
            public_pem: String::new(),
        }
    }
}

pub struct Issuer {
    pub url: String,
    pub discovery_hits: AtomicUsize,
    pub jwks_hits: AtomicUsize,
    /// Answer 503 to everything (an outage that still accepts connections).
    pub down: AtomicBool,
    published: Mutex<Vec<Value>>,
    pub rsa: TestKey,
    pub ec: TestKey,
    stop: CancellationToken,
}

async fn discovery(State(i): State<Arc<Issuer>>) -> Response {
    i.discovery_hits.fetch_add(1, Ordering::SeqCst);
    if i.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    Json(json!({ "issuer": i.url, "jwks_uri": format!("{}/keys", i.url) })).into_response()
}

async fn jwks(State(i): State<Arc<Issuer>>) -> Response {
    i.jwks_hits.fetch_add(1, Ordering::SeqCst);
    if i.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let keys = i.published.lock().unwrap().clone();
    Json(json!({ "keys": keys })).into_response()
}

impl Issuer {
    /// Serving discovery and a JWKS with an RSA (`rsa-1`) and an EC (`ec-1`) key.
    pub async fn start() -> Arc<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let (rsa, ec) = (TestKey::rsa("rsa-1"), TestKey::ec("ec-1"));
        let issuer = Arc::new(Self {
            url,
            discovery_hits: AtomicUsize::new(0),
            jwks_hits: AtomicUsize::new(0),
            down: AtomicBool::new(false),
            published: Mutex::new(vec![rsa.jwk.clone(), ec.jwk.clone()]),
            rsa,
            ec,
            stop: CancellationToken::new(),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/keys", get(jwks))
            .with_state(issuer.clone());
        let stop = issuer.stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        });
        issuer
    }

    pub fn publish(&self, key: &TestKey) {
        self.published.lock().unwrap().push(key.jwk.clone());
    }

    /// Stop serving: new connections are refused.
    pub fn stop(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.stop.cancel();
    }

    pub fn jwks_hits(&self) -> usize {
        self.jwks_hits.load(Ordering::SeqCst)
    }

    /// Standard claims for `sub`: this issuer, the test audience, valid for an hour.
    pub fn claims(&self, sub: &str) -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({ "iss": self.url, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 3600 })
    }

    pub fn token(&self, key: &TestKey, sub: &str) -> String {
        sign(key, &self.claims(sub))
    }
}

/// `claims` signed with `key` under its `kid`.
pub fn sign(key: &TestKey, claims: &Value) -> String {
    let mut h = Header::new(key.alg);
    h.kid = Some(key.kid.clone());
    encode(&h, claims, &key.encoding).unwrap()
}

/// `claims` signed with `key` and a header of our own choosing (kid, crit, alg).
pub fn sign_with(header: Header, key: &EncodingKey, claims: &Value) -> String {
    encode(&header, claims, key).unwrap()
}

/// An unsigned token (`alg: none`), which no verifier may accept.
pub fn unsigned(kid: &str, claims: &Value) -> String {
    let header = json!({ "alg": "none", "typ": "JWT", "kid": kid });
    format!(
        "{}.{}.",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}
