import { api, encode, requireSignIn, signedInUser } from "./api.js";
import { $, attempt, clear, el, initPage, table } from "./ui.js";

function authText(c) {
  if (c.auth) return c.auth.type;
  const options = (c.definition && c.definition.authOptions) || [];
  return options.length ? options.map((o) => o.type).join(", ") : "from definition";
}

if (requireSignIn()) {
  initPage();
  attempt(async () => {
    const items = (await api("GET", "/api/connectors")).value;
    const me = (signedInUser() || {}).oid;
    const rows = items.map((c) => [
      el("a", { href: `/portal/connector.html?id=${encode(c.id)}`, text: c.name }),
      c.source === "powerplatform" ? "Imported" : "Native",
      authText(c),
      c.owner === me ? "You" : "Shared with you",
      c.baseUrl,
    ]);
    clear($("connectors")).append(
      rows.length ? table("Your connectors and those shared with you", ["Name", "Kind", "Authentication", "Owner", "Base URL"], rows) : el("p", { text: "No connectors yet." }),
    );
  });
}
