-- reserve: sweep, then replay / terminal / unknown / frozen / insufficient / borrower limit / grant.
-- ARGV: loan, borrower, amount, ttl_ms, grace_ms, need (amount + safety buffer),
--       room (borrower_limit - amount), retention_ms
-- Replies are one '|'-joined string: one bulk reply is cheaper for the client to parse.
local loan, borrower, amount = A[1], A[2], A[3]
local ttl, grace = tonumber(A[4]), tonumber(A[5])
local need, room, retention = A[6], A[7], tonumber(A[8])

local now = now_ms()
sweep(now, retention)

local v = redis.call('HGET', K_RES, loan)
if v then
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
  block(now, loan, borrower, 'unknown_pool', amount, nil, nil)
  return 'unknown_pool'
end
if st[2] == '1' then
  block(now, loan, borrower, 'frozen', amount, nil, nil)
  return 'frozen|' .. (st[3] or '')
end
local headroom = st[4] or '0'
if cmp(headroom, need) < 0 then
  block(now, loan, borrower, 'insufficient', amount, headroom, need)
  return 'insufficient|' .. headroom
end
local exposure = hget0(K_BEXP, borrower)
if cmp(exposure, room) > 0 then
  block(now, loan, borrower, 'borrower_limit_exceeded', amount, exposure, room)
  return 'borrower_limit|' .. exposure
end

local expires = fmt(now + ttl)
local hold = fmt(now + ttl + grace)
local before = hget0(K_STATE, 'reserved')
local fence = add_active(loan, borrower, amount, expires, hold, now)
audit(now, 'reserve', loan, amount, before, hget0(K_STATE, 'reserved'), nil, false, nil)
return 'reserved|' .. amount .. '|' .. expires .. '|' .. hold .. '|' .. fence .. '|0'
