-- Shared by the scripts/bench wrk scripts: counts responses whose status is
-- EXPECT_STATUS (default 200) and whose body contains EXPECT, and prints one
-- machine-readable RESULT line in done(). (Same RESULT fields as the Next.js
-- peer's scripts, so both sides are summarised by the same code.)
local threads = {}
local next_tid = 0

function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
  table.insert(threads, thread)
end

ok_count, bad_count, bad_sample, body_bytes = 0, 0, "", 0
local expect_status = tonumber(os.getenv("EXPECT_STATUS") or "200")

function response(status, headers, body)
  if status == expect_status and body and string.find(body, EXPECT, 1, true) then
    ok_count = ok_count + 1
  else
    bad_count = bad_count + 1
    if bad_sample == "" then
      bad_sample = tostring(status) .. " " .. string.sub(body or "", 1, 200):gsub("[\r\n]", " ")
    end
  end
  body_bytes = body_bytes + #(body or "")
end

function done(summary, latency, requests)
  local ok, bad, sample, bb = 0, 0, "", 0
  for _, t in ipairs(threads) do
    ok = ok + (t:get("ok_count") or 0)
    bad = bad + (t:get("bad_count") or 0)
    bb = bb + (t:get("body_bytes") or 0)
    local s = t:get("bad_sample")
    if sample == "" and s and s ~= "" then sample = s end
  end
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d secs=%.2f rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f mean_ms=%.3f max_ms=%.3f " ..
    "ok=%d bad=%d err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d bytes=%d body_bytes=%d\n",
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.mean / 1000, latency.max / 1000,
    ok, bad, e.connect, e.read, e.write, e.status, e.timeout, summary.bytes, bb))
  if sample ~= "" then io.write("BAD_SAMPLE " .. sample .. "\n") end
end

-- Same-origin headers a portcullis client sends.
function action_headers()
  return {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Accept"] = "application/json",
    ["Origin"] = assert(os.getenv("ORIGIN"), "ORIGIN not set"),
  }
end

-- The `cookie<TAB>user<TAB>project_id` lines of `demo seed --bench`.
function load_sessions()
  local path = assert(os.getenv("SESSIONS"), "SESSIONS not set")
  local out = {}
  for line in io.lines(path) do
    if not string.match(line, "^#") then
      local cookie, user, pid = string.match(line, "^([^\t]+)\t([^\t]+)\t(%d+)")
      if cookie then table.insert(out, { cookie = cookie, user = user, pid = tonumber(pid) }) end
    end
  end
  assert(#out > 0, "no sessions in " .. path)
  return out
end
