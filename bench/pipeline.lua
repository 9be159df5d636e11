-- wrk script for the pipelined mode: each write carries several (default 16) requests.
-- wrk counts the requests in the request string, so Requests/sec counts responses; latency is
-- recorded once per batch (from the write until the last response of the batch).
-- Arguments after "--" (bench/run.mjs passes them): depth (default 16), then optionally method,
-- path and body size in bytes (default GET / with no body; a body is that many 'x',
-- application/octet-stream, with its Content-Length).
-- Run with: wrk -t1 -c50 -d5s --latency -s bench/pipeline.lua http://127.0.0.1:3000/ -- 16 POST /echo 1024
--
-- The batch is wrk's static request: wrk.init formats the request with wrk.format() right after
-- init() returns and sends that one buffer on every connection, so replacing wrk.format here
-- hands it the whole batch. Defining a global request() instead would make wrk call Lua and copy
-- the batch on every write (16 MiB per write in the 1 MiB upload scenario): wrk, not the server,
-- would then be the limit.

init = function(args)
  local depth = tonumber(args[1]) or 16
  local method = args[2] or "GET"
  local path = args[3] or "/"
  local bytes = tonumber(args[4]) or 0
  local headers = { Host = wrk.headers["Host"] }
  local body = nil
  if bytes > 0 then
    body = string.rep("x", bytes)
    headers["Content-Type"] = "application/octet-stream"
  end
  -- wrk.format adds Content-Length when there is a body.
  local batch = string.rep(wrk.format(method, path, headers, body), depth)
  wrk.format = function()
    return batch
  end
end
