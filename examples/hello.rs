//! The baseline of `./run_local.sh bench-http`: an axum 0.8 hello-world answering a 208-byte JSON
//! document at `GET /json`, on the same runtime and server stack as the service (tokio multi-thread,
//! hyper). The benchmark reports the service's routes as ratios to this one's throughput, measured
//! in the same run on the same machine.
//!
//!   cargo run --release --example hello -- 127.0.0.1:18080

use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

/// 208 bytes once serialised (a test below keeps it so).
#[derive(Serialize)]
struct Hello {
    message: &'static str,
    reservation_id: &'static str,
    event_id: &'static str,
    status: &'static str,
    seat_ids: [&'static str; 2],
    total_price: i64,
    currency: &'static str,
    hold_expires_at: &'static str,
}

fn hello() -> Hello {
    Hello {
        message: "Hello, World!",
        reservation_id: "rsv_01JDXH6Q8Y",
        event_id: "evt_2025_1001",
        status: "HOLD",
        seat_ids: ["A-1", "A-2"],
        total_price: 330000,
        currency: "KRW",
        hold_expires_at: "2026-11-27T00:00:00Z",
    }
}

async fn json() -> Json<Hello> {
    // Serialised per request, as the service does.
    Json(hello())
}

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18080".into());
    let app = Router::new().route("/json", get(json));
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    println!("hello listening on {addr}");
    axum::serve(listener, app)
        .await
        .unwrap_or_else(|e| panic!("serve: {e}"));
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_answer_is_208_bytes() {
        assert_eq!(serde_json::to_vec(&super::hello()).unwrap().len(), 208);
    }
}
