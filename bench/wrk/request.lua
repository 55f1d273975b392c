-- GET (or another method) with headers from the environment:
--   BENCH_HEADERS="Name: value|Name: value"   BENCH_METHOD=POST   BENCH_BODY='{...}'
local headers = os.getenv("BENCH_HEADERS") or ""
for pair in string.gmatch(headers, "[^|]+") do
  local name, value = string.match(pair, "^%s*([^:]+):%s*(.*)$")
  if name then wrk.headers[name] = value end
end
wrk.method = os.getenv("BENCH_METHOD") or "GET"
local body = os.getenv("BENCH_BODY")
if body and #body > 0 then
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end
