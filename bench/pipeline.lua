-- wrk script for the pipelined mode: each write carries several (default 16) GET / requests.
-- wrk counts the requests in the string request() returns, so Requests/sec counts responses;
-- latency is recorded once per batch (from the write until the last response of the batch).
-- The depth comes from the arguments after "--" (bench/run.mjs passes it), 16 by default.
-- Run with: wrk -t1 -c50 -d5s --latency -s bench/pipeline.lua http://127.0.0.1:3000/ -- 16

local batch

init = function(args)
  local depth = tonumber(args[1]) or 16
  local copies = {}
  for i = 1, depth do
    copies[i] = wrk.format(nil, "/")
  end
  batch = table.concat(copies)
end

request = function()
  return batch
end
