import { api, encode, requireSignIn } from "./api.js";
import { $, attempt, initPage, param } from "./ui.js";
import { renderConnectionForm } from "./forms.js";

if (requireSignIn()) {
  initPage();
  const connectorId = param("connector") || "";
  attempt(async () => {
    const form = await api("GET", `/api/connectors/${encode(connectorId)}/connection-form`);
    $("title").textContent = `New connection to ${form.connectorName}`;
    document.title = `New connection to ${form.connectorName} - Connector Gateway`;
    $("connector-description").textContent = form.description || "";
    const collect = await renderConnectionForm($("parameters"), form);
    $("connection-form").addEventListener("submit", (event) => {
      event.preventDefault();
      attempt(async () => {
        const { parameterSet, parameters } = collect();
        const body = { displayName: $("display-name").value, parameters };
        if (parameterSet) body.parameterSet = parameterSet;
        const created = await api("POST", `/api/connectors/${encode(connectorId)}/connections`, body);
        if (created.consentUrl) location.assign(created.consentUrl);
        else location.assign(`/portal/connection.html?id=${encode(created.id)}&created=1`);
      });
    });
  });
}
