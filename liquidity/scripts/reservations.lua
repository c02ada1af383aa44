-- reservations: up to ARGV[1] active reservations, soonest hold end first, as id/record pairs.
local ids = redis.call('ZRANGE', K_EXP, 0, tonumber(A[1]) - 1)
if #ids == 0 then return {} end
local vals = redis.call('HMGET', K_RES, unpack(ids))
local out = {}
for i, loan in ipairs(ids) do
  if vals[i] then
    out[#out + 1] = loan
    out[#out + 1] = vals[i]
  end
end
return out
