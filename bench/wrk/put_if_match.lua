-- PUT with If-Match: each thread goes through its own todos (BENCH_IDS_FILE holds
-- "id:tag,...;id:tag,...", one list per thread) with each one's current ETag, so every If-Match
-- is current (a 412 is an error: no todo is visited twice in a run).
local headers = os.getenv("BENCH_HEADERS") or ""
local file = assert(io.open(os.getenv("BENCH_IDS_FILE")))
local lists = {}
for list in string.gmatch(file:read("*a"), "[^;]+") do table.insert(lists, list) end
file:close()
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("ids", lists[counter])
end

function init(args)
  todos = {}
  for id, tag in string.gmatch(ids, "(%d+):([%w-]+)") do
    table.insert(todos, {id = id, tag = tag})
  end
  next_todo = 0
  for pair in string.gmatch(headers, "[^|]+") do
    local name, value = string.match(pair, "^%s*([^:]+):%s*(.*)$")
    if name then wrk.headers[name] = value end
  end
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  next_todo = next_todo % #todos + 1
  local todo = todos[next_todo]
  wrk.headers["If-Match"] = '"' .. todo.tag .. '"'
  return wrk.format("PUT", "/api/v1.0/todos/" .. todo.id, nil, '{"name": "bench", "task": "put"}')
end
