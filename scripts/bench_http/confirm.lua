-- POST /v1/reservations/{id}/confirm of the holds the create run made, one each, in order.
local ids = {}
local next_id = 0
local token = os.getenv("BENCH_TOKEN")
local run = os.getenv("BENCH_RUN") or tostring(os.time())

function init(args)
  for line in io.lines(os.getenv("IDS_FILE")) do ids[#ids + 1] = line end
end

function request()
  next_id = next_id + 1
  -- Past the last hold the ids wrap around: a second confirm of a confirmed hold (another
  -- payment intent) is refused and counts as non-2xx; the driver says when that happened.
  local id = ids[((next_id - 1) % #ids) + 1]
  return wrk.format("POST", "/v1/reservations/" .. id .. "/confirm", {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = "bench-c-" .. run .. "-" .. next_id,
  }, '{"payment_intent_id":"pay_bench_' .. next_id .. '"}')
end

done = dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
