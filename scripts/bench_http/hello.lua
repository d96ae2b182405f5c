-- The baseline: GET /json on the hello-world server.
done = dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
