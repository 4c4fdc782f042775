-- One transfer per request, for wrk: unique ids, uniform or hot accounts, a quota per thread.
-- Settings come from the environment (bench/throughput.py sets them):
--   BENCH_RUN (id prefix), BENCH_ACCOUNTS, BENCH_HOT_FRACTION, BENCH_HOT_ACCOUNTS, BENCH_QUOTA,
--   BENCH_KEY (the API key sent with each request), BENCH_ACCOUNT_PREFIX (account ids: "a")
local run_id = os.getenv("BENCH_RUN") or "run"
local accounts = tonumber(os.getenv("BENCH_ACCOUNTS") or "10000")
local hot_fraction = tonumber(os.getenv("BENCH_HOT_FRACTION") or "0")
local hot_accounts = tonumber(os.getenv("BENCH_HOT_ACCOUNTS") or "10")
local quota = tonumber(os.getenv("BENCH_QUOTA") or "1000")
local headers = {["Content-Type"] = "application/json",
                 ["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or "")}
local prefix = os.getenv("BENCH_ACCOUNT_PREFIX") or "a"
local next_thread = 0

function setup(thread)
  thread:set("thread_index", next_thread)
  next_thread = next_thread + 1
end

function init(args)
  math.randomseed(thread_index * 7919 + 17)
  sent = 0
  answered = 0
end

local function pair()
  local debit = math.random(0, accounts - 1)
  local credit = math.random(0, accounts - 1)
  if math.random() < hot_fraction then
    if math.random() < 0.5 then debit = math.random(0, hot_accounts - 1)
    else credit = math.random(0, hot_accounts - 1) end
  end
  while credit == debit do credit = math.random(0, accounts - 1) end
  return debit, credit
end

function request()
  sent = sent + 1
  local debit, credit = pair()
  local body = string.format(
    '{"id":"%s-%d-%d","debit_account_id":"%s%d","credit_account_id":"%s%d",' ..
    '"amount":%d,"ledger":"USD","code":1}',
    run_id, thread_index, sent, prefix, debit, prefix, credit, math.random(1, 1000))
  return wrk.format("POST", "/v1/transfers", headers, body)
end

function response(status, headers, body)
  answered = answered + 1
  if answered >= quota then wrk.thread:stop() end
end

function done(summary, latency, requests)
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"p999_us":%d,' ..
    '"max_us":%d,"errors_status":%d,"errors_connect":%d,"errors_read":%d,' ..
    '"errors_write":%d,"errors_timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), latency.max, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout))
end
