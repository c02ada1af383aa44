-- reserve: sweep, then replay / terminal / unknown / frozen / insufficient / borrower limit / grant.
-- ARGV: loan, borrower, amount, ttl_ms, grace_ms, need (amount + safety buffer),
--       room (borrower_limit - amount), retention_ms, epoch
-- epoch (optional, '' = off): the replication id of the primary the client believes it talks
-- to. A known pool established under another replication id may be missing reservations (a
-- failover without replica acks): it becomes unknown here, before anything is granted from it.
-- Replies are one '|'-joined string: one bulk reply is cheaper for the client to parse.
local loan, borrower, amount = A[1], A[2], A[3]
local ttl, grace = tonumber(A[4]), tonumber(A[5])
local need, room, retention = A[6], A[7], tonumber(A[8])

local epoch = A[9] or ''

local now = now_ms()
if epoch ~= '' and redis.call('HGET', K_STATE, 'known') == '1'
    and redis.call('HGET', K_STATE, 'replid') ~= epoch then
  redis.call('HSET', K_STATE, 'known', '0')
  audit(now, 'suspect', nil, nil, nil, nil, 'replication id changed (now ' .. epoch .. ')', true,
    nil)
  block(now, loan, borrower, 'unknown_pool', amount)
  return 'unknown_pool|failover'
end
sweep(now, retention)

local v = redis.call('HGET', K_RES, loan)
if v then
  -- A write even on a replay: a client that waits for replica acks (WAIT) then covers the
  -- original grant too (replicas apply the stream in order), also on a fresh connection.
  redis.call('HINCRBY', K_STATE, 'replays', 1)
  local a, e, h, f = decode_res(v)
  return 'reserved|' .. a .. '|' .. e .. '|' .. h .. '|' .. f .. '|1'
end
local t = redis.call('HGET', K_TERM, loan)
if t then
  local state = decode_term(t)
  return 'terminal|' .. state
end

local st = redis.call('HMGET', K_STATE, 'known', 'frozen', 'frozen_reason', 'headroom')
if st[1] ~= '1' then
  block(now, loan, borrower, 'unknown_pool', amount)
  return 'unknown_pool'
end
if st[2] == '1' then
  block(now, loan, borrower, 'frozen', amount)
  return 'frozen|' .. (st[3] or '')
end
local headroom = st[4] or '0'
if cmp(headroom, need) < 0 then
  block(now, loan, borrower, 'insufficient', amount, {'headroom', headroom, 'need', need})
  return 'insufficient|' .. headroom
end
local exposure = hget0(K_BEXP, borrower)
if cmp(exposure, room) > 0 then
  block(now, loan, borrower, 'borrower_limit_exceeded', amount, {'exposure', exposure, 'room', room})
  return 'borrower_limit|' .. exposure
end

local expires = fmt(now + ttl)
local hold = fmt(now + ttl + grace)
local before = hget0(K_STATE, 'reserved')
local fence = add_active(loan, borrower, amount, expires, hold, now)
audit(now, 'reserve', loan, amount, before, hget0(K_STATE, 'reserved'), nil, false, nil)
return 'reserved|' .. amount .. '|' .. expires .. '|' .. hold .. '|' .. fence .. '|0'
