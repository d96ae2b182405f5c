-- POST /v1/reservations: a new 1-seat hold per request, each with its own Idempotency-Key.
-- Each created reservation id is appended to IDS_FILE (the confirm run's input).
local counter = 0
local ids
local token = os.getenv("BENCH_TOKEN")
local event = os.getenv("BENCH_EVENT")
local run = os.getenv("BENCH_RUN") or tostring(os.time())
local body = '{"event_id":"' .. event .. '","qty":1}'

function init(args)
  ids = io.open(os.getenv("IDS_FILE"), "a")
end

function request()
  counter = counter + 1
  return wrk.format("POST", "/v1/reservations", {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = "bench-" .. run .. "-" .. counter,
  }, body)
end

function response(status, headers, body)
  if status == 201 then
    local id = string.match(body, '"reservation_id":"([^"]+)"')
    if id then ids:write(id, "\n") end
  end
end

done = dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
