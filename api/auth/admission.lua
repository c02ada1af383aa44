-- Admission of one POST /v1/loans for one principal (an API key or a borrower account), atomic:
-- a sliding-window rate limit, then the cap on its open unsigned reservations.
--
-- KEYS[1] rate log: a sorted set of admitted requests scored by their time (ms)
-- KEYS[2] open set: loan ids reserved and not yet submitted, scored by when they stop counting
--         (the reservation's expiry: after it the funding transaction can no longer land)
-- ARGV[1] NUL-separated: limit, window_ms, cap, loan_id, hold_until_ms, request_nonce
-- Both keys share the principal's hash tag, so this is one slot in Redis Cluster.
--
-- Returns {'ok', added} (added = 1 when the loan id is newly counted, 0 when it already was:
-- a replayed request), {'rate_limited', retry_after_ms} or {'cap', open_count}.
local A = {}
for part in string.gmatch((ARGV[1] or '') .. '\0', '([^%z]*)%z') do A[#A + 1] = part end
local limit, window, cap = tonumber(A[1]), tonumber(A[2]), tonumber(A[3])
local loan_id, hold_until, nonce = A[4], tonumber(A[5]), A[6]

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  local retry = window
  if oldest[2] then retry = tonumber(oldest[2]) + window - now end
  if retry < 1 then retry = 1 end
  return {'rate_limited', retry}
end
redis.call('ZADD', KEYS[1], now, now .. ':' .. nonce)
redis.call('PEXPIRE', KEYS[1], window)

redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZSCORE', KEYS[2], loan_id) then
  return {'ok', 0}
end
local open = redis.call('ZCARD', KEYS[2])
if open >= cap then
  return {'cap', open}
end
redis.call('ZADD', KEYS[2], hold_until, loan_id)
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[2], math.max(tonumber(last[2]), hold_until) + 1000)
return {'ok', 1}
