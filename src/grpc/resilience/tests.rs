//! The stack as a whole: which failures are retried, and one deadline over all attempts.

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

fn settings() -> GrpcClientSettings {
    GrpcClientSettings {
        timeout: Duration::from_millis(200),
        cb_minimum_calls: 100,
        ..GrpcClientSettings::default()
    }
}

async fn run(s: &Stack<u32, u32>, idempotent: bool) -> Result<u32, CallError> {
    s.clone()
        .oneshot(Call::new(
            "t.T/M",
            7,
            Duration::from_millis(200),
            idempotent,
        ))
        .await
}

#[tokio::test]
async fn transient_failures_are_retried_for_idempotent_calls_only() {
    let tries = Arc::new(AtomicUsize::new(0));
    let t = tries.clone();
    let s = stack("inventory", &settings(), move |c: Call<u32>, _left| {
        let n = t.fetch_add(1, Ordering::SeqCst);
        async move {
            if n % 3 < 2 {
                Err(Status::unavailable("down"))
            } else {
                Ok(c.rpc + 1)
            }
        }
    })
    .unwrap();
    assert_eq!(run(&s, true).await.unwrap(), 8);
    assert_eq!(tries.load(Ordering::SeqCst), 3);
    tries.store(0, Ordering::SeqCst);
    assert!(matches!(
        run(&s, false).await,
        Err(CallError::Unavailable { .. })
    ));
    assert_eq!(tries.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn other_statuses_are_not_retried() {
    let tries = Arc::new(AtomicUsize::new(0));
    let t = tries.clone();
    let s = stack("inventory", &settings(), move |_c: Call<u32>, _left| {
        t.fetch_add(1, Ordering::SeqCst);
        async move { Err::<u32, _>(Status::internal("bug")) }
    })
    .unwrap();
    assert!(matches!(run(&s, true).await, Err(CallError::Failed(s)) if s.code() == Code::Internal));
    assert_eq!(tries.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_deadline_bounds_the_whole_call() {
    let s = stack(
        "inventory",
        &settings(),
        |_c: Call<u32>, left: Duration| async move {
            assert!(left <= Duration::from_millis(200));
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(1)
        },
    )
    .unwrap();
    let started = Instant::now();
    assert!(matches!(run(&s, true).await, Err(CallError::Timeout)));
    assert!(started.elapsed() < Duration::from_millis(400));
}
