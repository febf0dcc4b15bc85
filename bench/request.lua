-- One wrk scenario of `make bench`, described by bench/run.py through the environment:
--   WRK_METHOD, WRK_PATH     the request; "{id}" in the path becomes the next task id
--   WRK_IDS                  a file of task ids, one a line; each wrk thread cycles through
--                            its own share, so a DELETE never meets an id another one took
--   WRK_THREADS              wrk's -t, to share the ids out
--   WRK_TOKEN, WRK_BODY      bearer token and JSON body, both optional
--   WRK_DELAY_MS             optional: each connection waits this long before each request
-- At the end it prints one JSON line. Any answer other than 2xx counts as a failure.

local method = os.getenv("WRK_METHOD")
local path = os.getenv("WRK_PATH")
local token = os.getenv("WRK_TOKEN")
local body = os.getenv("WRK_BODY")
local ids_file = os.getenv("WRK_IDS")
local thread_count = tonumber(os.getenv("WRK_THREADS") or "1")
local delay_ms = tonumber(os.getenv("WRK_DELAY_MS") or "0")

local headers = {}
if token then headers["Authorization"] = "Bearer " .. token end
if body then headers["Content-Type"] = "application/json" end

-- Globals, not locals: thread:set() and thread:get() see only a thread's globals.
index = 0
failed = 0
local threads = {}
local ids = {}
local next_id = 0

function setup(thread)
  thread:set("index", #threads)
  table.insert(threads, thread)
end

function init(args)
  if not ids_file then return end
  local line_number = 0
  for line in io.lines(ids_file) do
    if line_number % thread_count == index then table.insert(ids, line) end
    line_number = line_number + 1
  end
end

function request()
  local target = path
  if #ids > 0 then
    target = path:gsub("{id}", ids[next_id % #ids + 1])
    next_id = next_id + 1
  end
  return wrk.format(method, target, headers, body)
end

if delay_ms > 0 then
  function delay() return delay_ms end
end

function response(status, response_headers, response_body)
  if status < 200 or status > 299 then failed = failed + 1 end
end

function done(summary, latency, requests)
  local non_2xx = 0
  for _, thread in ipairs(threads) do non_2xx = non_2xx + thread:get("failed") end
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %.3f, "p50_ms": %.2f, "p99_ms": %.2f, ' ..
    '"non_2xx": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    non_2xx, errors.connect + errors.read + errors.write + errors.timeout))
end
