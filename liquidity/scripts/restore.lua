-- restore: re-asserts an open loan's reservation as its workflow knows it. Never refuses (the
-- funds may already be promised to a signed transaction), works on an unknown pool.
-- ARGV: loan, borrower, amount, expires_at_ms, hold_until_ms
local loan, borrower, amount, expires, hold = A[1], A[2], A[3], A[4], A[5]
local outcome = 'restored'
if redis.call('HEXISTS', K_RES, loan) == 1 then
  outcome = 'already_active'
elseif redis.call('HEXISTS', K_TERM, loan) == 1 then
  outcome = 'already_terminal'
else
  local now = now_ms()
  local before = hget0(K_STATE, 'reserved')
  add_active(loan, borrower, amount, expires, hold, now)
  audit(now, 'restore', loan, amount, before, hget0(K_STATE, 'reserved'), nil, false, nil)
end
local st = redis.call('HMGET', K_STATE, 'known', 'headroom')
return {outcome, st[1] or '0', st[2] or '0'}
