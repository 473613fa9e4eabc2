// What this page has seen, kept in the tab's sessionStorage so that a reload does not blank the
// charts: one sample per poll (the last WINDOW_POLLS of them) and the recent leader changes. The
// series the charts draw are derived here, from the samples, so that charts.js only draws.

const SAMPLES_KEY = "ckite.samples";
const CHANGES_KEY = "ckite.leaderChanges";
const CHANGES_KEPT = 20;

// How many polls the charts span (a minute at the default poll of one second).
export const WINDOW_POLLS = 60;

function load(key) {
  try { return JSON.parse(sessionStorage.getItem(key)) || []; } catch (error) { return []; }
}

function save(key, list, limit) {
  const kept = list.slice(-limit);
  sessionStorage.setItem(key, JSON.stringify(kept));
  return kept;
}

// `sample`: {at (ms since the epoch), commitIndex, term, leader, lags: {follower: entries}}.
export function recordSample(sample) {
  return save(SAMPLES_KEY, [...load(SAMPLES_KEY), sample], WINDOW_POLLS);
}

export function recordLeader(term, leader) {
  const changes = load(CHANGES_KEY);
  const last = changes[changes.length - 1];
  if (last && last.term === term && last.leader === leader) return changes;
  return save(CHANGES_KEY, [...changes, {term, leader, at: new Date().toLocaleTimeString()}], CHANGES_KEPT);
}

// Commits per second between consecutive polls. A new leader may report a commit index a little
// behind its predecessor's until it commits in its own term: that counts as no commits, not fewer.
export function commitRates(samples) {
  const points = [];
  for (let i = 1; i < samples.length; i++) {
    const [before, after] = [samples[i - 1], samples[i]];
    const seconds = (after.at - before.at) / 1000;
    if (seconds <= 0 || typeof before.commitIndex !== "number" || typeof after.commitIndex !== "number") continue;
    points.push({at: after.at, value: Math.max(after.commitIndex - before.commitIndex, 0) / seconds});
  }
  return points;
}

// One series per follower, for as long as a leader reported its lag (a member that stops or
// starts following starts or ends its line).
export function followerLags(samples) {
  const lines = new Map();
  for (const sample of samples) {
    for (const [peer, lag] of Object.entries(sample.lags || {})) {
      if (typeof lag !== "number") continue;
      if (!lines.has(peer)) lines.set(peer, []);
      lines.get(peer).push({at: sample.at, value: lag});
    }
  }
  return lines;
}

// Spans of time with one leader in one term: [{from, to, leader, term}].
export function leaderRuns(samples) {
  const runs = [];
  for (const sample of samples) {
    const last = runs[runs.length - 1];
    if (last) last.to = sample.at;
    if (!last || last.leader !== sample.leader || last.term !== sample.term) {
      runs.push({from: sample.at, to: sample.at, leader: sample.leader, term: sample.term});
    }
  }
  return runs;
}

// Where the term moved between two polls: an election (or several, if the page missed some).
export function elections(samples) {
  return samples.slice(1).filter((sample, i) => sample.term !== samples[i].term)
    .map((sample) => ({at: sample.at, term: sample.term}));
}
