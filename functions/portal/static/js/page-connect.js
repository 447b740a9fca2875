// A connect link: /portal/connect.html#session=TOKEN. The token is kept in this tab's
// sessionStorage across sign-in and taken out of the address bar at once.
import { api, requireSignIn } from "./api.js";
import { $, attempt, clear, el, initPage, showError } from "./ui.js";
import { renderConnectionForm } from "./forms.js";

const KEY = "portal.connectToken";
const TITLES = {
  connect_session_expired: "This connect link has expired",
  connect_session_used: "This connect link has already been used",
  connect_session_invalid: "This connect link is not valid",
};

const match = /session=([A-Za-z0-9_-]+)/.exec(location.hash);
if (match) {
  sessionStorage.setItem(KEY, match[1]);
  history.replaceState(null, "", location.pathname);
}

// Another link pasted into this tab: same document, so start again from it.
window.addEventListener("hashchange", () => location.reload());

function fail(error) {
  const title = TITLES[error.problem && error.problem.code];
  if (title) {
    $("title").textContent = title;
    document.title = `${title} - Connector Gateway`;
    $("connect-form").hidden = true;
    clear($("intro")).append(el("span", { text: "Ask the application that sent you here for a new link." }));
    sessionStorage.removeItem(KEY);
  }
  showError(error);
}

async function start() {
  const token = sessionStorage.getItem(KEY);
  if (!token) {
    fail({ message: "The link holds no session.", problem: { code: "connect_session_invalid" } });
    return;
  }
  let session;
  try {
    session = await api("POST", "/api/connect-sessions/open", { token });
  } catch (error) {
    fail(error);
    return;
  }
  const form = session.form;
  $("title").textContent = `Connect to ${form.connectorName}`;
  document.title = `Connect to ${form.connectorName} - Connector Gateway`;
  $("intro").textContent = `Create your own connection to ${form.connectorName}. You will then go back to ${session.returnOrigin}.`;
  if (session.displayName) $("display-name").value = session.displayName;
  const collect = await renderConnectionForm($("parameters"), form);
  $("connect-form").hidden = false;
  $("connect-form").addEventListener("submit", (event) => {
    event.preventDefault();
    attempt(async () => {
      const { parameterSet, parameters } = collect();
      const body = { token, displayName: $("display-name").value, parameters };
      if (parameterSet) body.parameterSet = parameterSet;
      let answer;
      try {
        answer = await api("POST", "/api/connect-sessions/complete", body);
      } catch (error) {
        fail(error);
        return;
      }
      sessionStorage.removeItem(KEY);
      if (answer.connection.consentUrl) {
        sessionStorage.setItem("portal.connectReturn", JSON.stringify({ connectionId: answer.connection.id, redirectUrl: answer.redirectUrl }));
        location.assign(answer.connection.consentUrl);
      } else {
        location.assign(answer.redirectUrl);
      }
    });
  });
}

if (requireSignIn()) {
  initPage();
  start();
}
