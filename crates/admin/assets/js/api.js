// The /api/v5 client: bearer token from sessionStorage, JSON in and out, errors that say
// what failed. A 401 on any call but login sends the page back to the login screen.

const KEY = 'hermod.session';

export const session = {
  get() {
    try { return JSON.parse(sessionStorage.getItem(KEY) || 'null'); } catch { return null; }
  },
  set(s) { sessionStorage.setItem(KEY, JSON.stringify(s)); },
  update(patch) { const s = session.get(); if (s) session.set({ ...s, ...patch }); },
  clear() { sessionStorage.removeItem(KEY); },
};

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code || '';
  }
}

let onUnauthorized = () => {};
export function setUnauthorizedHandler(f) { onUnauthorized = f; }

/** Build `path?query` (undefined, null and '' values are left out; arrays repeat the key). */
export function url(path, query) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query || {})) {
    if (v === undefined || v === null || v === '') continue;
    for (const x of Array.isArray(v) ? v : [v]) q.append(k, String(x));
  }
  const s = q.toString();
  return '/api/v5' + path + (s ? '?' + s : '');
}

/** Path segment escaping (client ids and topics may hold '/', '#', '+', spaces...). */
export const seg = (s) => encodeURIComponent(s);

export async function api(method, path, { query, body, timeoutMs = 15000 } = {}) {
  const s = session.get();
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (s && s.token) headers.Authorization = 'Bearer ' + s.token;
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeoutMs);
  let res;
  try {
    res = await fetch(url(path, query), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: ctl.signal,
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch (e) {
    window.dispatchEvent(new CustomEvent('hermod:reach', { detail: { ok: false } }));
    throw new ApiError(0, 'NETWORK', ctl.signal.aborted
      ? `no answer from the server within ${timeoutMs / 1000} s`
      : 'the server could not be reached (is hermod running?)');
  } finally {
    clearTimeout(timer);
  }
  window.dispatchEvent(new CustomEvent('hermod:reach', { detail: { ok: res.status < 500 } }));
  const text = await res.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = text; }
  }
  if (!res.ok) {
    const code = data && typeof data === 'object' ? data.code : '';
    const msg = data && typeof data === 'object' ? (data.message || data.code) : (typeof data === 'string' ? data.slice(0, 300) : '');
    const err = new ApiError(res.status, code, msg || `HTTP ${res.status} ${res.statusText}`);
    if (res.status === 401 && path !== '/login') onUnauthorized(err);
    throw err;
  }
  return data;
}

export const get = (path, query) => api('GET', path, { query });
export const post = (path, body) => api('POST', path, { body: body ?? {} });
export const put = (path, body) => api('PUT', path, { body: body ?? {} });
export const del = (path) => api('DELETE', path);

/** A failure described for a person: "what failed: why (HTTP 404 CLIENTID_NOT_FOUND)". */
export function describe(err) {
  if (err instanceof ApiError) {
    if (err.status === 0) return err.message;
    const tag = [`HTTP ${err.status}`, err.code].filter(Boolean).join(' ');
    return err.message && err.message !== err.code ? `${err.message} (${tag})` : tag;
  }
  return String(err && err.message || err);
}
