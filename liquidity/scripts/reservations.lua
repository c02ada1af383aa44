-- reservations: up to ARGV[1] active reservations, soonest hold end first, as id/record pairs.
-- HMGET in chunks: Lua's unpack() fails beyond ~8,000 values ("too many results to unpack"),
-- which a pool with that many open loans reaches.
local ids = redis.call('ZRANGE', K_EXP, 0, tonumber(A[1]) - 1)
local out = {}
local CHUNK = 1000
for first = 1, #ids, CHUNK do
  local last = math.min(first + CHUNK - 1, #ids)
  local vals = redis.call('HMGET', K_RES, unpack(ids, first, last))
  for i = first, last do
    local v = vals[i - first + 1]
    if v then
      out[#out + 1] = ids[i]
      out[#out + 1] = v
    end
  end
end
return out
