-- wrk script for the plain mode of scenarios that need a method or a body (bench/lib/scenarios.mjs):
-- one request per connection at a time, built once (wrk keeps a static request when the script
-- defines no request() function, so wrk pays nothing per request for Lua).
-- Arguments after "--": method, path, body size in bytes (the body is that many 'x',
-- application/octet-stream). bench/run.mjs passes them.
-- Run with: wrk -t1 -c50 -d5s --latency -s bench/request.lua http://127.0.0.1:3000/ -- POST /echo 1024

init = function(args)
  wrk.method = args[1] or "GET"
  wrk.path = args[2] or "/"
  local bytes = tonumber(args[3]) or 0
  if bytes > 0 then
    wrk.body = string.rep("x", bytes)
    wrk.headers["Content-Type"] = "application/octet-stream"
  end
  -- wrk.init formats the request from wrk.method/path/headers/body after this returns.
end
