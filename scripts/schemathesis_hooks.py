"""Schemathesis hooks for `./run_local.sh test`: a fresh Idempotency-Key per generated request,
and a check that a schema-valid request is refused only for what the schema cannot say."""

import json
import uuid

import schemathesis
from schemathesis import Case, CheckContext, Response


@schemathesis.hook
def before_call(ctx, case: Case, kwargs):
    # Keys are scoped per user and replayed for a while: a repeated key with another body is a
    # (correct) 409. Each positive request gets its own; negative ones keep what was generated.
    if case.method.upper() == "POST" and case.meta and case.meta.generation.mode.is_positive:
        case.headers = {**(case.headers or {}), "Idempotency-Key": str(uuid.uuid4())}


# What a schema cannot express and the server may refuse a well-formed request for: an event or
# seat not in the catalogue, seat_ids not exactly qty long (400 naming the field), a payment the
# simulator does not approve (412); a listing cursor the server did not give this caller (an
# opaque string: which strings are valid cursors only the server knows).
DOMAIN_FIELDS = {"event_id", "seat_ids", "cursor"}
# The server's format rules for those fields: the schema says them, so they must never fire on a
# schema-valid request.
FORMAT_WORDS = ("characters", "repeat", "must be an array", "must be a string", "is required")


@schemathesis.check
def refusals_are_domain_only(ctx: CheckContext, response: Response, case: Case):
    if not (case.meta and case.meta.generation.mode.is_positive):
        return None
    if response.status_code != 400:
        return None
    try:
        error = json.loads(response.text)["error"]
    except (ValueError, KeyError, TypeError):
        raise AssertionError(f"a 400 without the envelope: {response.text[:200]}")
    details = error.get("details") or {}
    fields = set(details.keys())
    format_rule = any(w in str(m) for m in details.values() for w in FORMAT_WORDS)
    if error.get("code") != "VALIDATION_ERROR" or not fields or not fields <= DOMAIN_FIELDS or format_rule:
        raise AssertionError(
            f"a schema-valid request was refused for {sorted(fields) or error.get('code')}: "
            f"{error.get('message')} {details}"
        )
    return None
