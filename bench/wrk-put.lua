-- wrk script: PUT a 100-byte value to /v1/kv/key:NNNNNNNNNNNN (N random in [0, 100000),
-- zero-padded to 12 digits: the keys redis-benchmark -r uses), like
-- redis-benchmark -t set -d 100 -r 100000.
--   wrk -t2 -c50 -d10s -s bench/wrk-put.lua http://127.0.0.1:7380
local value = string.rep("x", 100)

request = function()
  local path = "/v1/kv/key:" .. string.format("%012d", math.random(0, 99999))
  return wrk.format("PUT", path, { ["Content-Type"] = "application/octet-stream" }, value)
end
