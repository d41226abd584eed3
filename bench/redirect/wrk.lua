-- Used by bench/redirect.sh for every wrk run: prints one line of key=value fields at the
-- end. With WRK_DELAY_MS set, every connection waits that long after each response before
-- sending its next request (wrk's delay() hook), which paces the load at about
-- connections * 1000 / (delay + latency) requests per second: the "fixed rate" of plain wrk.
-- wrk starts a request's latency clock when it writes the request, after the delay.
local pause = tonumber(os.getenv("WRK_DELAY_MS") or "0")
if pause > 0 then
  function delay()
    return pause
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK requests=%d duration_us=%d bytes=%d rps=%.1f p50_us=%d p90_us=%d p99_us=%d " ..
    "p999_us=%d max_us=%d mean_us=%.1f err_connect=%d err_read=%d err_write=%d " ..
    "err_status=%d err_timeout=%d\n",
    summary.requests, summary.duration, summary.bytes,
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end
