-- GET /v1/reservations/{id} of one reservation, authenticated.
local token = os.getenv("BENCH_TOKEN")
local path = "/v1/reservations/" .. os.getenv("BENCH_RESERVATION")

function request()
  return wrk.format("GET", path, { ["Authorization"] = "Bearer " .. token })
end

done = dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
