// The members table (one row per member, with its action buttons) and the replication table
// (the leader's view of each follower). Durations are shown in human units from the ...Ms fields.

import {renderMemberActions} from "./actions.js";
import {swatch} from "./charts.js";
import {$, setCells, syncRows} from "./dom.js";
import {humanDuration} from "./durations.js";

const LAG_WARNING = 100;   // entries behind the leader before a follower row is highlighted

// `progress` is what the leader reports of a follower; "never" only when it says so (null).
const ackAge = (progress) => ("lastHeartbeatACKMs" in progress ? humanDuration(progress.lastHeartbeatACKMs) : null);

function nameCell(id, colour) {
  return (td) => {
    td.className = "member";
    if (!td.firstChild) td.append(swatch(colour), document.createTextNode(""));
    td.firstChild.style.background = colour;
    td.lastChild.textContent = id;
  };
}

// `voters`: who may lead (a transfer button on each reachable one but the leader);
// `colourOf`: the colours the charts give members.
export function renderMembers(members, leaderStatus, voters, colourOf) {
  const followers = leaderStatus ? leaderStatus.cluster.stateInfo.followers || {} : {};
  syncRows($("members").tBodies[0], members, (entry) => entry.id, (row, entry) => {
    const status = entry.status;
    const role = status ? status.cluster.state : "unreachable";
    row.classList.toggle("self", entry.self);
    row.classList.toggle("unreachable", !status);
    row.dataset.member = entry.id;   // stable hooks for scripts and tests, whatever the columns
    row.dataset.role = role;
    const name = nameCell(entry.id, colourOf(entry.id));
    const canLead = Boolean(status) && voters.has(entry.id) && role !== "Leader";
    const actions = (td) => renderMemberActions(td, entry.id, canLead);
    const fetched = humanDuration(entry.fetchMs);
    if (!status) {
      setCells(row, "unreachable", [name, {text: "unreachable", className: "error"},
                                    {text: entry.error, className: "error", colSpan: 7}, fetched, actions]);
      return;
    }
    const leading = role === "Leader";
    const progress = followers[entry.id] || {};
    setCells(row, "reachable", [
      name, {text: role, className: "role-" + role}, status.cluster.term, status.cluster.leader,
      status.log.commitIndex, status.log.lastApplied, status.log.lastIndex,
      leading ? 0 : progress.lag, leading ? "(leader)" : ackAge(progress), fetched, actions]);
  });
}

export function renderFollowers(leaderStatus) {
  const info = leaderStatus ? leaderStatus.cluster.stateInfo : {};
  const followers = Object.entries(info.followers || {});
  syncRows($("followers").tBodies[0], followers, ([peer]) => peer, (row, [peer, progress]) => {
    row.classList.toggle("lagging", progress.lag >= LAG_WARNING);
    setCells(row, "follower", [peer, progress.matchIndex, progress.nextIndex, progress.lag, progress.inflight,
                               ackAge(progress)]);
  });
  $("leader-uptime").textContent = leaderStatus
    ? `${leaderStatus.id} has led for ${humanDuration(info.leaderUptimeMs)}. ${readsText(info)}`
    : "No member is leading right now.";
}

function readsText(info) {
  if (info.reads !== "lease") return "Reads: ReadIndex (a quorum round per batch of reads).";
  if (info.leaseRevoked) return "Reads: lease revoked by a leadership transfer, ReadIndex until the next leader.";
  return info.leaseRemainingMs > 0 ? `Reads: leader lease, ${humanDuration(info.leaseRemainingMs)} left.`
    : "Reads: leader lease not held right now, ReadIndex meanwhile.";
}
