// ckite admin console: polls /cluster/status (which this member gathers from every member's
// /status server-side, so the page needs no cross-origin requests) and renders it.
// Plain DOM code, textContent only: values come from the network and are never parsed as HTML.
"use strict";

const HISTORY_KEY = "ckite.leaderChanges";
const HISTORY_LENGTH = 20;
const LAG_WARNING = 100;   // entries behind the leader before a follower row is highlighted

let pollMs = 1000;

function $(id) { return document.getElementById(id); }

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text === null || text === undefined ? "–" : String(text);
  if (className) td.className = className;
  return td;
}

function fill(tbody, items, renderRow) {
  tbody.replaceChildren();
  for (const item of items) renderRow(tbody.insertRow(), item);
}

function leaderView(members) {
  // The leader's own status holds the per-follower replication state.
  for (const entry of members) {
    if (entry.status && entry.status.cluster.state === "Leader") return entry.status;
  }
  return null;
}

function renderMembers(members, leaderStatus) {
  const followers = leaderStatus ? leaderStatus.cluster.stateInfo.followers || {} : {};
  fill($("members").tBodies[0], members, (row, entry) => {
    const status = entry.status;
    const progress = followers[entry.id] || {};
    row.classList.toggle("self", entry.self);
    row.dataset.member = entry.id;   // stable hooks for scripts and tests, whatever the columns
    row.dataset.role = status ? status.cluster.state : "unreachable";
    cell(row, entry.id);
    if (!status) {
      row.classList.add("unreachable");
      cell(row, "unreachable", "error");
      const reason = cell(row, entry.error, "error");
      reason.colSpan = 7;
      cell(row, entry.fetchMs + " ms");
      return;
    }
    const cluster = status.cluster;
    cell(row, cluster.state, "role-" + cluster.state);
    cell(row, cluster.term);
    cell(row, cluster.leader);
    cell(row, status.log.commitIndex);
    cell(row, status.log.lastApplied);
    cell(row, status.log.lastIndex);
    cell(row, cluster.state === "Leader" ? 0 : progress.lag);
    cell(row, cluster.state === "Leader" ? "(leader)" : progress.lastHeartbeatACK);
    cell(row, entry.fetchMs + " ms");
  });
}

function renderFollowers(leaderStatus) {
  const info = leaderStatus ? leaderStatus.cluster.stateInfo : {};
  const followers = Object.entries(info.followers || {});
  fill($("followers").tBodies[0], followers, (row, [peer, progress]) => {
    row.classList.toggle("lagging", progress.lag >= LAG_WARNING);
    cell(row, peer);
    cell(row, progress.matchIndex);
    cell(row, progress.nextIndex);
    cell(row, progress.lag);
    cell(row, progress.inflight);
    cell(row, progress.lastHeartbeatACK);
  });
  $("leader-uptime").textContent = leaderStatus
    ? `${leaderStatus.id} has led for ${info.leaderUptime}. ${readsText(info)}` : "No member is leading right now.";
}

function readsText(info) {
  if (info.reads !== "lease") return "Reads: ReadIndex (a quorum round per batch of reads).";
  if (info.leaseRevoked) return "Reads: lease revoked by a leadership transfer, ReadIndex until the next leader.";
  return info.leaseRemainingMs > 0 ? `Reads: leader lease, ${info.leaseRemaining} left.`
    : "Reads: leader lease not held right now, ReadIndex meanwhile.";
}

function loadHistory() {
  try { return JSON.parse(sessionStorage.getItem(HISTORY_KEY)) || []; } catch (e) { return []; }
}

function recordLeader(term, leader) {
  const history = loadHistory();
  const last = history[history.length - 1];
  if (last && last.term === term && last.leader === leader) return history;
  history.push({term, leader, at: new Date().toLocaleTimeString()});
  const trimmed = history.slice(-HISTORY_LENGTH);
  sessionStorage.setItem(HISTORY_KEY, JSON.stringify(trimmed));
  return trimmed;
}

function renderHistory(history) {
  const list = $("leader-changes");
  list.replaceChildren();
  for (const change of history.slice().reverse()) {
    const item = document.createElement("li");
    item.textContent = `${change.at}: term ${change.term}, leader ${change.leader || "none"}`;
    list.appendChild(item);
  }
}

function render(data) {
  const members = data.members;
  const mine = members.find((entry) => entry.self);
  const leaderStatus = leaderView(members);
  const term = Math.max(...members.filter((m) => m.status).map((m) => m.status.cluster.term));
  const leader = leaderStatus ? leaderStatus.id : (mine && mine.status.cluster.leader);
  $("member-id").textContent = data.self;
  $("leader").textContent = leader || "none";
  $("term").textContent = term;
  const named = Object.keys(data.leaders);
  $("agreement").textContent = named.length > 1
    ? "members disagree on the leader: " + named.join(", ") : "members agree on the leader";
  $("updated").textContent = new Date().toLocaleTimeString();
  renderMembers(members, leaderStatus);
  renderFollowers(leaderStatus);
  renderHistory(recordLeader(term, leader || null));
  $("raw-status").textContent = JSON.stringify(mine && mine.status, null, 2);
}

async function poll() {
  try {
    const response = await fetch("/cluster/status", {cache: "no-store"});
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    render(await response.json());
    $("poll-error").hidden = true;
  } catch (error) {
    $("poll-error").textContent = `(cannot reach this member: ${error.message})`;
    $("poll-error").hidden = false;
  }
  setTimeout(poll, pollMs);
}

async function showResponse(response) {
  const type = response.headers.get("Content-Type") || "";
  const body = type.includes("json") ? JSON.stringify(await response.json(), null, 2) : await response.text();
  $("kv-result").textContent = `${response.status} ${response.statusText}\n${body}`;
}

async function keyValue(method, local) {
  const key = $("kv-key").value;
  const url = "/kv/" + encodeURIComponent(key) + (local ? "?local=true" : "");
  const options = method === "PUT" ? {method, body: $("kv-value").value} : {method};
  try {
    await showResponse(await fetch(url, options));
  } catch (error) {
    $("kv-result").textContent = `request failed: ${error.message}`;
  }
}

function setUpKeyValueForm() {
  $("kv-section").hidden = false;
  $("kv-form").addEventListener("submit", (event) => { event.preventDefault(); keyValue("PUT", false); });
  $("kv-get").addEventListener("click", () => keyValue("GET", false));
  $("kv-get-local").addEventListener("click", () => keyValue("GET", true));
}

async function main() {
  renderHistory(loadHistory());
  try {
    const config = await (await fetch("/console/config")).json();
    pollMs = config.pollMs || pollMs;
    if (config.keyValueRoutes) setUpKeyValueForm();
  } catch (error) {
    $("poll-error").textContent = `(cannot load the console configuration: ${error.message})`;
    $("poll-error").hidden = false;
  }
  poll();
}

main();
