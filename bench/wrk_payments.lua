-- One payment (or one transfer) per request, for wrk: bench/payments.py sets the environment.
--   BENCH_RUN (id prefix), BENCH_WALLETS (wallet ids "w0".."wN-1"; wallet k belongs to
--   participant k mod BENCH_PARTICIPANTS), BENCH_HOT_PAYER_FRACTION (share of payments whose
--   payer is participant 0), BENCH_MODE ("transfer", "immediate" or "two_phase": payments
--   are prepared, and each one answered prepared is fulfilled by a later request),
--   BENCH_KEY (the operator's key).
local run_id = os.getenv("BENCH_RUN") or "run"
local wallets = tonumber(os.getenv("BENCH_WALLETS") or "10000")
local participants = tonumber(os.getenv("BENCH_PARTICIPANTS") or "10")
local hot_fraction = tonumber(os.getenv("BENCH_HOT_PAYER_FRACTION") or "0")
local mode = os.getenv("BENCH_MODE") or "immediate"
local headers = {["Content-Type"] = "application/json",
                 ["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or "")}
local next_thread = 0

function setup(thread)
  thread:set("thread_index", next_thread)
  next_thread = next_thread + 1
end

function init(args)
  math.randomseed(thread_index * 7919 + 17)
  sent = 0
  prepared = {}  -- ids answered "prepared", oldest first: each is fulfilled next
  head, tail = 1, 0
end

local function wallets_pair()
  local payer = math.random(0, wallets - 1)
  if math.random() < hot_fraction then  -- a wallet of participant 0
    payer = participants * math.random(0, math.floor(wallets / participants) - 1)
  end
  local payee = math.random(0, wallets - 1)
  while payee % participants == payer % participants do payee = math.random(0, wallets - 1) end
  return payer, payee
end

function request()
  if head <= tail then  -- two_phase: fulfil a payment answered prepared
    local path = "/v1/payments/" .. prepared[head] .. "/fulfil"
    prepared[head] = nil
    head = head + 1
    return wrk.format("POST", path, headers, "")
  end
  sent = sent + 1
  local payer, payee = wallets_pair()
  local id = string.format("%s-%d-%d", run_id, thread_index, sent)
  if mode == "transfer" then
    return wrk.format("POST", "/v1/transfers", headers, string.format(
      '{"id":"%s","debit_account_id":"w%d","credit_account_id":"w%d","amount":%d,' ..
      '"ledger":"USD","code":1}', id, payer, payee, math.random(1, 1000)))
  end
  local extra = ""
  if mode == "two_phase" then
    extra = ',"mode":"two_phase","timeout_ms":600000'
  end
  return wrk.format("POST", "/v1/payments", headers, string.format(
    '{"id":"%s","payer_account_id":"w%d","payee_account_id":"w%d","amount":%d,' ..
    '"ledger":"USD"%s}', id, payer, payee, math.random(1, 1000), extra))
end

function response(status, headers, body)
  if mode == "two_phase" and status == 201 then
    local id = string.match(body, '"state":"prepared"') and
      string.match(body, '"payment":{"id":"([^"]+)"')
    if id then
      tail = tail + 1
      prepared[tail] = id
    end
  end
end

function done(summary, latency, requests)
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"errors_status":%d,"errors_connect":%d,"errors_read":%d,"errors_write":%d,' ..
    '"errors_timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, summary.errors.status, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout))
end
