-- wrk script: POST with a chunked body (Transfer-Encoding: chunked, no Content-Length), for
-- measuring the path a request body of undeclared length takes. The request is built once as
-- raw text (wrk's own request builder would add a Content-Length).
-- Arguments after "--": path, body size in bytes, chunk size in bytes (the body is that many
-- 'x' in chunks of that size; the size should be a multiple of the chunk size).
-- Run with: wrk -t1 -c50 -d3s -s bench/chunked.lua http://127.0.0.1:3000/ -- /upload 1048576 65536

init = function(args)
  local total = tonumber(args[2])
  local size = tonumber(args[3])
  local chunk = string.format("%x\r\n", size) .. string.rep("x", size) .. "\r\n"
  local parts = {}
  for _ = 1, math.floor(total / size) do
    parts[#parts + 1] = chunk
  end
  parts[#parts + 1] = "0\r\n\r\n"
  raw = "POST " .. args[1] .. " HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
    .. "Content-Type: application/octet-stream\r\n\r\n" .. table.concat(parts)
end

request = function()
  return raw
end
