-- benches/load: every request carries the next pre-signed PAYMENT-SIGNATURE value, never one twice.
-- wrk -s payments.lua URL -- BASE [stop]: thread k reads its own file BASE.k (one header value a line;
-- the harness splits the presigned payments into disjoint per-thread files), line by line as it sends, so
-- no thread has anything to load before the clock starts. A thread that runs out sends the request unpaid
-- (a 402, counted as non-2xx) and counts it as exhausted, so an undersized file shows in the results; with
-- "stop" it stops instead (the memory scenario, which spends an exact number of payments).
local next_id = 0
local all = {}

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(all, thread)
end

function init(args)
  local name = args[1] .. "." .. id
  file = assert(io.open(name, "r"), "cannot open " .. name)
  stop_when_done = args[2] == "stop"
  prefix = "GET " .. wrk.path .. " HTTP/1.1\r\nHost: " .. wrk.headers["Host"] .. "\r\nPAYMENT-SIGNATURE: "
  unpaid = "GET " .. wrk.path .. " HTTP/1.1\r\nHost: " .. wrk.headers["Host"] .. "\r\n\r\n"
  exhausted = 0
end

function request()
  local line = file:read("*l")
  if line == nil or #line == 0 then
    exhausted = exhausted + 1
    if stop_when_done then
      wrk.thread:stop()
    end
    return unpaid
  end
  return prefix .. line .. "\r\n\r\n"
end

function done(summary, latency, requests)
  local ex = 0
  for _, t in ipairs(all) do
    ex = ex + (t:get("exhausted") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d,"exhausted":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max, ex))
end
