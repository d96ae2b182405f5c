//! W3C trace context: the request's trace id is taken from `traceparent` or made afresh, and is
//! what every log line and error envelope of that request carries.

use std::sync::{Arc, OnceLock};

use rand::RngCore;

#[derive(Debug)]
pub struct RequestContext {
    pub trace_id: String,
    pub span_id: String,
    /// Set once the request knows which reservation it is about, for the log lines after that.
    pub reservation_id: OnceLock<String>,
    /// The language of the request's error messages (`Accept-Language`).
    pub lang: crate::i18n::Lang,
}

tokio::task_local! {
    static CURRENT: Arc<RequestContext>;
}

pub fn new_trace_id() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

pub fn new_span_id() -> String {
    let mut b = [0u8; 8];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// The trace id of a valid `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), if any.
pub fn parse_traceparent(header: &str) -> Option<String> {
    let parts: Vec<&str> = header.trim().split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    match parts.as_slice() {
        [version, trace, parent, flags]
            if hex(version, 2)
                && *version != "ff"
                && hex(trace, 32)
                && hex(parent, 16)
                && hex(flags, 2) =>
        {
            (trace.bytes().any(|b| b != b'0') && parent.bytes().any(|b| b != b'0'))
                .then(|| trace.to_string())
        }
        _ => None,
    }
}

impl RequestContext {
    pub fn from_traceparent(header: Option<&str>) -> Self {
        Self {
            trace_id: header
                .and_then(parse_traceparent)
                .unwrap_or_else(new_trace_id),
            span_id: new_span_id(),
            reservation_id: OnceLock::new(),
            lang: crate::i18n::Lang::default(),
        }
    }

    pub fn with_lang(mut self, lang: crate::i18n::Lang) -> Self {
        self.lang = lang;
        self
    }

    /// The `traceparent` to pass on to the next hop.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-01", self.trace_id, self.span_id)
    }
}

/// Run `f` with `ctx` as the current request context.
pub async fn scope<F: std::future::Future>(ctx: Arc<RequestContext>, f: F) -> F::Output {
    CURRENT.scope(ctx, f).await
}

pub fn current() -> Option<Arc<RequestContext>> {
    CURRENT.try_with(Arc::clone).ok()
}

/// The current request's trace id, or a fresh one outside a request.
pub fn current_trace_id() -> String {
    current()
        .map(|c| c.trace_id.clone())
        .unwrap_or_else(new_trace_id)
}

pub fn note_reservation(id: &str) {
    if let Some(c) = current() {
        let _ = c.reservation_id.set(id.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_traceparent_gives_its_trace_id() {
        let t = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            parse_traceparent(t).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
    }

    #[test]
    fn an_invalid_traceparent_is_ignored() {
        for t in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse_traceparent(t), None, "{t}");
        }
        let c = RequestContext::from_traceparent(Some("nope"));
        assert_eq!(c.trace_id.len(), 32);
        assert!(c.traceparent().starts_with("00-"));
    }
}
