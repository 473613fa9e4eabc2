// The console's live charts, drawn as plain SVG by this file: no charting library, so the page
// needs nothing beyond what the member serves (members often have no internet access). Only
// numbers go into attributes, and text only through text nodes: names come from the network.

import {humanDuration} from "./durations.js";

const SVG_NS = "http://www.w3.org/2000/svg";

// One colour per member, the same in every chart and in the members table.
const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];
const NO_LEADER = "#c8c8c8";
const UNKNOWN = "#555";

// Sizes in the viewBox's units, which the page scales to its width.
const LINES = {width: 640, height: 180, left: 40, right: 14, top: 12, bottom: 20};
const STRIP = {width: 1300, height: 66, left: 40, right: 14, top: 18, bottom: 20};

function element(name, attributes = {}, text) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

// A colour function over these members (in sorted order, so every page agrees).
export function memberColours(members) {
  const sorted = [...new Set(members.filter(Boolean))].sort();
  return (member) => {
    if (member === null || member === undefined) return NO_LEADER;
    const index = sorted.indexOf(member);
    return index < 0 ? UNKNOWN : PALETTE[index % PALETTE.length];
  };
}

function timeScale(box, span) {
  const width = box.width - box.left - box.right;
  const length = Math.max(span.end - span.start, 1);
  return (at) => box.left + (Math.min(Math.max(at, span.start), span.end) - span.start) / length * width;
}

function timeLabels(box, span) {
  const x = timeScale(box, span);
  const label = (at, anchor) => element("text", {x: x(at), y: box.height - 5, class: "tick", "text-anchor": anchor},
                                        at === span.end ? "now" : `${humanDuration(span.end - at)} ago`);
  return [label(span.start, "start"), label((span.start + span.end) / 2, "middle"), label(span.end, "end")];
}

// The smallest of 1, 2, 5, 10, 20, 50... that is at least `value`: a y axis people can read.
function roundUp(value) {
  for (let magnitude = 1; ; magnitude *= 10) {
    for (const step of [1, 2, 5]) if (step * magnitude >= value) return step * magnitude;
  }
}

export function formatNumber(value) {
  return value >= 10 ? String(Math.round(value)) : String(Number(value.toFixed(1)));
}

// Line chart of [{name, colour, points: [{at, value}]}] over span {start, end} (ms since the
// epoch). Each line is a <polyline data-series=name data-points=N data-latest=value>.
export function drawLines(svg, lines, span) {
  const box = LINES;
  const visible = lines.map((line) => ({...line, points: line.points.filter((p) => p.at >= span.start)}))
    .filter((line) => line.points.length);
  const peak = Math.max(0, ...visible.flatMap((line) => line.points.map((p) => p.value)));
  const top = roundUp(peak);
  const x = timeScale(box, span);
  const y = (value) => box.height - box.bottom - value / top * (box.height - box.top - box.bottom);
  const parts = [];
  for (const value of [0, top / 2, top]) {
    parts.push(element("line", {x1: box.left, x2: box.width - box.right, y1: y(value), y2: y(value), class: "grid"}),
               element("text", {x: box.left - 5, y: y(value) + 4, class: "tick", "text-anchor": "end"},
                       formatNumber(value)));
  }
  parts.push(...timeLabels(box, span));
  for (const line of visible) {
    const last = line.points[line.points.length - 1];
    const coordinates = line.points.map((p) => `${x(p.at).toFixed(1)},${y(p.value).toFixed(1)}`).join(" ");
    parts.push(element("polyline", {points: coordinates, stroke: line.colour, class: "series", "data-series": line.name,
                                    "data-points": line.points.length, "data-latest": last.value}),
               element("circle", {cx: x(last.at), cy: y(last.value), r: 3, fill: line.colour}));
  }
  if (!visible.length) {
    parts.push(element("text", {x: box.width / 2, y: box.height / 2, class: "empty", "text-anchor": "middle"},
                       "waiting for data"));
  }
  svg.setAttribute("viewBox", `0 0 ${box.width} ${box.height}`);
  svg.replaceChildren(...parts);
}

// The term/leader strip: one band per [{from, to, leader, term}] in its leader's colour, and a
// red mark with the new term wherever the term moved, i.e. an election (`elections`: [{at, term}]).
export function drawTimeline(svg, runs, elections, span, colourOf) {
  const box = STRIP;
  const x = timeScale(box, span);
  const height = box.height - box.top - box.bottom;
  const parts = [element("rect", {x: box.left, y: box.top, width: box.width - box.left - box.right, height,
                                  class: "strip"})];
  for (const run of runs.filter((r) => r.to >= span.start)) {
    const band = element("rect", {x: x(run.from), y: box.top, width: Math.max(x(run.to) - x(run.from), 1), height,
                                  fill: colourOf(run.leader), class: "run", "data-leader": run.leader || "",
                                  "data-term": run.term});
    band.append(element("title", {}, `term ${run.term}: ${run.leader ? run.leader + " leads" : "no leader"}`));
    parts.push(band);
  }
  for (const election of elections.filter((e) => e.at >= span.start)) {
    const at = x(election.at);
    const nearEnd = at > box.width - box.right - 60;   // the label goes left of its mark, not off the chart
    parts.push(element("line", {x1: at, x2: at, y1: box.top - 4, y2: box.top + height, class: "election",
                                "data-term": election.term}),
               element("text", {x: nearEnd ? at - 3 : at + 3, y: box.top - 6, class: "election-label",
                                "text-anchor": nearEnd ? "end" : "start"}, `term ${election.term}`));
  }
  parts.push(...timeLabels(box, span));
  svg.setAttribute("viewBox", `0 0 ${box.width} ${box.height}`);
  svg.replaceChildren(...parts);
}

// A legend under a chart: a swatch and a name per member (null: "no leader").
export function drawLegend(container, members, colourOf) {
  container.replaceChildren(...members.map((member) => {
    const item = document.createElement("span");
    item.className = "legend-item";
    item.append(swatch(colourOf(member)), document.createTextNode(member || "no leader"));
    return item;
  }));
}

export function swatch(colour) {
  const mark = document.createElement("span");
  mark.className = "swatch";
  mark.style.background = colour;
  return mark;
}
