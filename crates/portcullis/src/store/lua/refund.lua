-- Gives back one unit per quota key if it is still in the same window.
-- KEYS/ARGV as for quota.lua. Returns { number of keys refunded }.
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local done = 0
for i = 1, #KEYS do
  local period = math.max(tonumber(ARGV[2 * i + 1]), 1)
  local idx = math.floor(now / period)
  local v = redis.call('GET', KEYS[i])
  if v then
    local w, c = string.match(v, '^(%d+):(%d+)$')
    if w and tonumber(w) == idx and tonumber(c) > 0 then
      redis.call('SET', KEYS[i], string.format('%.0f:%d', idx, tonumber(c) - 1), 'KEEPTTL')
      done = done + 1
    end
  end
end
return { done }
