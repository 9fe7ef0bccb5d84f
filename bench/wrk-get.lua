-- wrk script: GET /v1/kv/key:NNNNNNNNNNNN (N random in [0, 100000), zero-padded: the keys
-- redis-benchmark -r 100000 writes), like
-- redis-benchmark -t get -r 100000 (run wrk-put.lua or a redis-benchmark SET first so that
-- the keys exist; a missing key is a 404 and wrk counts it as a non-2xx response).
--   wrk -t2 -c50 -d10s -s bench/wrk-get.lua http://127.0.0.1:7380
request = function()
  return wrk.format("GET", "/v1/kv/key:" .. string.format("%012d", math.random(0, 99999)))
end
