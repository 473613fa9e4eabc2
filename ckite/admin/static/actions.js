// What the console changes: membership (add, remove, cancel a change in progress), leadership
// (transfer) and, for the key-value form, keys. Each cluster action asks first, in the page (a
// person reads the question; a test clicks the same buttons), then shows the HTTP status and the
// JSON answer. Any 2xx is an answer to show: 202 means the change goes on in the background.
//
// The admin token, when the cluster has one, is typed into this page and kept in this tab's
// sessionStorage. It travels in an Authorization header on this page's mutating requests only,
// which go to relative URLs (this member, the page's own origin) and never follow a redirect.

import {$} from "./dom.js";

const TOKEN_KEY = "ckite.adminToken";
const SAFE_METHODS = new Set(["GET", "HEAD"]);
const CHANGE_STATES = {"catching-up": "catching up", "joint": "joint consensus"};

let pending = null;   // the action the confirmation step asks about

export function setUpToken(required) {
  const input = $("admin-token");
  input.value = sessionStorage.getItem(TOKEN_KEY) || "";
  input.addEventListener("input", () => sessionStorage.setItem(TOKEN_KEY, input.value));
  $("token-field").hidden = !required;
}

function send(method, url, body) {
  const headers = {};
  const token = $("admin-token").value.trim();
  if (token && !SAFE_METHODS.has(method)) headers.Authorization = `Bearer ${token}`;
  return fetch(url, {method, body, headers, cache: "no-store", redirect: "error"});
}

async function describe(response) {
  const type = response.headers.get("Content-Type") || "";
  const body = type.includes("json") ? JSON.stringify(await response.json(), null, 2) : await response.text();
  const lines = [`${response.status} ${response.statusText}`];
  if (response.status === 401 || response.status === 403) {
    lines.push(response.status === 401
      ? "This cluster needs the admin token: type it in the “Admin token” field at the top and try again."
      : "This cluster needs the admin token, and refused the one given: check the “Admin token” field.");
    $("token-field").hidden = false;
  }
  lines.push(body);
  return lines.join("\n");
}

// Send the request and write its answer (or why there is none) into `output`.
export async function perform(method, url, output, body) {
  output.textContent = "waiting for the answer…";
  try {
    output.textContent = await describe(await send(method, url, body));
  } catch (error) {
    output.textContent = `request failed: ${error.message}`;
  }
}

function ask(question, method, url) {
  pending = {method, url};
  $("confirm-question").textContent = question;
  $("confirm").hidden = false;
  $("confirm-yes").focus();
}

function answer(confirmed) {
  const action = pending;
  pending = null;
  $("confirm").hidden = true;
  if (!confirmed || !action) return;
  $("action").hidden = false;
  $("action-request").textContent = `${action.method} ${action.url}`;
  perform(action.method, action.url, $("action-result"));
}

// A binding in a URL, escaped but for its colon, so that the request shown reads as typed.
const segment = (binding) => encodeURIComponent(binding).replace(/%3A/gi, ":");
const memberUrl = (binding) => `/members/${segment(binding)}`;

function button(label, className, onClick) {
  const node = document.createElement("button");
  node.type = "button";
  node.className = className;
  node.textContent = label;
  node.addEventListener("click", onClick);
  return node;
}

// The buttons of one member's row (made once, then only shown or hidden).
export function renderMemberActions(td, binding, canTransfer) {
  if (!td.dataset.ready) {
    td.dataset.ready = "yes";
    td.className = "actions";
    td.append(
      button("Transfer leadership here", "transfer", () => ask(`Transfer leadership to ${binding}?`, "POST",
                                                               `/transferleadership?to=${segment(binding)}`)),
      button("Remove", "remove", () => ask(`Remove ${binding} from the cluster?`, "DELETE", memberUrl(binding))));
  }
  td.querySelector(".transfer").hidden = !canTransfer;
}

// The membership change the leader reports as under way (cluster.membershipChange: null, absent
// on members that do not report it, or {added, removed, state}); an addition can be cancelled.
export function showMembershipChange(change) {
  const active = Boolean(change) && typeof change === "object" && change.state !== "done";
  $("membership-change").hidden = !active;
  if (!active) return;
  const added = Array.isArray(change.added) ? change.added : [];
  const removed = Array.isArray(change.removed) ? change.removed : [];
  const what = [...added.map((b) => `adding ${b}`), ...removed.map((b) => `removing ${b}`)].join(", ");
  const state = CHANGE_STATES[change.state] || change.state || "in progress";
  $("membership-change-text").textContent = `Change in progress: ${what || "a new configuration"} (${state})`;
  $("cancel-change").hidden = added.length === 0 || change.state !== "catching-up";   // past that: too late
  $("cancel-change").dataset.binding = added[0] || "";
}

export function setUpActions() {
  $("confirm-yes").addEventListener("click", () => answer(true));
  $("confirm-no").addEventListener("click", () => answer(false));
  $("add-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const binding = $("add-member").value.trim();
    if (binding) {
      ask(`Add ${binding} to the cluster? It catches up as a learner (start it before or after), then votes.`, "POST",
          memberUrl(binding));
    }
  });
  $("cancel-change").addEventListener("click", () => {
    const binding = $("cancel-change").dataset.binding;
    if (binding) ask(`Cancel adding ${binding}?`, "DELETE", memberUrl(binding));
  });
}
