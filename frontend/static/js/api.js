// The one way the pages talk to the JSON API: same-origin session cookie, the CSRF header on every
// state-changing request, and errors turned into a human sentence (the API's JSON "detail").

export const API = "/api/v1";

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

export function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  if (meta && meta.content) return meta.content;
  // Double-submit cookie fallback: the server may expose the token as a readable cookie.
  for (const part of document.cookie.split(";")) {
    const [k, ...v] = part.trim().split("=");
    if (k === "patchscreen_csrf" || k === "csrf_token" || k === "csrftoken") return decodeURIComponent(v.join("="));
  }
  return "";
}

/** A readable sentence from an error body: FastAPI's detail (string, list of 422 errors or object). */
export function messageFrom(body, status) {
  if (body && typeof body === "object") {
    const d = body.detail ?? body.message ?? body.error;
    if (typeof d === "string") return d;
    if (Array.isArray(d) && d.length) {
      return d.map((e) => (e && e.msg ? `${(e.loc || []).slice(1).join(".") || "input"}: ${e.msg}` : String(e))).join("; ");
    }
    if (d && typeof d === "object" && typeof d.message === "string") return d.message;
  }
  if (typeof body === "string" && body.trim() && body.length < 300) return body.trim();
  if (status === 0) return "The server could not be reached. Check the connection and try again.";
  return `The server answered ${status}.`;
}

function isUnsafe(method) {
  return !["GET", "HEAD", "OPTIONS"].includes(method);
}

/** fetch() a JSON endpoint; resolves to the parsed body (or null), rejects with ApiError. */
export async function api(path, { method = "GET", json, body, headers = {}, signal, redirectOn401 = true } = {}) {
  const h = { Accept: "application/json", ...headers };
  if (json !== undefined) {
    h["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  if (isUnsafe(method)) h["X-CSRF-Token"] = csrfToken();
  let resp;
  try {
    resp = await fetch(path.startsWith("/") && !path.startsWith(API) ? API + path : path, {
      method, headers: h, body, credentials: "same-origin", signal,
    });
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError(0, messageFrom(null, 0), null);
  }
  const text = await resp.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = text; }
  }
  if (!resp.ok) {
    if (resp.status === 401 && redirectOn401 && !path.includes("/auth/")) {
      // The session ended (expired or signed out elsewhere): go to sign-in and come back here.
      window.location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
    }
    throw new ApiError(resp.status, messageFrom(data, resp.status), data);
  }
  return data;
}

/**
 * Upload one file with progress (fetch has no upload progress, XMLHttpRequest does).
 * Resolves to {status, data}; rejects with ApiError carrying the server's sentence.
 */
export function uploadFile(path, file, { field = "files", extra = {}, onProgress } = {}) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    form.append(field, file, file.name);
    for (const [k, v] of Object.entries(extra)) form.append(k, v);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path.startsWith(API) ? path : API + path);
    xhr.setRequestHeader("X-CSRF-Token", csrfToken());
    xhr.setRequestHeader("Accept", "application/json");
    xhr.withCredentials = true;
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable && onProgress) onProgress(e.loaded / e.total);
    });
    xhr.addEventListener("load", () => {
      let data = null;
      try { data = JSON.parse(xhr.responseText); } catch { data = xhr.responseText; }
      if (xhr.status >= 200 && xhr.status < 300) resolve({ status: xhr.status, data });
      else reject(new ApiError(xhr.status, messageFrom(data, xhr.status), data));
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, messageFrom(null, 0), null)));
    xhr.addEventListener("abort", () => reject(new ApiError(0, "Upload cancelled.", null)));
    xhr.send(form);
  });
}

/** Small DOM builder: el("a", {href: "/x", class: "btn"}, "text", child). Text is never parsed as HTML. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else if (v === true) node.setAttribute(k, "");
    else node.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export function toast(message, kind = "info", ms = 3500) {
  const box = document.getElementById("toasts");
  if (!box) return;
  const t = el("div", { class: `toast ${kind}` }, message);
  box.append(t);
  setTimeout(() => t.remove(), ms);
}

export function showError(container, message, retry) {
  container.replaceChildren(
    el("div", { class: "alert error", role: "alert" }, message, " ",
      retry ? el("button", { type: "button", class: "btn small", onclick: retry }, "Retry") : null),
  );
}

export const user = {
  get name() { return document.body.dataset.user || ""; },
  get role() { return document.body.dataset.role || ""; },
  get isAdmin() { return document.body.dataset.role === "admin"; },
  get canLabel() { return ["admin", "annotator"].includes(document.body.dataset.role); },
};

export function fmtNum(x, digits = 3) {
  if (x === null || x === undefined || Number.isNaN(Number(x))) return "–";
  return Number(x).toFixed(digits);
}

export function fmtDate(s) {
  if (!s) return "–";
  const d = new Date(s);
  if (Number.isNaN(d.getTime())) return String(s);
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(Number(seconds))) return "–";
  let s = Math.max(0, Math.round(Number(seconds)));
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (h) return `${h} h ${m} min`;
  if (m) return `${m} min ${s} s`;
  return `${s} s`;
}

export function fmtBytes(n) {
  if (!Number.isFinite(n)) return "";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

/** Items of a list answer: the API answers either a bare array or a page object with ``items``. */
export function itemsOf(data) {
  if (Array.isArray(data)) return data;
  return data && Array.isArray(data.items) ? data.items : [];
}
