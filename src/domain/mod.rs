//! The reservation domain: states, transitions, inputs and events. No I/O lives here.

pub mod event;
pub mod ids;
pub mod input;
pub mod order;
pub mod reservation;

pub use event::{EventType, OutboxEvent, OutboxStatus};
pub use input::{ConfirmInput, CreateInput, FieldErrors};
pub use order::Order;
pub use reservation::{Reservation, ReservationStatus, TransitionError};
