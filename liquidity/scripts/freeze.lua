-- freeze / unfreeze: ARGV: '1' to freeze or '0' to unfreeze, reason. Audited on change only.
local on, reason = A[1] == '1', A[2]
local frozen = redis.call('HGET', K_STATE, 'frozen') == '1'
if on == frozen then return 0 end
local now = now_ms()
if on then
  redis.call('HSET', K_STATE, 'frozen', '1', 'frozen_reason', reason)
  audit(now, 'freeze', nil, nil, nil, nil, reason, false, nil)
else
  redis.call('HDEL', K_STATE, 'frozen', 'frozen_reason')
  audit(now, 'unfreeze', nil, nil, nil, nil, reason, false, nil)
end
return 1
