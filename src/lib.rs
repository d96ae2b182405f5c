//! reservation-api: hold seats for a short time, pay, confirm or cancel — never oversell, never run
//! a side effect twice, never lose an event.

pub mod auth;
pub mod aws;
pub mod cache;
pub mod cli;
pub mod config;
pub mod domain;
pub mod grpc;
pub mod http;
pub mod i18n;
pub mod idempotency;
pub mod inventory;
pub mod outbox;
pub mod payment;
pub mod redis_conn;
pub mod schedule;
pub mod service;
pub mod startup;
pub mod store;
pub mod tasks;
pub mod telemetry;
