// Calls to cutor's v1 API with the token the user gave (sessionStorage: this tab only).
// A 401 asks for a token (see app.js) and the call is tried again with it.

const TOKEN_KEY = "cutor-token";
let askForToken = async () => { throw new Error("no token prompt"); };

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

// `prompt(reason)` resolves once the user gave a token.
export function onTokenNeeded(prompt) {
  askForToken = prompt;
}

export function authHeaders(extra = {}) {
  const headers = { ...extra };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  return headers;
}

export class ApiError extends Error {
  constructor(status, body) {
    const e = body && body.error;
    super(e ? `${status} ${e.code}: ${e.message}` : `HTTP ${status}`);
    this.status = status;
    this.code = e ? e.code : null;
  }
}

// fetch() with the token; on 401 asks for one and tries again (until the user gives one).
export async function authorizedFetch(path, options = {}) {
  for (;;) {
    const res = await fetch(path, { ...options, headers: authHeaders(options.headers) });
    if (res.status !== 401) return res;
    await askForToken(token() ? "That token is not accepted." : "");
  }
}

// A JSON call: resolves to the parsed body of a 2xx answer, else throws ApiError.
export async function api(method, path, body) {
  const options = { method };
  if (body !== undefined) {
    options.body = JSON.stringify(body);
    options.headers = { "Content-Type": "application/json" };
  }
  const res = await authorizedFetch(path, options);
  const text = await res.text();
  const parsed = text ? JSON.parse(text) : null;
  if (!res.ok) throw new ApiError(res.status, parsed);
  return parsed;
}
