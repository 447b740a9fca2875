import { api, encode, requireSignIn } from "./api.js";
import { $, attempt, initPage } from "./ui.js";

const KINDS = ["apiKey", "oauth2", "windows"];

function showAuthFields() {
  const kind = $("c-auth").value;
  for (const k of KINDS) $(`auth-${k}`).hidden = k !== kind;
}

function settings(text) {
  const result = {};
  for (const line of text.split("\n")) {
    const at = line.indexOf("=");
    if (at > 0) result[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return result;
}

function auth() {
  const type = $("c-auth").value;
  if (type === "apiKey") return { type, in: $("k-in").value, name: $("k-name").value.trim() };
  if (type === "windows") return { type, protocol: $("w-protocol").value };
  if (type === "oauth2") {
    const value = {
      type,
      provider: $("o-provider").value.trim(),
      clientId: $("o-client").value.trim(),
      scopes: $("o-scopes").value.split(/\s+/).filter(Boolean),
      settings: settings($("o-settings").value),
      grant: $("o-grant").value,
    };
    if ($("o-secret").value) value.clientSecret = $("o-secret").value;
    if ($("o-redirect").value) value.redirectUri = $("o-redirect").value.trim();
    return value;
  }
  return { type };
}

if (requireSignIn()) {
  initPage();
  $("c-auth").addEventListener("change", showAuthFields);
  showAuthFields();
  $("connector-form").addEventListener("submit", (event) => {
    event.preventDefault();
    attempt(async () => {
      const body = {
        name: $("c-name").value.trim(),
        baseUrl: $("c-base").value.trim(),
        auth: auth(),
        allowConnectionSharing: $("c-sharing").checked,
      };
      if ($("c-description").value.trim()) body.description = $("c-description").value.trim();
      const created = await api("POST", "/api/connectors", body);
      location.assign(`/portal/connector.html?id=${encode(created.id)}`);
    });
  });
}
