-- echo: the same urlencoded body to the bare axum handler (PATH=/echo) or the
-- portcullis public echo action (PATH=/_action/<id>).
dofile((os.getenv("WRK_LUA_DIR") or ".") .. "/common.lua")
EXPECT = '"name":"Apollo'

wrk.method = "POST"
wrk.path = assert(os.getenv("TARGET_PATH"), "TARGET_PATH not set")
wrk.headers = action_headers()
wrk.body = "projectId=4&name=Apollo+11"
