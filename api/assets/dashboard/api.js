// The page's requests: every one goes through `request`, so a key (once the API has keys) is
// sent with each as `Authorization: Bearer`.

const KEY_STORAGE = "inferq.apiKey";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function apiKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

// Stores the key (an empty one removes it); throws if the browser does not let the page store.
export function saveApiKey(value) {
  if (value) localStorage.setItem(KEY_STORAGE, value);
  else localStorage.removeItem(KEY_STORAGE);
}

// Every request of the page goes through here, so a key (when the API has keys) is sent with
// each one as `Authorization: Bearer`. Answers the body and the response.
export async function request(path, options = {}) {
  const headers = new Headers(options.headers || {});
  headers.set("Accept", "application/json");
  const key = apiKey();
  if (key) headers.set("Authorization", `Bearer ${key}`);
  const res = await fetch(path, { ...options, headers, cache: "no-store" });
  let body = null;
  if (res.status !== 204) {
    body = await res.json().catch(() => null);
  }
  if (!res.ok) {
    const error = body && body.error;
    const message = typeof error === "string" ? error : (error && (error.message || error.code));
    throw new ApiError(res.status, message || `${res.status} ${res.statusText}`);
  }
  return { body, res };
}

export async function api(path, options = {}) {
  return (await request(path, options)).body;
}

// The API's clock, to the second, from the response's `Date` header (the page's own clock
// may be off): it places the API's per-second figures on the charts' time axis.
export function serverSecond(res) {
  const t = Date.parse(res.headers.get("Date") || "");
  return Number.isNaN(t) ? Math.floor(Date.now() / 1000) : Math.floor(t / 1000);
}
