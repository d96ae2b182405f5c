//! `GET /v1/reservations`: the caller's own reservations, newest first, paged by an opaque cursor
//! bound to the caller. Runs on both stores (`TEST_STORE=dynamodb` for the by-user index).

use std::collections::HashSet;

use crate::helpers::*;
use serde_json::Value;

impl TestApp {
    pub async fn list(&self, user: &str, query: &str) -> reqwest::Response {
        self.client
            .get(self.url(&format!("/v1/reservations{query}")))
            .bearer_auth(token(user))
            .send()
            .await
            .expect("request")
    }

    /// One page, asserting 200: `(ids, statuses, next_cursor)`.
    pub async fn page(
        &self,
        user: &str,
        query: &str,
    ) -> (Vec<String>, Vec<String>, Option<String>) {
        let r = self.list(user, query).await;
        assert_eq!(r.status(), 200, "{query}");
        let body: Value = r.json().await.unwrap();
        let items = body["items"].as_array().expect("items");
        let field = |name: &str| -> Vec<String> {
            items
                .iter()
                .map(|i| i[name].as_str().unwrap().to_owned())
                .collect()
        };
        assert!(
            body.get("next_cursor").is_some(),
            "next_cursor is always present: {body}"
        );
        (
            field("reservation_id"),
            field("status"),
            body["next_cursor"].as_str().map(str::to_owned),
        )
    }
}

async fn hold_id(app: &TestApp, user: &str) -> String {
    app.hold(user, BIG_EVENT, 1).await["reservation_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn pages_show_my_reservations_newest_first_exactly_once_and_filter_by_status() {
    // 40 holds and 5 transitions: deadlines for a loaded machine (this test is about the pages).
    let app = spawn_app_with(under_load).await;
    let (me, other) = ("lister-a", "lister-b");
    let mut mine = Vec::new();
    for i in 0..25 {
        mine.push(hold_id(&app, me).await);
        if i % 5 == 0 {
            hold_id(&app, other).await;
        }
    }
    let newest_first: Vec<String> = mine.iter().rev().cloned().collect();

    let (first, _, cursor) = app.page(me, "?limit=10").await;
    assert_eq!(first, newest_first[..10]);
    // Made while paging: newer than every position handed out, so on no later page.
    let mut later = HashSet::new();
    for _ in 0..5 {
        later.insert(hold_id(&app, me).await);
    }
    let cursor = cursor.expect("a second page");
    let (second, _, cursor) = app.page(me, &format!("?limit=10&cursor={cursor}")).await;
    assert_eq!(second, newest_first[10..20]);
    let cursor = cursor.expect("a third page");
    let (third, _, cursor) = app.page(me, &format!("?limit=10&cursor={cursor}")).await;
    assert_eq!(third, newest_first[20..]);
    assert_eq!(cursor, None, "the third page is the last");
    let seen: Vec<&String> = first.iter().chain(&second).chain(&third).collect();
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 25, "each once");
    assert!(seen.iter().all(|id| !later.contains(*id)));

    // The first page now starts with the five made while paging; the other user's are never shown.
    let (all, _, _) = app.page(me, "?limit=100").await;
    assert_eq!(all.len(), 30);
    assert_eq!(
        all[..5].iter().collect::<HashSet<_>>(),
        later.iter().collect()
    );
    let (theirs, _, _) = app.page(other, "").await;
    assert_eq!(theirs.len(), 5);
    assert!(theirs.iter().all(|id| !all.contains(id)));

    // Status filter: confirm two, cancel three.
    for id in &mine[..2] {
        let r = app
            .confirm(me, id, &uuid::Uuid::new_v4().to_string(), "pay_ok")
            .await;
        assert_eq!(r.status(), 200);
    }
    for id in &mine[2..5] {
        let r = app.cancel(me, id, &uuid::Uuid::new_v4().to_string()).await;
        assert_eq!(r.status(), 200);
    }
    let (confirmed, statuses, next) = app.page(me, "?status=CONFIRMED").await;
    assert_eq!(confirmed, [mine[1].clone(), mine[0].clone()]);
    assert!(statuses.iter().all(|s| s == "CONFIRMED") && next.is_none());
    let (ended, statuses, _) = app
        .page(me, "?status=CANCELLED&status=CONFIRMED&limit=100")
        .await;
    assert_eq!(ended.len(), 5);
    assert!(statuses
        .iter()
        .all(|s| s == "CANCELLED" || s == "CONFIRMED"));
    let (held, statuses, _) = app.page(me, "?status=HOLD,EXPIRED&limit=100").await;
    assert_eq!(held.len(), 25);
    assert!(statuses.iter().all(|s| s == "HOLD"));
    // Filtered pages page too.
    let (p1, _, c) = app.page(me, "?status=CANCELLED&limit=2").await;
    let (p2, _, c2) = app
        .page(
            me,
            &format!("?status=CANCELLED&limit=2&cursor={}", c.unwrap()),
        )
        .await;
    assert_eq!(
        [p1, p2].concat(),
        [&mine[4], &mine[3], &mine[2]].map(|s| s.clone())
    );
    assert_eq!(c2, None);
}

#[tokio::test]
async fn a_hold_past_its_expiry_is_listed_as_expired() {
    let app = spawn_app_with(|o| {
        under_load(o);
        o.config.hold_ttl = std::time::Duration::from_secs(1);
        // The sweeper must not write EXPIRED first: the listing alone says so.
        o.config.expiry_interval = std::time::Duration::from_millis(3_600_000);
    })
    .await;
    let id = hold_id(&app, "expirer").await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (ids, statuses, _) = app.page("expirer", "").await;
    assert_eq!(
        (ids, statuses),
        (vec![id.clone()], vec!["EXPIRED".to_owned()])
    );
    let (expired, _, _) = app.page("expirer", "?status=EXPIRED").await;
    assert_eq!(expired, [id]);
    let (held, _, _) = app.page("expirer", "?status=HOLD").await;
    assert!(held.is_empty());
}

#[tokio::test]
async fn bad_cursors_and_limits_are_validation_errors_naming_the_parameter() {
    let app = spawn_app_with(under_load).await;
    for _ in 0..3 {
        hold_id(&app, "owner").await;
        hold_id(&app, "intruder").await;
    }
    let (_, _, cursor) = app.page("owner", "?limit=1").await;
    let cursor = cursor.unwrap();
    // The cursor works for its owner…
    assert_eq!(
        app.page("owner", &format!("?limit=1&cursor={cursor}"))
            .await
            .0
            .len(),
        1
    );
    // …and for nobody else.
    let mut tampered = cursor.clone();
    tampered.replace_range(tampered.len() - 3.., "zzz");
    for (user, query, field) in [
        ("intruder", format!("?cursor={cursor}"), "cursor"),
        ("owner", "?cursor=garbage".to_owned(), "cursor"),
        ("owner", format!("?cursor={tampered}"), "cursor"),
        ("owner", "?cursor=".to_owned(), "cursor"),
        ("owner", "?limit=0".to_owned(), "limit"),
        ("owner", "?limit=101".to_owned(), "limit"),
        ("owner", "?limit=ten".to_owned(), "limit"),
        ("owner", "?status=SOLD".to_owned(), "status"),
    ] {
        let body = assert_error(app.list(user, &query).await, 400, "VALIDATION_ERROR").await;
        assert!(
            body["error"]["details"][field].is_string(),
            "{user} {query}: {body}"
        );
    }
    let r = app
        .client
        .get(app.url("/v1/reservations"))
        .send()
        .await
        .unwrap();
    assert_error(r, 401, "UNAUTHENTICATED").await;
}
