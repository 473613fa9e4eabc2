// ckite admin console: polls /cluster/status (which this member gathers from every member's
// /status server-side, so the page needs no cross-origin requests), remembers one sample per
// poll, and hands what it saw to the tables, the charts and the action buttons.

import {perform, setUpActions, setUpToken, showMembershipChange} from "./actions.js";
import {drawLegend, drawLines, drawTimeline, formatNumber, memberColours} from "./charts.js";
import {$} from "./dom.js";
import {commitRates, elections, followerLags, leaderRuns, recordLeader, recordSample, WINDOW_POLLS} from "./history.js";
import {renderFollowers, renderMembers} from "./tables.js";

const COMMITS_COLOUR = "#333";
// A fresh page's charts span this many polls, and widen with its history up to WINDOW_POLLS.
const MIN_SPAN_POLLS = 10;

let pollMs = 1000;

function leaderView(members) {
  // The leader's own status holds the per-follower replication state.
  for (const entry of members) {
    if (entry.status && entry.status.cluster.state === "Leader") return entry.status;
  }
  return null;
}

// The leader's commit index (this member's when none leads) and its followers' lag, now.
function sampleOf(source, leaderStatus, term, leader) {
  const followers = leaderStatus ? leaderStatus.cluster.stateInfo.followers || {} : {};
  return {at: Date.now(), commitIndex: source ? source.log.commitIndex : null, term, leader,
          lags: Object.fromEntries(Object.entries(followers).map(([peer, progress]) => [peer, progress.lag]))};
}

function renderCharts(samples, colourOf) {
  const end = samples[samples.length - 1].at;
  const length = Math.min(Math.max(end - samples[0].at, MIN_SPAN_POLLS * pollMs), WINDOW_POLLS * pollMs);
  const span = {start: end - length, end};
  const rates = commitRates(samples).filter((point) => point.at >= span.start);
  drawLines($("commits-chart"), [{name: "commits", colour: COMMITS_COLOUR, points: rates}], span);
  const peak = Math.max(0, ...rates.map((point) => point.value));
  $("commits-now").textContent = rates.length
    ? `${formatNumber(rates[rates.length - 1].value)} now, peak ${formatNumber(peak)}` : "";
  const lags = followerLags(samples);
  drawLines($("lag-chart"), [...lags].map(([peer, points]) => ({name: peer, colour: colourOf(peer), points})), span);
  drawLegend($("lag-legend"), [...lags.keys()], colourOf);
  const runs = leaderRuns(samples);
  drawTimeline($("timeline-chart"), runs, elections(samples), span, colourOf);
  drawLegend($("timeline-legend"), [...new Set(runs.map((run) => run.leader))], colourOf);
}

function renderChanges(changes) {
  $("leader-changes").replaceChildren(...changes.slice().reverse().map((change) => {
    const item = document.createElement("li");
    item.textContent = `${change.at}: term ${change.term}, leader ${change.leader || "none"}`;
    return item;
  }));
}

function render(data) {
  const members = data.members;
  const mine = members.find((entry) => entry.self);
  const mineStatus = mine && mine.status;
  const leaderStatus = leaderView(members);
  const term = Math.max(...members.filter((m) => m.status).map((m) => m.status.cluster.term));
  const leader = (leaderStatus ? leaderStatus.id : mineStatus && mineStatus.cluster.leader) || null;
  $("member-id").textContent = data.self;
  $("leader").textContent = leader || "none";
  $("term").textContent = term;
  const named = Object.keys(data.leaders);
  $("agreement").textContent = named.length > 1
    ? "members disagree on the leader: " + named.join(", ") : "members agree on the leader";
  $("updated").textContent = new Date().toLocaleTimeString();

  const samples = recordSample(sampleOf(leaderStatus || mineStatus, leaderStatus, term, leader));
  const seen = samples.flatMap((sample) => [sample.leader, ...Object.keys(sample.lags || {})]);
  const colourOf = memberColours([...members.map((m) => m.id), ...seen]);
  const configuration = (leaderStatus || mineStatus || {cluster: {}}).cluster.configuration || {};
  renderMembers(members, leaderStatus, new Set(configuration.voters || []), colourOf);
  renderFollowers(leaderStatus);
  renderCharts(samples, colourOf);
  renderChanges(recordLeader(term, leader));
  // Reported by members that track membership changes; absent (undefined) on those that do not.
  const reports = [leaderStatus, ...members.map((m) => m.status)].map((s) => s && s.cluster.membershipChange);
  showMembershipChange(reports.find(Boolean) || null);
  $("raw-status").textContent = JSON.stringify(mineStatus, null, 2);
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

function keyValue(method, local) {
  const url = "/kv/" + encodeURIComponent($("kv-key").value) + (local ? "?local=true" : "");
  perform(method, url, $("kv-result"), method === "PUT" ? $("kv-value").value : undefined);
}

function setUpKeyValueForm() {
  $("kv-section").hidden = false;
  $("kv-form").addEventListener("submit", (event) => { event.preventDefault(); keyValue("PUT", false); });
  $("kv-get").addEventListener("click", () => keyValue("GET", false));
  $("kv-get-local").addEventListener("click", () => keyValue("GET", true));
}

async function main() {
  setUpActions();
  try {
    const config = await (await fetch("/console/config")).json();
    pollMs = config.pollMs || pollMs;
    setUpToken(Boolean(config.tokenRequired));
    if (config.keyValueRoutes) setUpKeyValueForm();
  } catch (error) {
    setUpToken(true);   // cannot tell: offer the field rather than fail every change with 401
    $("poll-error").textContent = `(cannot load the console configuration: ${error.message})`;
    $("poll-error").hidden = false;
  }
  poll();
}

main();
