-- rename: authenticated projects.rename, rotating over the 100 seeded
-- sessions; each request renames one of its own user's 100 projects.
-- Seeding (demo seed --bench): project i belongs to user i % 10, ids are
-- consecutive, and the seed prints each session's user's first project, so
-- that user's projects are pid, pid + 10, …, pid + 990.
dofile((os.getenv("WRK_LUA_DIR") or ".") .. "/common.lua")
EXPECT = '"ok":true'

local path = "/_action/" .. assert(os.getenv("RENAME_ID"), "RENAME_ID not set")
local headers = action_headers()
local sessions
local n

function init(args)
  sessions = load_sessions()
  n = tid * 7919 -- spread threads over different sessions/projects
end

function request()
  n = n + 1
  local s = sessions[(n % #sessions) + 1]
  local pid = s.pid + 10 * (math.floor(n / #sessions) % 100)
  headers["Cookie"] = s.cookie
  local body = "projectId=" .. pid .. "&name=Renamed+t" .. tid .. "+%23" .. n
  return wrk.format("POST", path, headers, body)
end
