import { api, encode, requireSignIn } from "./api.js";
import { $, attempt, clear, el, initPage, needsConsent, statusLabel, table } from "./ui.js";

async function reauthorize(id) {
  await attempt(async () => {
    const answer = await api("POST", `/api/connections/${encode(id)}/reauthorize`);
    if (answer.consentUrl) location.assign(answer.consentUrl);
  });
}

async function load() {
  const [connections, connectors] = await Promise.all([
    api("GET", "/api/connections"),
    api("GET", "/api/connectors"),
  ]);
  const names = new Map(connectors.value.map((c) => [c.id, c.name]));
  const rows = connections.value.map((c) => {
    const action = needsConsent(c.status)
      ? el("button", { type: "button", text: `Reauthorize ${c.displayName}` })
      : el("a", { href: `/portal/connection.html?id=${encode(c.id)}`, text: "Open" });
    if (action.tagName === "BUTTON") action.addEventListener("click", () => reauthorize(c.id));
    return [
      el("a", { href: `/portal/connection.html?id=${encode(c.id)}`, text: c.displayName }),
      names.get(c.connectorId) || c.connectorId,
      el("span", { class: `badge ${c.status}`, text: statusLabel(c.status) }),
      action,
    ];
  });
  const box = clear($("connections"));
  box.append(rows.length ? table("Your connections and those shared with you", ["Name", "Connector", "Status", "Action"], rows) : el("p", { text: "No connections yet." }));
  const select = clear($("new-connector"));
  for (const c of connectors.value) select.append(el("option", { value: c.id, text: c.name }));
}

if (requireSignIn()) {
  initPage();
  $("new-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = $("new-connector").value;
    if (id) location.assign(`/portal/new-connection.html?connector=${encode(id)}`);
  });
  attempt(load);
}
