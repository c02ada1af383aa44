-- commit: the chain settled the loan at `ledger`. Consumes the reservation; a settlement after a
-- release is still counted (the chain is the truth) and alarms.
-- ARGV: loan, ledger, retention_ms
local loan, ledger, retention = A[1], A[2], tonumber(A[3])
local now = now_ms()
-- Counted as pending only if the held snapshot does not already include this ledger.
local counted = tonumber(ledger) > tonumber(hget0(K_STATE, 'ledger'))

local v = redis.call('HGET', K_RES, loan)
if v then
  local amount, _e, _h, _f, _c, borrower = decode_res(v)
  local before = hget0(K_STATE, 'reserved')
  drop_active(loan, borrower, amount)
  if counted then add_pending(loan, amount, ledger) end
  set_terminal(loan, 'committed', amount, now, retention)
  audit(now, 'commit', loan, amount, before, hget0(K_STATE, 'reserved'), nil, false, ledger)
  return 'committed|' .. amount
end

local t = redis.call('HGET', K_TERM, loan)
if not t then return 'unknown_loan|' .. '0' end
local state, amount = decode_term(t)
if state == 'committed' then return 'already_committed|' .. amount end

local before = hget0(K_STATE, 'reserved')
if counted then add_pending(loan, amount, ledger) end
set_terminal(loan, 'committed', amount, now, retention)
audit(now, 'late_commit', loan, amount, before, before, 'settled after release', true, ledger)
return 'late_commit|' .. amount
