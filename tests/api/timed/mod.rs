//! Tests whose claims are about time (delivery within a second "on an idle machine", deadlines,
//! a breaker and a bulkhead that fail fast). `./run_local.sh test` runs them one at a time after
//! the rest, so that the other tests' load does not blur what they measure.

mod connections;
mod events;
mod faults;
mod outbox_drain;
mod outbox_slow_store;
mod resilience;
