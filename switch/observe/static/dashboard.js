// The payswitch dashboard: polls /dashboard/data (read-only) and redraws. No build step.
"use strict";

const POLL_MS = 1000;
const COLORS = ["#2f6fde", "#d9480f", "#2b8a3e", "#ae3ec9", "#e67700", "#1098ad", "#c2255c"];
const charts = {};
const state = { updates: 0, points: 0, errors: 0 };
window.payswitchDashboard = state;  // read by the browser test

function chart(id, seriesNames) {
  const element = document.getElementById(id);
  const options = {
    width: element.clientWidth || 540, height: 200,
    scales: { x: { time: true } },
    series: [{}, ...seriesNames.map((name, i) => ({ label: name, stroke: COLORS[i % COLORS.length],
                                                    width: 1.5 }))],
    axes: [{}, { size: 60 }],
  };
  return new uPlot(options, [[], ...seriesNames.map(() => [])], element);
}

function draw(id, names, time, columns) {
  const key = id + ":" + names.join(",");
  if (!charts[id] || charts[id].key !== key) {
    if (charts[id]) charts[id].plot.destroy();
    charts[id] = { key, plot: chart(id, names) };
  }
  charts[id].plot.setData([time, ...columns]);
}

function rows(tableId, values) {
  const body = document.querySelector(`#${tableId} tbody`);
  body.replaceChildren(...values.map((cells) => {
    const tr = document.createElement("tr");
    for (const cell of cells) {
      const td = document.createElement("td");
      if (cell && typeof cell === "object") { td.textContent = cell.text; td.className = cell.cls; }
      else td.textContent = cell;
      tr.appendChild(td);
    }
    return tr;
  }));
}

const number = (value) => Number(value).toLocaleString("en");

// Balanced at rest; while cross-shard transfers are in flight their pending halves (and the
// shards being read a moment apart) leave a gap no larger than the money pending.
function bookStatus(l) {
  if (l.balanced) return { text: "balanced", cls: "good" };
  const gap = Math.abs((l.debits_posted + l.debits_pending) - (l.credits_posted + l.credits_pending));
  const pending = Math.max(l.debits_pending, l.credits_pending);
  if (pending > 0 && gap <= pending) return { text: "transfers in flight", cls: "warn" };
  return { text: "UNBALANCED", cls: "bad" };
}

// A position's share of its cap: a warning past the alarm threshold, bad at the cap.
function usage(p, alarmPercent) {
  const text = p.net_debit_cap ? `${p.used_percent.toFixed(1)}%` : "no cap";
  if (p.net_debit_cap && p.position >= p.net_debit_cap) return { text, cls: "bad" };
  if (p.alarm) return { text: `${text} (alarm at ${alarmPercent}%)`, cls: "warn" };
  return { text, cls: "good" };
}

function replicationShown(s) {
  const lag = s.follower_lag_records ? ` (${number(s.follower_lag_records)} behind)` : "";
  const cls = { in_sync: "good", off: "", async: "", catching_up: "warn", blocked: "bad" };
  return { text: `${s.replication}${lag}`, cls: cls[s.replication] || "" };
}

function render(data) {
  const nodes = Object.fromEntries(data.nodes.map((n) => [n.node_id, n]));
  rows("shards", data.shards.map((s) => [
    `${(nodes[s.node_id] || {}).ip || "?"} ${String(s.node_id).slice(0, 8)}`, s.shard,
    { text: s.state, cls: s.state === "serving" ? "good" : "bad" }, s.restarts, s.epoch,
    replicationShown(s), s.pid,
    s.slots, number(s.accounts), number(s.transfers), number(s.queue_depth), s.in_doubt,
    number(s.last_seq), (s.log_bytes / 1048576).toFixed(1), s.snapshot_age_seconds.toFixed(0),
    s.recovery_ms.toFixed(1),
  ]));
  rows("ledgers", data.ledgers.filter((l) => l.debits_posted || l.debits_pending).map((l) => [
    l.ledger, number(l.debits_posted), number(l.credits_posted),
    `${number(l.debits_pending)} / ${number(l.credits_pending)}`,
    bookStatus(l),
  ]));
  rows("hottest", data.hottest.map(([account, count]) => [account, number(count)]));
  const hub = data.switch_layer || { positions: [], windows: [] };
  rows("positions", hub.positions.map((p) => [
    p.participant_id, p.ledger, number(p.position), number(p.net_debit_cap),
    usage(p, p.alarm_percent), number(p.headroom), number(p.settlement_balance),
  ]));
  rows("windows", hub.windows.map((w) => [w.ledger, w.open]));
  state.positions = hub.positions.length;
  rows("rejections", Object.entries(data.rejections).map(([code, count]) => [code, number(count)]));

  const series = data.series;
  draw("chart-throughput", ["committed (every ingress)", "in requests here (any result)"], series.time,
       [series.committed_per_s, series.transfers_per_s]);
  draw("chart-latency", ["p50", "p99"], series.time, [series.latency_ms_p50, series.latency_ms_p99]);
  const shardIds = Object.keys(data.shard_series).sort((a, b) => a - b);
  if (shardIds.length) {
    const time = data.shard_series[shardIds[0]].time;
    const names = shardIds.map((i) => `shard ${i}`);
    const column = (name) => shardIds.map((i) => data.shard_series[i][name]);
    draw("chart-shards", names, time, column("commands_per_s"));
    draw("chart-commit", names, time, column("commit_ms_p99"));
    draw("chart-queue", names, time, column("queue_depth"));
  }
  const link = document.getElementById("ray-link");
  if (data.ray_dashboard_url) { link.href = data.ray_dashboard_url; link.hidden = false; }
  state.points = series.time.length;
  state.shards = data.shards.length;
  state.updates += 1;
  const latest = series.committed_per_s[series.committed_per_s.length - 1] || 0;
  document.getElementById("status").textContent =
    `${data.shards.length} shards on ${data.nodes.length} node(s) · ${number(Math.round(latest))} transfers committed/s`;
}

async function poll() {
  try {
    const response = await fetch("/dashboard/data", { cache: "no-store" });
    render(await response.json());
  } catch (error) {
    state.errors += 1;
    document.getElementById("status").textContent = `no data: ${error}`;
  }
  setTimeout(poll, POLL_MS);
}

poll();
