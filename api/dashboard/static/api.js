// The JSON API with the key as a Bearer header. The key lives in sessionStorage (or localStorage when
// "keep me signed in" is ticked) and is never put in a URL.
const STORE = "xtc.apiKey";

export function getKey() {
  return sessionStorage.getItem(STORE) || localStorage.getItem(STORE);
}

export function setKey(key, remember) {
  clearKey();
  (remember ? localStorage : sessionStorage).setItem(STORE, key);
}

export function clearKey() {
  sessionStorage.removeItem(STORE);
  localStorage.removeItem(STORE);
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function request(method, path, { json, form, key } = {}) {
  const headers = { Authorization: `Bearer ${key || getKey()}` };
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form) {
    body = form;
  }
  const response = await fetch(path, { method, headers, body, cache: "no-store" });
  if (!response.ok) {
    let code = "http_error", message = response.statusText;
    try {
      const err = (await response.json()).error;
      code = err.code;
      message = err.message;
    } catch (_) { /* not JSON */ }
    throw new ApiError(response.status, code, message);
  }
  return response;
}

export const api = {
  check: (key) => request("GET", "/jobs?limit=1", { key }),
  jobs: async (params = {}) => (await request("GET", `/jobs?${new URLSearchParams(params)}`)).json(),
  job: async (id) => (await request("GET", `/jobs/${encodeURIComponent(id)}`)).json(),
  events: async (id, after) => {
    const q = new URLSearchParams({ limit: 1000 });
    if (after != null) q.set("after", after);
    return (await request("GET", `/jobs/${encodeURIComponent(id)}/events?${q}`)).json();
  },
  artifacts: async (id) => (await request("GET", `/jobs/${encodeURIComponent(id)}/artifacts`)).json(),
  cancel: async (id) => (await request("POST", `/jobs/${encodeURIComponent(id)}/cancel`)).json(),
  createJob: async (body) => (await request("POST", "/jobs", { json: body })).json(),
  uploadDataset: async (form) => (await request("POST", "/datasets", { form })).json(),
  // An authorized fetch into a Blob, then a click on an object URL: the key stays in a header.
  download: async (url, name) => {
    const blob = await (await request("GET", url)).blob();
    const href = URL.createObjectURL(blob);
    const a = Object.assign(document.createElement("a"), { href, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(href), 10000);
    return blob;
  },
};

// Every finished job of the tenant (the tradeoff chart needs all of them, not one page).
export async function allJobs(status, max = 2000) {
  const out = [];
  let cursor = null;
  do {
    const params = { limit: 100 };
    if (status) params.status = status;
    if (cursor) params.cursor = cursor;
    const page = await api.jobs(params);
    out.push(...page.data);
    cursor = page.next_cursor;
  } while (cursor && out.length < max);
  return out;
}
