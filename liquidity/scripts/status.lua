-- status: one consistent read of the pool's counters.
local st = redis.call('HMGET', K_STATE, 'known', 'frozen', 'frozen_reason', 'ledger', 'total',
  'locked', 'chain', 'pending', 'reserved', 'headroom')
for i = 1, 10 do
  if not st[i] then st[i] = '' end
end
st[11] = tostring(redis.call('HLEN', K_RES))
return st
