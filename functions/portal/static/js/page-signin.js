import { api, setToken, takeNext, rememberNext } from "./api.js";
import { $, attempt, el, initPage, status } from "./ui.js";

async function devSignIn(user, admin) {
  await attempt(async () => {
    const answer = await api("POST", "/portal/dev-sign-in", { user, admin });
    setToken(answer.accessToken);
    location.assign(takeNext());
  });
}

function developmentChoices(config) {
  const box = $("choices");
  box.append(el("p", { text: "Development sign-in: choose a user. Tokens come from the local development issuer, like python -m functions token --user NAME." }));
  const list = el("ul", { class: "users" });
  for (const user of config.devUsers) {
    const button = el("button", { type: "button", text: `Sign in as ${user}` });
    button.addEventListener("click", () => devSignIn(user, false));
    list.append(el("li", {}, button));
  }
  const admin = el("button", { type: "button", text: `Sign in as ${config.devAdmin} (gateway administrator)` });
  admin.addEventListener("click", () => devSignIn(config.devAdmin, true));
  list.append(el("li", {}, admin));
  box.append(list);
  const input = el("input", { id: "other-user", type: "text", required: true, pattern: "[A-Za-z0-9._\\-]+", autocomplete: "username" });
  const form = el(
    "form",
    { id: "other-form" },
    el("div", { class: "field" }, el("label", { for: "other-user", text: "Or any other user name" }), input),
    el("button", { type: "submit", text: "Sign in" }),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    devSignIn(input.value.trim(), false);
  });
  box.append(form);
}

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const script = el("script", { src });
    script.addEventListener("load", resolve);
    script.addEventListener("error", () => reject(new Error(`cannot load ${src}`)));
    document.head.append(script);
  });
}

// Entra ID: authorization code + PKCE with MSAL (vendored, served from this origin).
async function entraSignIn(config) {
  if (!config.clientId || !config.scopes.length) {
    status("Sign-in is not configured: set GATEWAY_PORTAL_CLIENT_ID and GATEWAY_PORTAL_API_SCOPE (infra/README.md).");
    return;
  }
  await loadScript("/portal/static/vendor/msal-browser.min.js");
  const app = await window.msal.createStandardPublicClientApplication({
    auth: { clientId: config.clientId, authority: config.authority, redirectUri: config.redirectUri },
    cache: { cacheLocation: "sessionStorage" },
  });
  const result = await app.handleRedirectPromise();
  if (result && result.accessToken) {
    setToken(result.accessToken);
    location.assign(takeNext());
    return;
  }
  const button = el("button", { type: "button", id: "entra-sign-in", text: "Sign in with Microsoft" });
  button.addEventListener("click", () => attempt(() => app.loginRedirect({ scopes: config.scopes })));
  $("choices").append(button);
}

initPage();
const next = new URLSearchParams(location.search).get("next");
if (next) rememberNext(next);
attempt(async () => {
  const response = await fetch("/portal/config.json", { credentials: "omit" });
  const config = await response.json();
  if (config.mode === "development") developmentChoices(config);
  else await entraSignIn(config);
});
