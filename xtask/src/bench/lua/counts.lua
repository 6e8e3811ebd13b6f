-- Written by `cargo xtask bench`: counts non-2xx and degraded responses per thread and
-- prints one JSON line when the run is done.
local threads = {}
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_id", thread_count)
  table.insert(threads, thread)
end

non2xx = 0
degraded = 0

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
  if headers["x-discount-unavailable"] ~= nil or headers["X-Discount-Unavailable"] ~= nil then
    degraded = degraded + 1
  end
end

function done(summary, latency, requests)
  local n2, dg = 0, 0
  for _, t in ipairs(threads) do
    n2 = n2 + (t:get("non2xx") or 0)
    dg = dg + (t:get("degraded") or 0)
  end
  local e = summary.errors
  local f = math.floor
  io.write(string.format(
    'XTASK_BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,'
      .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"non2xx":%d,"degraded":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    f(latency:percentile(50)), f(latency:percentile(90)), f(latency:percentile(99)),
    f(latency.max), latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout,
    n2, dg))
end
