// DOM helpers. Text from definitions and users goes in with textContent or as
// attribute values, never as markup: nothing here parses HTML.
import { signedInUser, signOut } from "./api.js";

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === "text") node.textContent = String(value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function $(id) {
  return document.getElementById(id);
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

export function param(name) {
  return new URLSearchParams(location.search).get(name);
}

export function status(message) {
  clear($("status")).append(message);
}

export function showError(error) {
  const box = clear($("error"));
  if (!error) return;
  const problem = error.problem || {};
  box.append(el("p", { text: error.message || String(error) }));
  if (Array.isArray(problem.errors) && problem.errors.length) {
    box.append(el("ul", {}, problem.errors.map((e) => el("li", { text: `${e.field}: ${e.message}` }))));
  }
  if (problem.code) box.append(el("p", { class: "code", text: `Code: ${problem.code}` }));
  box.focus();
}

// Runs an action, showing its error (and clearing the previous one).
export async function attempt(action) {
  showError(null);
  try {
    return await action();
  } catch (error) {
    showError(error);
    return undefined;
  }
}

export const STATUS_LABELS = {
  connected: "Connected",
  consent_required: "Consent required",
  reauthorization_required: "Reauthorization required",
  disabled: "Disabled",
  pending: "Being created",
  deleting: "Being deleted",
};

export function statusLabel(value) {
  return STATUS_LABELS[value] || value;
}

export function needsConsent(value) {
  return value === "consent_required" || value === "reauthorization_required";
}

export function initPage() {
  const user = signedInUser();
  const who = $("who");
  if (who && user) who.textContent = `Signed in as ${user.name}`;
  const button = $("sign-out");
  if (button) {
    button.hidden = !user;
    button.addEventListener("click", () => {
      signOut();
      location.assign("/portal/signin.html");
    });
  }
}

export function when(value) {
  if (!value) return "";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString();
}

// A table whose cells are text or nodes. `caption` names it for screen readers.
export function table(caption, headers, rows) {
  return el(
    "table",
    {},
    el("caption", { text: caption }),
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) => el("td", {}, c))))),
  );
}

// Asks before a destructive action, in the page (keyboard and screen-reader friendly).
export function confirmInline(container, question, confirmLabel, onConfirm) {
  const yes = el("button", { type: "button", class: "danger", text: confirmLabel });
  const no = el("button", { type: "button", text: "Cancel" });
  const box = el("div", { class: "confirm", role: "group", "aria-label": question }, el("p", { text: question }), yes, " ", no);
  clear(container).append(box);
  no.addEventListener("click", () => clear(container));
  yes.addEventListener("click", async () => {
    yes.disabled = true;
    await onConfirm();
    yes.disabled = false;
  });
  yes.focus();
}

// Saves a text as a file the browser downloads (no server round trip, no data: URL).
export function download(name, text, type = "application/json") {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = el("a", { href: url, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
