-- sweep: releases expired reservations, at most SWEEP_LIMIT per call. ARGV: retention_ms
-- Returns {expired loan ids, 1 when the batch was full (more may be due) else 0}.
local ids = sweep(now_ms(), tonumber(A[1]))
local more = 0
if #ids == SWEEP_LIMIT then more = 1 end
return {ids, more}
