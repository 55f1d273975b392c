-- GET (or another method) with headers from the environment:
--   BENCH_HEADERS="Name: value|Name: value"   BENCH_METHOD=POST   BENCH_BODY='{...}'
--   BENCH_AUTHORIZATIONS="value,value;value,value"   one list per thread: each thread sends one
--   Authorization per request, in turn, so requests in flight at once are different users'.
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

local lists = {}
for list in string.gmatch(os.getenv("BENCH_AUTHORIZATIONS") or "", "[^;]+") do
  table.insert(lists, list)
end

-- Only then a request() of its own: without one wrk sends one request it formatted once.
if #lists > 0 then
  local counter = 0

  function setup(thread)
    counter = counter + 1
    thread:set("authorizations", lists[counter])
  end

  function init(args)
    prepared = {}  -- each user's request formatted once
    for value in string.gmatch(authorizations, "[^,]+") do
      wrk.headers["Authorization"] = value
      table.insert(prepared, wrk.format())
    end
    next_one = 0
  end

  function request()
    next_one = next_one % #prepared + 1
    return prepared[next_one]
  end
end
