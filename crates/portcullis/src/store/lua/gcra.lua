-- GCRA over all keys of one action, all or nothing: store/gcra.rs's
-- `check`, line by line (Lua numbers are doubles; integers are exact below
-- 2^53 µs).
-- KEYS: one per limit. ARGV[1]: now in µs, or '' for the server's TIME;
-- then count, period (µs) per key.
-- Returns now, then per key: allowed, remaining, retry_after, reset, new_tat.
-- Writes each key (its TAT) only when every key allows, expiring at the TAT.
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local out = { now }
local all = true
local tats = {}
for i = 1, #KEYS do
  local count = math.max(tonumber(ARGV[2 * i]), 1)
  local period = tonumber(ARGV[2 * i + 1])
  local interval = math.max(math.floor(period / count), 1)
  local tolerance = interval * count
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = math.max(new_tat - tolerance, 0)
  if now < allow_at then
    all = false
    tats[i] = false
    for _, v in ipairs({ 0, 0, allow_at - now, tat - now, tat }) do out[#out + 1] = v end
  else
    local used = new_tat - now
    tats[i] = new_tat
    for _, v in ipairs({ 1, math.floor((tolerance - used) / interval), 0, used, new_tat }) do out[#out + 1] = v end
  end
end
if all then
  for i = 1, #KEYS do
    local ttl = math.max(math.ceil((tats[i] - now) / 1000), 1)
    redis.call('SET', KEYS[i], string.format('%.0f', tats[i]), 'PX', string.format('%.0f', ttl))
  end
end
return out
