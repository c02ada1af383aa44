-- sweep: releases expired reservations. ARGV: retention_ms
return sweep(now_ms(), tonumber(A[1]))
