import { api, encode, requireSignIn } from "./api.js";
import { $, attempt, clear, el, initPage, status, statusLabel, table } from "./ui.js";

let all = [];

function render() {
  const wanted = { status: $("flt-status").value, owner: $("flt-owner").value.trim(), connector: $("flt-connector").value.trim() };
  const shown = all.filter(
    (c) =>
      (!wanted.status || c.status === wanted.status) &&
      (!wanted.owner || c.owner === wanted.owner) &&
      (!wanted.connector || c.connectorId === wanted.connector),
  );
  const rows = shown.map((c) => {
    const disabled = c.status === "disabled";
    const button = el("button", { type: "button", text: `${disabled ? "Enable" : "Disable"} ${c.displayName}` });
    button.addEventListener("click", () =>
      attempt(async () => {
        await api("POST", `/api/admin/connections/${encode(c.id)}/${disabled ? "enable" : "disable"}`);
        status(`${c.displayName} ${disabled ? "enabled" : "disabled"}.`);
        await load();
      }),
    );
    return [c.displayName, c.owner, c.connectorId, el("span", { class: `badge ${c.status}`, text: statusLabel(c.status) }), button];
  });
  clear($("all")).append(
    rows.length ? table(`Connections (${rows.length} of ${all.length})`, ["Name", "Owner", "Connector", "Status", "Action"], rows) : el("p", { text: "No connections match." }),
  );
}

async function load() {
  all = (await api("GET", "/api/admin/connections")).value;
  render();
}

if (requireSignIn()) {
  initPage();
  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    render();
  });
  $("offboard-form").addEventListener("submit", (event) => {
    event.preventDefault();
    attempt(async () => {
      const body = { action: $("ob-action").value };
      if (body.action === "transfer") body.newOwner = $("ob-new").value.trim();
      const result = await api("POST", `/api/admin/principals/${encode($("ob-id").value.trim())}/offboard`, body);
      clear($("offboard-result")).append(el("p", { text: `Done: ${Object.entries(result).map(([k, v]) => `${k} ${v}`).join(", ")}.` }));
      await load();
    });
  });
  attempt(load);
}
