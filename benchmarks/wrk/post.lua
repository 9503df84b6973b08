-- wrk script for the ivs-proxy benchmark: POST one JSON body, SDK-like headers, and print
-- one machine-readable summary line ("BENCH_RESULT {json}") when the run is done.
--   BENCH_BODY_FILE   the request body (written by benchmarks/payloads.py)
local f = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["User-Agent"] = "Boto3/1.35.0 md/Botocore#1.35.0 ua/2.0 os/linux#6 md/arch#x86_64 lang/python#3.11"
wrk.headers["amz-sdk-invocation-id"] = "4f8a2c8e-3d6b-4a51-9b1e-7c2d5e6f8a90"
wrk.headers["amz-sdk-request"] = "attempt=1; max=3"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"min": %d, "mean": %.2f, "p50": %d, "p90": %d, "p99": %d, "p999": %d, "max": %d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max))
end
