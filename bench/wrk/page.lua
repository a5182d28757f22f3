-- page: GET /projects (the signed-in user's 100 projects), rotating sessions.
dofile((os.getenv("WRK_LUA_DIR") or ".") .. "/common.lua")
EXPECT = os.getenv("PAGE_EXPECT") or "Projects"

local sessions
local n
local headers = { ["Accept"] = "text/html" }

function init(args)
  sessions = load_sessions()
  n = tid * 7919
end

function request()
  n = n + 1
  headers["Cookie"] = sessions[(n % #sessions) + 1].cookie
  return wrk.format("GET", "/projects", headers)
end
