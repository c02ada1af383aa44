-- suspect: the server holding this pool may have lost acknowledged writes (a failover without
-- replica acks: the primary's replication id is not the one the pool was established under).
-- The pool becomes unknown, so it fails closed until the reconciler has re-asserted every open
-- loan's reservation and established it again under the new replication id.
-- ARGV: the replication id now serving, why
local replid, why = A[1], A[2]
if redis.call('HGET', K_STATE, 'known') ~= '1' then return 0 end
redis.call('HSET', K_STATE, 'known', '0')
audit(now_ms(), 'suspect', nil, nil, nil, nil, why .. ' (now ' .. replid .. ')', true, nil)
return 1
