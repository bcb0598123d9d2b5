-- wrk script: POST /v1/events, every request a distinct service.completed event.
-- Arguments (after --): api_key customer_prefix customer_count timestamp prefix.
-- Visits go round the customers customer_prefix00, 01, ... (two digits, fixed size).
-- The id and repair_order_id are prefix-thread-counter, zero padded, so every request
-- has a new idempotency key (a repeat would be answered as a cheap duplicate) and
-- every body has the same size (the plain endpoint gets byte-identical load).

local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
end

local counter = 0
local customer_prefix, customers, stamp, prefix
local template = '{"type":"service.completed","id":"%s","occurred_at":"%s",'
  .. '"data":{"repair_order_id":"%s","customer_id":"%s","completed_at":"%s",'
  .. '"advisor":"sam","work_performed":"brake pads and rotors, front axle"}}'

function init(args)
  customer_prefix, customers, stamp, prefix = args[2], tonumber(args[3]), args[4], args[5]
  wrk.method = "POST"
  wrk.headers["Authorization"] = "Bearer " .. args[1]
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local id = string.format("%s-%d-%09d", prefix, tid, counter)
  local customer = string.format("%s%02d", customer_prefix, counter % customers)
  local body = string.format(template, id, stamp, id, customer, stamp)
  return wrk.format(nil, nil, nil, body)
end

-- One machine-readable line for bench/run.py (wrk's own text is kept as detail).
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "connect_errors": %d, '
      .. '"read_errors": %d, "write_errors": %d, "status_errors": %d, "timeouts": %d, '
      .. '"p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
