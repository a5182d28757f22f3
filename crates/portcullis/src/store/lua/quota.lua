-- Fixed-window quotas, all or nothing (store/window.rs's windows).
-- KEYS: one per quota. ARGV[1]: now (µs) or '' for the server's TIME; then
-- limit, period (µs) per key. The window index is part of the stored value
-- ('index:count') so a key never straddles two windows.
-- Returns now, then per key: allowed, used, window_end.
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local out = { now }
local all = true
local used = {}
local ends = {}
local idx = {}
for i = 1, #KEYS do
  local limit = tonumber(ARGV[2 * i])
  local period = math.max(tonumber(ARGV[2 * i + 1]), 1)
  idx[i] = math.floor(now / period)
  ends[i] = (idx[i] + 1) * period
  local n = 0
  local v = redis.call('GET', KEYS[i])
  if v then
    local w, c = string.match(v, '^(%d+):(%d+)$')
    if w and tonumber(w) == idx[i] then n = tonumber(c) end
  end
  used[i] = n
  if n >= limit then all = false end
end
for i = 1, #KEYS do
  local allowed = 0
  if used[i] < tonumber(ARGV[2 * i]) then allowed = 1 end
  if all then
    used[i] = used[i] + 1
    local ttl = math.max(math.ceil((ends[i] - now) / 1000), 1)
    redis.call('SET', KEYS[i], string.format('%.0f:%d', idx[i], used[i]), 'PX', string.format('%.0f', ttl))
  end
  for _, x in ipairs({ allowed, used[i], ends[i] }) do out[#out + 1] = x end
end
return out
