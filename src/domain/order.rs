use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The order written together with CONFIRMED.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub reservation_id: String,
    pub user_id: String,
    pub event_id: String,
    pub seat_ids: Vec<String>,
    pub total_amount: i64,
    pub currency: String,
    pub status: String,
    pub payment_intent_id: String,
    pub created_at: DateTime<Utc>,
}
