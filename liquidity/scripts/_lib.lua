-- Shared prelude, prepended to every ledger script at load time (liquidity/scripts.py).
--
-- Amounts never become Lua numbers: Lua numbers are doubles and lose stroops above 2^53. Every
-- amount stays a canonical decimal string; sums are done by Redis itself (HINCRBY: exact 64-bit,
-- refuses overflow) and comparisons by cmp() below. Times and ledger sequence numbers are small
-- enough to be exact as doubles.
--
-- State hash fields: known, frozen, frozen_reason, ledger, total, locked, chain, pending,
-- reserved, headroom, fence. headroom = chain - pending - reserved is kept as its own counter so
-- reserve compares one figure instead of doing arithmetic.

local K_STATE, K_RES, K_EXP, K_BEXP = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local K_PEND, K_PAMT, K_TERM, K_TERMX = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local K_AUDIT, K_BLOCKED = KEYS[9], KEYS[10]

-- The arguments arrive as one NUL-separated string: the client spends more time packing
-- arguments than Redis spends running the script, so one argument instead of up to eight is
-- what keeps a reserve near the cost of a bare round trip. Callers refuse NUL inside values.
local A = {}
do
  local s = ARGV[1] or ''
  local i = 1
  while true do
    local j = string.find(s, '\0', i, true)
    if not j then
      A[#A + 1] = string.sub(s, i)
      break
    end
    A[#A + 1] = string.sub(s, i, j - 1)
    i = j + 1
  end
end

local AUDIT_MAXLEN = '100000'
local BLOCKED_MAXLEN = '20000'
-- Bounds per call keep one script from stalling Redis when many reservations expire at once;
-- what is left stays counted (errs on refusing, never on over-granting) until the next call.
local SWEEP_LIMIT = 1000
local TERM_TRIM_LIMIT = 100

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function fmt(n)
  return string.format('%d', n)
end

local function neg(s)
  if s == '0' then return '0' end
  if string.sub(s, 1, 1) == '-' then return string.sub(s, 2) end
  return '-' .. s
end

-- Exact comparison of canonical decimal integer strings: -1, 0 or 1.
local function cmp(a, b)
  if a == b then return 0 end
  local na, nb = string.sub(a, 1, 1) == '-', string.sub(b, 1, 1) == '-'
  if na ~= nb then
    if na then return -1 end
    return 1
  end
  local r
  if #a ~= #b then
    if #a < #b then r = -1 else r = 1 end
  else
    r = 0
    for i = 1, #a do
      local ca, cb = string.byte(a, i), string.byte(b, i)
      if ca ~= cb then
        if ca < cb then r = -1 else r = 1 end
        break
      end
    end
  end
  if na then return -r end
  return r
end

local function hget0(key, field)
  local v = redis.call('HGET', key, field)
  if not v then return '0' end
  return v
end

local function add(field, delta)
  if delta ~= '0' then redis.call('HINCRBY', K_STATE, field, delta) end
end

-- Active reservation record: amount|expires_at|hold_until|fence|created_at|borrower (borrower
-- last, so it may contain any character).
local function encode_res(amount, expires, hold, fence, created, borrower)
  return amount .. '|' .. expires .. '|' .. hold .. '|' .. fence .. '|' .. created .. '|' .. borrower
end

local function decode_res(v)
  return string.match(v, '^(%-?%d+)|(%d+)|(%d+)|(%d+)|(%d+)|(.*)$')
end

-- Terminal marker: committed|amount or released|amount, kept for the retention period.
local function decode_term(v)
  return string.match(v, '^(%a+)|(%-?%d+)$')
end

local function set_terminal(loan, state, amount, now, retention)
  redis.call('HSET', K_TERM, loan, state .. '|' .. amount)
  redis.call('ZADD', K_TERMX, fmt(now + retention), loan)
end

local function audit(now, action, loan, amount, before, after, reason, alarm, ledger)
  local a = '0'
  if alarm then a = '1' end
  redis.call('XADD', K_AUDIT, 'MAXLEN', '~', AUDIT_MAXLEN, '*',
    'action', action, 'loan', loan or '', 'amount', amount or '', 'rb', before or '',
    'ra', after or '', 'reason', reason or '', 'alarm', a, 'at', fmt(now), 'ledger', ledger or '')
end

-- A refusal, with the figures behind it as named fields (`figures`: name, value, ...): for
-- 'insufficient' headroom and need (= amount + buffer), for 'borrower_limit_exceeded' exposure
-- and room (= limit - amount); the reader derives available/shortage from them exactly, in Python.
local function block(now, loan, borrower, reason, required, figures)
  local fields = {'loan', loan, 'borrower', borrower, 'reason', reason, 'required', required,
    'at', fmt(now)}
  for _, v in ipairs(figures or {}) do fields[#fields + 1] = v end
  redis.call('XADD', K_BLOCKED, 'MAXLEN', '~', BLOCKED_MAXLEN, '*', unpack(fields))
end

-- Removes an active reservation and gives its amount back to the headroom.
local function drop_active(loan, borrower, amount)
  redis.call('HDEL', K_RES, loan)
  redis.call('ZREM', K_EXP, loan)
  local left = redis.call('HINCRBY', K_BEXP, borrower, neg(amount))
  if left == 0 then redis.call('HDEL', K_BEXP, borrower) end
  add('reserved', neg(amount))
  add('headroom', amount)
end

-- Creates an active reservation and takes its amount from the headroom.
local function add_active(loan, borrower, amount, expires, hold, now)
  local fence = redis.call('HINCRBY', K_STATE, 'fence', 1)
  redis.call('HSET', K_RES, loan, encode_res(amount, expires, hold, fmt(fence), fmt(now), borrower))
  redis.call('ZADD', K_EXP, hold, loan)
  redis.call('HINCRBY', K_BEXP, borrower, amount)
  add('reserved', amount)
  add('headroom', neg(amount))
  return fmt(fence)
end

-- Funds the chain consumed after the held snapshot's ledger: counted until a snapshot covers it.
local function add_pending(loan, amount, ledger)
  redis.call('ZADD', K_PEND, ledger, loan)
  redis.call('HSET', K_PAMT, loan, amount)
  add('pending', amount)
  add('headroom', neg(amount))
end

-- Releases reservations whose hold has passed (cost: what it removes) and forgets terminal
-- markers past their retention. Returns the expired loan ids.
local function sweep(now, retention)
  local ids = redis.call('ZRANGEBYSCORE', K_EXP, '-inf', fmt(now), 'LIMIT', 0, SWEEP_LIMIT)
  for _, loan in ipairs(ids) do
    local v = redis.call('HGET', K_RES, loan)
    if v then
      local amount, _e, _h, _f, _c, borrower = decode_res(v)
      local before = hget0(K_STATE, 'reserved')
      drop_active(loan, borrower, amount)
      set_terminal(loan, 'released', amount, now, retention)
      audit(now, 'expire', loan, amount, before, hget0(K_STATE, 'reserved'), 'expired', false, nil)
    else
      redis.call('ZREM', K_EXP, loan)
    end
  end
  local old = redis.call('ZRANGEBYSCORE', K_TERMX, '-inf', fmt(now), 'LIMIT', 0, TERM_TRIM_LIMIT)
  if #old > 0 then
    redis.call('HDEL', K_TERM, unpack(old))
    redis.call('ZREM', K_TERMX, unpack(old))
  end
  return ids
end
