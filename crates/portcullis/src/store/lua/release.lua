-- Deletes KEYS[1] only if it still holds ARGV[1] (this request's claim), so
-- releasing a late idempotency claim never removes another request's.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
else
  return 0
end
