# 오류 메시지 (error.message), 한국어. 영어 카탈로그(locales/en/errors.ftl)와 같은 메시지를 모두
# 갖춰야 합니다 (테스트가 확인합니다).

UNAUTHENTICATED = 인증이 필요합니다. Bearer 토큰을 보내 주세요.
UNAUTHENTICATED-invalid-token = Bearer 토큰이 올바르지 않거나 만료되었습니다.
FORBIDDEN = 이 작업을 할 권한이 없습니다.
RATE_LIMITED = 요청이 너무 많습니다. Retry-After에 적힌 시간 뒤에 다시 시도해 주세요.
IDEMPOTENCY_REQUIRED = Idempotency-Key는 화면에 보이는 ASCII 문자 1~255자여야 합니다.
IDEMPOTENCY_CONFLICT = 이 Idempotency-Key는 다른 요청에 이미 사용되었습니다.
IDEMPOTENCY_CONFLICT-in-flight = 이 Idempotency-Key로 보낸 첫 요청이 아직 처리 중입니다. 잠시 후 다시 시도해 주세요.
RESERVATION_EXPIRED = 좌석 선점 시간이 만료되었습니다.
PAYMENT_NOT_APPROVED = 결제가 승인되지 않았습니다.
INVENTORY_CONFLICT = 좌석이 이미 선택되었거나 남은 좌석이 부족합니다.
VALIDATION_ERROR = 요청이 올바르지 않습니다. 잘못된 항목은 details에 있습니다.
VALIDATION_ERROR-too-large = 요청 본문이 64KiB를 넘습니다.
VALIDATION_ERROR-not-json = Content-Type은 application/json이어야 합니다.
RESERVATION_NOT_FOUND = 예약을 찾을 수 없습니다.
EVENT_NOT_FOUND = 공연을 찾을 수 없습니다.
INVALID_STATE = 예약이 이 작업을 할 수 없는 상태입니다.
UPSTREAM_TIMEOUT = 연동 서비스가 제시간에 응답하지 않았습니다. 같은 Idempotency-Key로 다시 시도해 주세요.
UPSTREAM_UNAVAILABLE = 연동 서비스를 사용할 수 없습니다. Retry-After에 적힌 시간 뒤에 다시 시도해 주세요.
INTERNAL = 내부 오류가 발생했습니다.
NOT_FOUND = 없는 경로입니다.
METHOD_NOT_ALLOWED = 이 경로에서 허용되지 않는 메서드입니다.
REQUEST_REFUSED = 보낸 그대로는 처리할 수 없는 요청입니다.
