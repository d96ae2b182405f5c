//! `GET /v1/reservations`: the caller's own reservations, newest first, a page at a time.
//!
//! The cursor is the position (`created_at`, id) of the last reservation a page showed, encoded
//! opaquely. It is checked against the store rather than signed: the reservation it names must
//! exist, belong to the caller and have that `created_at`. So a tampered or foreign cursor is a
//! 400, and any replica can read any other's cursors without sharing a secret.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};

use super::views::{ReservationPage, ReservationView};
use super::{now_ms, Caller, ReservationService, ServiceError};
use crate::domain::{ids, FieldErrors, Reservation, ReservationStatus};
use crate::store::UserListPosition;
use crate::telemetry::metrics::MethodTimer;

pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 100;
/// Store reads one filtered page may take; past them the page ends early (with a cursor), so that
/// a rare status in a long history cannot make one request read it all.
const MAX_READS: usize = 10;
/// Reservations read per store call when a status filter may drop most of them.
const FILTERED_READ: usize = 100;

/// What the caller asked for, validated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Empty: every status.
    pub statuses: Vec<ReservationStatus>,
    pub limit: usize,
    pub cursor: Option<String>,
}

impl ListQuery {
    /// From the query string: `status` (repeatable or comma-separated), `limit` (1–100, default
    /// 20), `cursor`. Other parameters are ignored. Each bad one is named in the errors.
    pub fn parse(query: Option<&str>) -> Result<Self, FieldErrors> {
        let mut q = Self {
            limit: DEFAULT_LIMIT,
            ..Self::default()
        };
        let mut errors = FieldErrors::new();
        for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match name.as_ref() {
                "status" => {
                    for s in value.split(',').map(str::trim) {
                        match ReservationStatus::parse(s) {
                            Some(s) if !q.statuses.contains(&s) => q.statuses.push(s),
                            Some(_) => {}
                            None => {
                                errors.insert(
                                    "status".into(),
                                    "must be HOLD, CONFIRMED, CANCELLED or EXPIRED".into(),
                                );
                            }
                        }
                    }
                }
                "limit" => match value.parse::<usize>() {
                    Ok(n) if (1..=MAX_LIMIT).contains(&n) => q.limit = n,
                    _ => {
                        errors.insert(
                            "limit".into(),
                            format!("must be an integer between 1 and {MAX_LIMIT}"),
                        );
                    }
                },
                "cursor" => q.cursor = Some(value.into_owned()),
                _ => {}
            }
        }
        match errors.is_empty() {
            true => Ok(q),
            false => Err(errors),
        }
    }

    fn wants(&self, status: ReservationStatus) -> bool {
        self.statuses.is_empty() || self.statuses.contains(&status)
    }
}

pub fn encode_cursor(p: &UserListPosition) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1|{}|{}", p.created_at.timestamp_millis(), p.id))
}

/// The position a cursor names, if it is one this service could have made.
pub fn decode_cursor(cursor: &str) -> Option<UserListPosition> {
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
    let mut parts = raw.splitn(3, '|');
    if parts.next()? != "v1" {
        return None;
    }
    let created_at = DateTime::<Utc>::from_timestamp_millis(parts.next()?.parse().ok()?)?;
    let id = parts.next()?;
    ids::is_reservation_id(id).then(|| UserListPosition {
        created_at,
        id: id.to_owned(),
    })
}

fn bad_cursor() -> ServiceError {
    ServiceError::Validation(
        "the cursor is invalid".into(),
        FieldErrors::from([(
            "cursor".to_owned(),
            "is not a next_cursor this caller was given".to_owned(),
        )]),
    )
}

impl ReservationService {
    pub async fn list(
        &self,
        caller: &Caller,
        query: &ListQuery,
    ) -> Result<ReservationPage, ServiceError> {
        let _timer = MethodTimer::start("list");
        let mut position = match &query.cursor {
            Some(c) => Some(self.verified_position(caller, c).await?),
            None => None,
        };
        let now = now_ms();
        // One more than the page, to know whether there is a next one.
        let want = query.limit + 1;
        let mut matched: Vec<(Reservation, ReservationStatus)> = Vec::new();
        let mut exhausted = false;
        for _ in 0..MAX_READS {
            let ask = match query.statuses.is_empty() {
                true => want - matched.len(),
                false => FILTERED_READ,
            };
            let batch = self
                .store
                .reservations_of_user(&caller.user_id, position.as_ref(), ask)
                .await?;
            exhausted = batch.len() < ask;
            for r in batch {
                position = Some(UserListPosition::of(&r));
                let status = r.effective_status(now);
                if query.wants(status) {
                    matched.push((r, status));
                    if matched.len() == want {
                        break;
                    }
                }
            }
            if exhausted || matched.len() == want {
                break;
            }
        }
        let next_cursor = if matched.len() == want {
            matched.truncate(query.limit);
            matched
                .last()
                .map(|(r, _)| encode_cursor(&UserListPosition::of(r)))
        } else if exhausted {
            None
        } else {
            // The read budget ran out: the page is short, and goes on after what was read.
            position.as_ref().map(encode_cursor)
        };
        Ok(ReservationPage {
            items: matched
                .iter()
                .map(|(r, status)| ReservationView::of(r, *status))
                .collect(),
            next_cursor,
        })
    }

    /// The cursor's position, if it names a reservation of the caller's with that `created_at`.
    async fn verified_position(
        &self,
        caller: &Caller,
        cursor: &str,
    ) -> Result<UserListPosition, ServiceError> {
        let p = decode_cursor(cursor).ok_or_else(bad_cursor)?;
        match self.store.get_reservation(&p.id).await? {
            Some(r) if r.user_id == caller.user_id && r.created_at == p.created_at => Ok(p),
            _ => Err(bad_cursor()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let p = UserListPosition {
            created_at: DateTime::from_timestamp_millis(1_764_170_400_123).unwrap(),
            id: "rsv_0192f1c3a4b57c6d".into(),
        };
        assert_eq!(decode_cursor(&encode_cursor(&p)), Some(p));
        for bad in ["", "garbage", "djJ8MXxyc3ZfYQ", "!!!", "djF8eHxyc3ZfYQ"] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_query_names_each_bad_parameter() {
        let q = ListQuery::parse(Some("status=HOLD,EXPIRED&status=CONFIRMED&limit=5")).unwrap();
        assert_eq!(
            q.statuses,
            [
                ReservationStatus::Hold,
                ReservationStatus::Expired,
                ReservationStatus::Confirmed
            ]
        );
        assert_eq!(q.limit, 5);
        assert_eq!(ListQuery::parse(None).unwrap().limit, DEFAULT_LIMIT);
        for (query, field) in [
            ("limit=0", "limit"),
            ("limit=101", "limit"),
            ("limit=x", "limit"),
            ("status=SOLD", "status"),
        ] {
            let errors = ListQuery::parse(Some(query)).unwrap_err();
            assert!(errors.contains_key(field), "{query}: {errors:?}");
        }
    }
}
