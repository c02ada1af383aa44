-- apply_snapshot: chain figures at `ledger`. Older than held -> stale. Pending commits at or
-- before `ledger` are now inside the chain figures and are dropped. On an unknown pool only
-- `establish` creates the state (fail closed: the watcher must not make a lost pool known).
-- ARGV: ledger, total, locked, available, establish ('1'/'0'), epoch (the replication id the
-- pool is established under; '' = not tracked)
local ledger, total, locked, available, establish = A[1], A[2], A[3], A[4], A[5]
local epoch = A[6] or ''
local st = redis.call('HMGET', K_STATE, 'known', 'ledger', 'chain')
local known = st[1] == '1'
if not known and establish ~= '1' then return {'unknown_pool', '0'} end
if known and st[2] and tonumber(ledger) < tonumber(st[2]) then return {'stale', st[2]} end

local now = now_ms()
local done = redis.call('ZRANGEBYSCORE', K_PEND, '-inf', ledger)
for _, loan in ipairs(done) do
  local amount = redis.call('HGET', K_PAMT, loan)
  if amount then
    add('pending', neg(amount))
    add('headroom', amount)
    redis.call('HDEL', K_PAMT, loan)
  end
  redis.call('ZREM', K_PEND, loan)
end
add('headroom', neg(st[3] or '0'))
add('headroom', available)
redis.call('HSET', K_STATE, 'known', '1', 'ledger', ledger, 'total', total, 'locked', locked,
  'chain', available)
if establish == '1' and epoch ~= '' then redis.call('HSET', K_STATE, 'replid', epoch) end
local reserved = hget0(K_STATE, 'reserved')
local reason = nil
if not known then reason = 'establish' end
audit(now, 'snapshot', nil, available, reserved, reserved, reason, false, ledger)
return {'applied', ledger}
