// The portal's only way to the gateway: the same JSON API as every other client.
// The bearer token lives in sessionStorage (this tab only, gone when it closes) so
// that it survives moving between the portal's pages and the OAuth consent round trip;
// never in localStorage, a cookie or a URL. The CSP admits no script but ours.
const TOKEN = "portal.token";
const USER = "portal.user";
const NEXT = "portal.next";

export function token() {
  return sessionStorage.getItem(TOKEN);
}

export function signedInUser() {
  const raw = sessionStorage.getItem(USER);
  return raw ? JSON.parse(raw) : null;
}

function claims(jwt) {
  try {
    const part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part));
  } catch {
    return {};
  }
}

export function setToken(accessToken) {
  const c = claims(accessToken);
  const name = c.name || c.preferred_username || c.upn || c.oid || "signed in";
  sessionStorage.setItem(TOKEN, accessToken);
  sessionStorage.setItem(USER, JSON.stringify({ name, oid: c.oid || "", roles: c.roles || [] }));
}

export function signOut() {
  sessionStorage.removeItem(TOKEN);
  sessionStorage.removeItem(USER);
}

// Only portal paths: the page to come back to after signing in.
export function rememberNext(path) {
  if (path.startsWith("/portal/") && !path.startsWith("//")) sessionStorage.setItem(NEXT, path);
}

export function takeNext() {
  const next = sessionStorage.getItem(NEXT);
  sessionStorage.removeItem(NEXT);
  return next && next.startsWith("/portal/") && !next.startsWith("//") ? next : "/portal/";
}

export function requireSignIn() {
  if (token()) return true;
  rememberNext(location.pathname + location.search);
  location.replace("/portal/signin.html");
  return false;
}

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

export async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}` };
  let payload;
  if (body instanceof FormData) {
    payload = body;
  } else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const response = await fetch(path, { method, headers, body: payload, credentials: "omit" });
  if (response.status === 401) {
    signOut();
    requireSignIn();
  }
  if (!response.ok) {
    let problem;
    try {
      problem = await response.json();
    } catch {
      problem = { title: response.statusText };
    }
    throw new ApiError(response.status, problem);
  }
  if (response.status === 204) return null;
  return response.json();
}

// For the test call: the raw answer (status, type, text), whatever it is.
export async function rawGet(path) {
  const response = await fetch(path, {
    headers: { Authorization: `Bearer ${token()}` },
    credentials: "omit",
  });
  return {
    status: response.status,
    contentType: response.headers.get("content-type") || "",
    text: await response.text(),
  };
}

export function encode(segment) {
  return encodeURIComponent(segment);
}
