import { api, encode, requireSignIn } from "./api.js";
import { $, attempt, clear, download, el, initPage, param, status, table, when } from "./ui.js";

const id = param("id") || "";
const base = `/api/connectors/${encode(id)}`;

function details(c) {
  const rows = [
    ["Kind", c.source === "powerplatform" ? "Imported Power Platform connector" : "Native connector"],
    ["Base URL", c.baseUrl],
    ["Authentication", c.auth ? c.auth.type : ((c.definition && c.definition.authOptions) || []).map((o) => o.type).join(", ")],
    ["Description", c.description || ""],
    ["Connections may be shared", c.allowConnectionSharing ? "Yes" : "No"],
    ["Updated", when(c.updatedAt)],
  ];
  const box = clear($("details"));
  box.append(el("dl", {}, rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })])));
  const warnings = (c.definition && c.definition.warnings) || [];
  if (warnings.length) {
    box.append(el("h2", { text: "Warnings" }), el("ul", { id: "warnings" }, warnings.map((w) => el("li", { text: w }))));
  }
}

function oauth(c) {
  const isOAuth = (c.auth && c.auth.type === "oauth2") || ((c.definition && c.definition.authOptions) || []).some((o) => o.type === "oauth2");
  $("oauth-section").hidden = !isOAuth;
  if (!isOAuth) return;
  const client = c.oauthClient;
  $("oauth-current").textContent = client
    ? `Client ${client.clientId}; secret ${client.clientSecretSet ? "set" : "not set"}${client.redirectUri ? `; redirect URI ${client.redirectUri}` : ""}.`
    : "No OAuth client yet: connections cannot be created until one is set.";
  if (client) $("oc-id").value = client.clientId;
}

async function loadShares() {
  const box = clear($("shares"));
  let shares;
  try {
    shares = (await api("GET", `${base}/shares`)).value;
  } catch {
    return; // only owners see the grants
  }
  if (!shares.length) {
    box.append(el("p", { text: "Not shared with anyone." }));
    return;
  }
  box.append(
    table("Shared with", ["Type", "Id", "Role", ""], shares.map((s) => {
      const revoke = el("button", { type: "button", text: `Revoke ${s.principal.type} ${s.principal.id}` });
      revoke.addEventListener("click", () =>
        attempt(async () => {
          await api("DELETE", `${base}/shares`, { principal: s.principal });
          await loadShares();
        }),
      );
      return [s.principal.type, s.principal.id, s.role, revoke];
    })),
  );
}

async function exportFile(which) {
  const exported = await api("GET", `${base}/export`);
  if (which === "definition") download("apiDefinition.swagger.json", JSON.stringify(exported.apiDefinition, null, 2));
  else download("apiProperties.json", JSON.stringify(exported.apiProperties, null, 2));
}

async function load() {
  const c = await api("GET", base);
  $("title").textContent = c.name;
  document.title = `${c.name} - Connector Gateway`;
  if (param("imported")) status("Connector imported.");
  $("new-connection").setAttribute("href", `/portal/new-connection.html?connector=${encode(c.id)}`);
  details(c);
  oauth(c);
  await loadShares();
}

if (requireSignIn()) {
  initPage();
  $("oauth-form").addEventListener("submit", (event) => {
    event.preventDefault();
    attempt(async () => {
      const body = { clientId: $("oc-id").value.trim() };
      if ($("oc-secret").value) body.clientSecret = $("oc-secret").value;
      if ($("oc-redirect").value) body.redirectUri = $("oc-redirect").value.trim();
      const c = await api("PUT", `${base}/oauth-client`, body);
      $("oc-secret").value = "";
      oauth(c);
      status("OAuth client saved.");
    });
  });
  $("share-form").addEventListener("submit", (event) => {
    event.preventDefault();
    attempt(async () => {
      const principal = { type: $("share-type").value, id: $("share-id").value.trim() };
      await api("POST", `${base}/shares`, { principal, role: $("share-role").value });
      $("share-id").value = "";
      status(`Shared with ${principal.type} ${principal.id}.`);
      await loadShares();
    });
  });
  $("export-definition").addEventListener("click", () => attempt(() => exportFile("definition")));
  $("export-properties").addEventListener("click", () => attempt(() => exportFile("properties")));
  attempt(load);
}
