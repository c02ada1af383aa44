-- release: gives an active reservation back. Terminal and exclusive with commit.
-- ARGV: loan, reason, retention_ms
local loan, reason, retention = A[1], A[2], tonumber(A[3])
local v = redis.call('HGET', K_RES, loan)
if v then
  local now = now_ms()
  local amount, _e, _h, _f, _c, borrower = decode_res(v)
  local before = hget0(K_STATE, 'reserved')
  drop_active(loan, borrower, amount)
  set_terminal(loan, 'released', amount, now, retention)
  audit(now, 'release', loan, amount, before, hget0(K_STATE, 'reserved'), reason, false, nil)
  return 'released|' .. amount
end
local t = redis.call('HGET', K_TERM, loan)
if not t then return 'unknown_loan|' .. '0' end
local state, amount = decode_term(t)
if state == 'committed' then return 'already_committed|' .. amount end
return 'already_released|' .. amount
