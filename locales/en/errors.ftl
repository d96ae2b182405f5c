# Error messages (error.message), English. One message per error code; a few codes have a more
# precise variant, named CODE-variant. Every message here must exist in every other language
# (checked by the tests).

UNAUTHENTICATED = Authentication is required: send a bearer token.
UNAUTHENTICATED-invalid-token = The bearer token is invalid or has expired.
FORBIDDEN = You are not allowed to do this.
RATE_LIMITED = Too many requests. Retry after the time in Retry-After.
IDEMPOTENCY_REQUIRED = Idempotency-Key must be 1-255 visible ASCII characters.
IDEMPOTENCY_CONFLICT = This Idempotency-Key was used for a different request.
IDEMPOTENCY_CONFLICT-in-flight = The first request with this Idempotency-Key is still in flight. Retry shortly.
RESERVATION_EXPIRED = The hold has expired.
PAYMENT_NOT_APPROVED = The payment was not approved.
INVENTORY_CONFLICT = The seats are taken, or not enough seats are left.
VALIDATION_ERROR = The request is invalid; details names each bad field.
VALIDATION_ERROR-too-large = The request body is over 64 KiB.
VALIDATION_ERROR-not-json = Content-Type must be application/json.
RESERVATION_NOT_FOUND = Reservation not found.
EVENT_NOT_FOUND = Event not found.
INVALID_STATE = The reservation is not in a state that allows this.
UPSTREAM_TIMEOUT = A service we depend on did not answer in time. Retry with the same Idempotency-Key.
UPSTREAM_UNAVAILABLE = A service we depend on is unavailable. Retry after the time in Retry-After.
INTERNAL = Internal error.
NOT_FOUND = No such route.
METHOD_NOT_ALLOWED = This method is not allowed on this route.
REQUEST_REFUSED = The request cannot be served as sent.
