import { api, encode, requireSignIn } from "./api.js";
import { $, attempt, clear, el, initPage, table } from "./ui.js";

let files = null;

function describeAuth(option) {
  const parts = [`${option.name || "default"}: ${option.type}`];
  if (option.apiKey) parts.push(`key "${option.apiKey.name}" in the ${option.apiKey.in}`);
  if (option.oauth2) parts.push(`identity provider ${option.oauth2.identityProvider || "generic"}`);
  if (option.gateway) parts.push("through an on-premises data gateway");
  const params = option.parameters.map((p) => `${p.name}${p.secret ? " (secret)" : ""}${p.required ? " (required)" : ""}`);
  if (params.length) parts.push(`asks for ${params.join(", ")}`);
  return parts.join("; ");
}

function showInspect(summary) {
  const box = clear($("inspect"));
  box.append(el("h2", { id: "inspect-heading", text: `Inspection: ${summary.title || "untitled"}` }));
  box.append(el("p", { text: `Host in the definition: ${summary.baseUrl || "none (give a base URL)"}` }));
  box.append(el("h3", { text: "Authentication" }), el("ul", { id: "auth-options" }, summary.authOptions.map((o) => el("li", { text: describeAuth(o) }))));
  box.append(el("h3", { text: `Operations (${summary.operations.length})` }));
  box.append(
    summary.operations.length
      ? table("Operations", ["Operation", "Method", "Path"], summary.operations.map((o) => [o.operationId, o.method.toUpperCase(), o.path]))
      : el("p", { text: "No operations." }),
  );
  box.append(el("h3", { text: "Policies" }));
  box.append(
    summary.policies.length
      ? el("ul", { id: "policies" }, summary.policies.map((p) => el("li", { text: `${p.templateId}: ${p.supported ? "supported" : "not supported, it will not run"}` })))
      : el("p", { text: "No policies." }),
  );
  box.append(el("h3", { text: `Warnings (${summary.warnings.length})` }));
  box.append(
    summary.warnings.length
      ? el("ul", { id: "warnings" }, summary.warnings.map((w) => el("li", { text: w })))
      : el("p", { id: "warnings", text: "No warnings." }),
  );
  $("s-name").value = summary.title || "";
  $("s-base").value = summary.baseUrl || "";
  $("save-form").hidden = false;
}

async function inspect(event) {
  event.preventDefault();
  const form = new FormData();
  const pkg = $("f-package").files[0];
  if (pkg) form.append("package", pkg);
  else {
    for (const [id, field] of [["f-definition", "apiDefinition"], ["f-properties", "apiProperties"], ["f-script", "script"]]) {
      const file = $(id).files[0];
      if (file) form.append(field, file);
    }
  }
  const answer = await api("POST", "/api/connectors/inspect", form);
  files = answer.files;
  showInspect(answer.inspect);
  $("inspect-heading").focus?.();
}

async function save(event) {
  event.preventDefault();
  const body = { apiDefinition: files.apiDefinition, apiProperties: files.apiProperties };
  if (files.script !== null && files.script !== undefined) body.script = files.script;
  if ($("s-name").value.trim()) body.name = $("s-name").value.trim();
  if ($("s-base").value.trim()) body.baseUrl = $("s-base").value.trim();
  const created = await api("POST", "/api/connectors/import", body);
  location.assign(`/portal/connector.html?id=${encode(created.id)}&imported=1`);
}

if (requireSignIn()) {
  initPage();
  $("upload-form").addEventListener("submit", (e) => attempt(() => inspect(e)));
  $("save-form").addEventListener("submit", (e) => attempt(() => save(e)));
}
