import { api, encode, rawGet, requireSignIn, signedInUser } from "./api.js";
import { $, attempt, clear, confirmInline, el, initPage, needsConsent, param, status, statusLabel, table, when } from "./ui.js";

const id = param("id") || "";
const base = `/api/connections/${encode(id)}`;
const PREVIEW = 2000;

function details(connection, connector) {
  const box = clear($("details"));
  const rows = [
    ["Connector", connector ? el("a", { href: `/portal/connector.html?id=${encode(connector.id)}`, text: connector.name }) : connection.connectorId],
    ["Status", el("span", { id: "connection-status", class: `badge ${connection.status}`, text: statusLabel(connection.status) })],
    ["Owner", connection.owner],
    ["Parameters set", connection.parametersSet.join(", ") || "none"],
    ["Created", when(connection.createdAt)],
  ];
  if (connection.tokenExpiresAt) rows.push(["Access token expires", when(connection.tokenExpiresAt)]);
  box.append(el("dl", {}, rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)])));
  if (needsConsent(connection.status)) {
    const button = el("button", { type: "button", id: "reauthorize", text: "Reauthorize" });
    button.addEventListener("click", () =>
      attempt(async () => {
        const answer = await api("POST", `${base}/reauthorize`);
        if (answer.consentUrl) location.assign(answer.consentUrl);
      }),
    );
    box.append(el("p", { text: "This connection needs you to sign in to the service again." }), button);
  }
}

function operations(connector) {
  const select = $("test-operation");
  const ops = (connector && connector.definition && connector.definition.operations) || [];
  for (const op of ops.filter((o) => o.method.toUpperCase() === "GET")) {
    select.append(el("option", { value: op.path, text: `${op.operationId} (${op.path})` }));
  }
  select.addEventListener("change", () => {
    if (select.value) $("test-path").value = select.value;
  });
}

async function testCall(event) {
  event.preventDefault();
  const path = $("test-path").value.trim().replace(/^\/+/, "");
  const answer = await rawGet(`${base}/invoke/${path}`);
  const preview = answer.text.length > PREVIEW ? `${answer.text.slice(0, PREVIEW)}...` : answer.text;
  clear($("test-result")).append(
    el("p", { id: "test-status", text: `Status ${answer.status}${answer.contentType ? ` (${answer.contentType})` : ""}` }),
    el("pre", { id: "test-body", text: preview }),
  );
}

async function loadShares() {
  const box = clear($("shares"));
  const shares = (await api("GET", `${base}/shares`)).value;
  if (!shares.length) {
    box.append(el("p", { text: "Not shared with anyone." }));
    return;
  }
  box.append(
    table("Shared with", ["Type", "Id", "Since", ""], shares.map((s) => {
      const revoke = el("button", { type: "button", text: `Revoke ${s.principal.type} ${s.principal.id}` });
      revoke.addEventListener("click", () =>
        attempt(async () => {
          await api("DELETE", `${base}/shares`, { principal: s.principal });
          status(`Access revoked for ${s.principal.type} ${s.principal.id}.`);
          await loadShares();
        }),
      );
      return [s.principal.type, s.principal.id, when(s.grantedAt), revoke];
    })),
  );
}

async function share(event) {
  event.preventDefault();
  const principal = { type: $("share-type").value, id: $("share-id").value.trim() };
  const answer = await api("POST", `${base}/shares`, { principal });
  clear($("share-result")).append(el("p", { class: "warning", id: "share-answer", text: answer.statement || "Shared." }));
  $("share-id").value = "";
  await loadShares();
}

async function loadActivity() {
  const box = clear($("activity"));
  const records = (await api("GET", `${base}/activity?hours=24`)).value;
  box.append(
    records.length
      ? table("Activity in the last 24 hours", ["Time", "Who", "Action", "Status", "Operation"], records.map((r) => [when(r.time), r.principal, r.action, String(r.status ?? ""), r.operation || r.detail || ""]))
      : el("p", { text: "No activity in the last 24 hours." }),
  );
}

function continueConnectLink(connection) {
  // A connect link whose connector needed consent: back to the application now.
  const raw = sessionStorage.getItem("portal.connectReturn");
  const pending = raw ? JSON.parse(raw) : null;
  if (pending && pending.connectionId === connection.id && connection.status === "connected") {
    sessionStorage.removeItem("portal.connectReturn");
    location.assign(pending.redirectUrl);
    return true;
  }
  return false;
}

async function load() {
  const connection = await api("GET", base);
  if (continueConnectLink(connection)) return;
  let connector = null;
  try {
    connector = await api("GET", `/api/connectors/${encode(connection.connectorId)}`);
  } catch {
    connector = null; // shared connections: the connector may not be visible
  }
  $("title").textContent = connection.displayName;
  document.title = `${connection.displayName} - Connector Gateway`;
  if (param("created")) status("Connection created.");
  details(connection, connector);
  operations(connector);
  const user = signedInUser();
  const owner = user && connection.owner === user.oid;
  for (const section of ["share-heading", "activity-heading", "delete-heading"]) {
    $(section).parentElement.hidden = !owner;
  }
  if (owner) {
    await loadShares();
    await loadActivity();
  }
}

if (requireSignIn()) {
  initPage();
  $("test-form").addEventListener("submit", (e) => attempt(() => testCall(e)));
  $("share-form").addEventListener("submit", (e) => attempt(() => share(e)));
  $("activity-refresh").addEventListener("click", () => attempt(loadActivity));
  $("delete").addEventListener("click", () =>
    confirmInline($("delete-confirm"), "Delete this connection? Its credentials are erased and everyone it is shared with loses access.", "Yes, delete", () =>
      attempt(async () => {
        await api("DELETE", base);
        location.assign("/portal/");
      }),
    ),
  );
  attempt(load);
}
