// Labeling view: the image as large as the screen allows with the 8x8 patch grid over it.
// Every change is sent at once (one PUT per cell); the cell shows a dot while saving, the status line
// confirms, and a failure stays visible with a Retry button until it is saved: no silent loss.
import { api, el, fmtDate, fmtNum, itemsOf, toast } from "./api.js";

const GRID = 8;
const CYCLE = { null: "diseased", diseased: "healthy", healthy: null };

const app = document.getElementById("label-app");
const imageId = app.dataset.imageId;
const canLabel = app.dataset.canLabel === "true";
const stage = document.getElementById("stage");
const gridEl = document.getElementById("patch-grid");
const zoom = document.getElementById("zoom");
const statusEl = document.getElementById("save-status");

const state = {
  desired: new Array(GRID * GRID).fill(null), // what this user wants (shown)
  saved: new Array(GRID * GRID).fill(null), // what the server confirmed
  inflight: new Array(GRID * GRID).fill(false),
  failed: new Array(GRID * GRID).fill(null), // error sentence per cell, null when fine
  others: new Array(GRID * GRID).fill(null).map(() => []), // [{user, label, at}]
  mineMeta: new Array(GRID * GRID).fill(null), // {at}
  consensus: new Array(GRID * GRID).fill(null), // what training uses (all annotators together)
  suggested: new Set(),
  cursor: 0,
  lastSaved: null,
};
const cells = [];
const waiters = [];
let painting; // the label being painted while the mouse button is held, else undefined
window.addEventListener("pointerup", () => { painting = undefined; });

const idx = (r, c) => r * GRID + c;
// What a cell shows: an annotator sees their own labels (others' as dots); a viewer, who labels
// nothing, sees the consensus that training uses.
const shown = (k) => (canLabel ? state.desired[k] : state.consensus[k]);
const rc = (k) => [Math.floor(k / GRID), k % GRID];
const labelName = (v) => v ?? "unlabeled";

// ---- layout: the largest square that fits beside the side panel ----
function fitStage() {
  const main = document.getElementById("main");
  const header = document.querySelector(".site-header")?.offsetHeight || 0;
  const mainStyle = getComputedStyle(main);
  const padV = parseFloat(mainStyle.paddingTop) + parseFloat(mainStyle.paddingBottom);
  const availH = window.innerHeight - header - padV;
  const wide = window.innerWidth > 1100;
  const availW = main.clientWidth - parseFloat(mainStyle.paddingLeft) - parseFloat(mainStyle.paddingRight) - (wide ? 340 : 0);
  const side = Math.floor(Math.max(320, Math.min(availH, availW, 1400)));
  stage.style.setProperty("--stage", `${side}px`);
}

// ---- rendering ----
function buildGrid() {
  for (let k = 0; k < GRID * GRID; k++) {
    const [r, c] = rc(k);
    const cell = el("button", {
      type: "button", class: "cell", tabindex: "-1",
      dataset: { row: r, col: c, k },
    });
    // Mouse: press cycles the cell; dragging on with the button held paints that same label over
    // the cells it crosses (fast for lesion clusters). Keyboard Enter/Space on the cell: a click
    // with detail 0, which cycles too.
    cell.addEventListener("pointerdown", (e) => {
      if (e.button !== 0) return;
      e.preventDefault();
      moveTo(k, true);
      const value = CYCLE[state.desired[k]];
      painting = canLabel ? value : undefined;
      setLabel(k, value); // a viewer gets a notice instead

    });
    cell.addEventListener("pointerenter", (e) => {
      if (painting === undefined || !(e.buttons & 1)) return;
      moveTo(k, false);
      if (state.desired[k] !== painting) setLabel(k, painting);
    });
    cell.addEventListener("click", (e) => {
      if (e.detail !== 0) return; // a mouse click was handled on pointerdown
      moveTo(k, false);
      setLabel(k, CYCLE[state.desired[k]]);
    });
    cells.push(cell);
    gridEl.append(cell);
  }
}

function renderCell(k) {
  const cell = cells[k];
  const v = shown(k);
  const [r, c] = rc(k);
  cell.classList.toggle("diseased", v === "diseased");
  cell.classList.toggle("healthy", v === "healthy");
  cell.classList.toggle("failed", !!state.failed[k]);
  cell.classList.toggle("suggested", state.suggested.has(k) && v === null);
  cell.classList.toggle("cursor", k === state.cursor);
  cell.dataset.label = v ?? "";
  cell.tabIndex = k === state.cursor ? 0 : -1;
  const parts = [];
  if (v) parts.push(el("span", { class: "tag" }, v === "diseased" ? "D" : "H"));
  if (state.failed[k]) parts.push(el("span", { class: "failed-mark", title: "not saved" }, "!"));
  else if (state.inflight[k] || state.desired[k] !== state.saved[k]) parts.push(el("span", { class: "pending", title: "saving" }));
  const others = state.others[k];
  if (others.length) {
    parts.push(el("span", { class: "others" }, others.map((o) => el("i", { class: o.label || "", title: `${o.user}: ${labelName(o.label)}` }))));
  }
  cell.replaceChildren(...parts);
  let aria = `Row ${r + 1}, column ${c + 1}: ${labelName(v)}`;
  if (others.length) aria += `; others: ${others.map((o) => `${o.user} ${labelName(o.label)}`).join(", ")}`;
  if (state.failed[k]) aria += "; not saved";
  cell.setAttribute("aria-label", aria);
  cell.title = aria;
}

function renderAll() {
  for (let k = 0; k < GRID * GRID; k++) renderCell(k);
  renderCounters();
  renderCurrent();
  renderStatus();
}

function renderCounters() {
  const values = state.desired.map((_, k) => shown(k));
  const d = values.filter((v) => v === "diseased").length;
  const h = values.filter((v) => v === "healthy").length;
  document.getElementById("count-diseased").textContent = d;
  document.getElementById("count-healthy").textContent = h;
  document.getElementById("count-unlabeled").textContent = GRID * GRID - d - h;
  const byOthers = state.others.filter((o) => o.some((x) => x.label)).length;
  document.getElementById("count-summary").textContent = canLabel
    ? `You labeled ${d + h} of 64 patches.` + (byOthers ? ` Other annotators labeled ${byOthers} patches.` : "")
    : `Consensus of the annotators: ${d + h} of 64 patches labeled.`;
}

function renderCurrent() {
  const k = state.cursor;
  const [r, c] = rc(k);
  zoom.src = `/api/v1/images/${imageId}/patches/${r}/${c}`;
  zoom.alt = `Patch row ${r + 1}, column ${c + 1} at full resolution`;
  document.getElementById("cell-title").textContent = `Patch row ${r + 1}, column ${c + 1}`;
  const meta = state.mineMeta[k];
  document.getElementById("cell-mine").textContent = canLabel
    ? `Your label: ${labelName(state.desired[k])}` + (meta?.at && state.desired[k] === state.saved[k] ? ` (${fmtDate(meta.at)})` : "")
    : `Consensus: ${labelName(state.consensus[k])}`;
  const others = state.others[k];
  const box = document.getElementById("cell-others");
  if (!others.length) {
    box.replaceChildren(el("span", { class: "muted" }, "No other annotator labeled this patch."));
  } else {
    box.replaceChildren(
      el("ul", { class: "keys" }, others.map((o) => el("li", {}, `${o.user}: ${labelName(o.label)}${o.at ? ` (${fmtDate(o.at)})` : ""}`))),
      el("p", { class: "muted" }, `Consensus used for training: ${labelName(state.consensus[k])}`),
    );
  }
}

function renderStatus() {
  const failed = state.failed.map((m, k) => (m ? k : -1)).filter((k) => k >= 0);
  const pending = state.desired.some((v, k) => v !== state.saved[k] && !state.failed[k]);
  if (failed.length) {
    statusEl.className = "save-status error";
    statusEl.setAttribute("role", "alert");
    const msg = state.failed[failed[0]];
    statusEl.replaceChildren(
      `${failed.length} change${failed.length > 1 ? "s" : ""} not saved: ${msg}`,
      el("button", { type: "button", class: "btn small", id: "retry-save", onclick: retryFailed }, "Retry"),
    );
  } else if (pending) {
    statusEl.className = "save-status";
    statusEl.removeAttribute("role");
    statusEl.textContent = "Saving…";
  } else if (state.lastSaved) {
    const { k, label, at } = state.lastSaved;
    const [r, c] = rc(k);
    statusEl.className = "save-status ok";
    statusEl.removeAttribute("role");
    statusEl.textContent = `✓ Saved: row ${r + 1}, column ${c + 1} is ${labelName(label)} (${at.toLocaleTimeString()})`;
  } else {
    statusEl.className = "save-status";
    statusEl.textContent = canLabel ? "Click a patch or use the keys to label." : "";
  }
}

// ---- saving ----
async function save(k) {
  if (state.inflight[k] || state.desired[k] === state.saved[k]) {
    if (!state.inflight[k]) state.failed[k] = null;
    settle();
    return;
  }
  const value = state.desired[k];
  const [r, c] = rc(k);
  state.inflight[k] = true;
  renderCell(k);
  renderStatus();
  try {
    // No redirect to sign-in on 401 here: that would drop the unsaved changes; the error says what to do.
    const out = await api(`/images/${imageId}/labels/${r}/${c}`, { method: "PUT", json: { label: value }, redirectOn401: false });
    state.saved[k] = value;
    state.consensus[k] = out.label;
    const me = document.body.dataset.user;
    state.others[k] = out.annotations.filter((a) => a.user !== me && a.label).map((a) => ({ user: a.user, label: a.label, at: a.at }));
    state.failed[k] = null;
    state.mineMeta[k] = { at: new Date().toISOString() };
    state.lastSaved = { k, label: value, at: new Date() };
  } catch (err) {
    state.failed[k] = err.status === 401
      ? "your session has ended. Sign in again in another tab, then press Retry."
      : err.message;
  } finally {
    state.inflight[k] = false;
  }
  if (!state.failed[k] && state.desired[k] !== state.saved[k]) {
    save(k); // the user changed it again while it was in flight: send the newest value
  }
  renderCell(k);
  renderCounters();
  if (k === state.cursor) renderCurrent();
  renderStatus();
  settle();
}

function retryFailed() {
  for (let k = 0; k < GRID * GRID; k++) {
    if (state.failed[k]) {
      state.failed[k] = null;
      save(k);
    }
  }
  renderStatus();
}

function setLabel(k, value) {
  if (!canLabel) {
    toast("Your role cannot change labels.", "error");
    return;
  }
  state.desired[k] = value;
  state.failed[k] = null;
  renderCell(k);
  renderCounters();
  if (k === state.cursor) renderCurrent();
  save(k);
}

const busy = () => state.inflight.some(Boolean);
const unsaved = () => state.desired.some((v, k) => v !== state.saved[k]);

function settle() {
  if (!busy()) while (waiters.length) waiters.shift()();
}
function whenSettled() {
  return busy() ? new Promise((resolve) => waiters.push(resolve)) : Promise.resolve();
}

window.addEventListener("beforeunload", (e) => {
  if (unsaved()) {
    e.preventDefault();
    e.returnValue = "";
  }
});

// ---- cursor and keys ----
function moveTo(k, focus = true) {
  const old = state.cursor;
  state.cursor = Math.max(0, Math.min(GRID * GRID - 1, k));
  renderCell(old);
  renderCell(state.cursor);
  renderCurrent();
  if (focus) cells[state.cursor].focus({ preventScroll: true });
}

function move(dr, dc) {
  const [r, c] = rc(state.cursor);
  moveTo(idx(Math.max(0, Math.min(GRID - 1, r + dr)), Math.max(0, Math.min(GRID - 1, c + dc))));
}

let neighbours = { prev: null, next: null };
// Resolves once the library's order is known: N or P pressed right after the page shows its
// labels waits for it instead of answering "This is the first image".
let neighboursLoaded = Promise.resolve();

async function goTo(which) {
  await neighboursLoaded;
  const id = neighbours[which];
  if (!id) {
    toast(which === "next" ? "This is the last image." : "This is the first image.");
    return;
  }
  await whenSettled();
  if (state.failed.some(Boolean)) {
    toast("Some labels are not saved yet: press Retry first.", "error", 5000);
    return;
  }
  window.location.assign(labelUrl(id));
}

document.addEventListener("keydown", (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const t = e.target;
  if (t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA" || t.isContentEditable)) return;
  const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
  const actions = {
    ArrowLeft: () => move(0, -1),
    ArrowRight: () => move(0, 1),
    ArrowUp: () => move(-1, 0),
    ArrowDown: () => move(1, 0),
    d: () => setLabel(state.cursor, "diseased"),
    h: () => setLabel(state.cursor, "healthy"),
    u: () => setLabel(state.cursor, null),
    " ": () => setLabel(state.cursor, CYCLE[state.desired[state.cursor]]),
    n: () => goTo("next"),
    p: () => goTo("prev"),
  };
  // Space/Enter on a focused cell would also fire its click: let the button handle those.
  if ((key === " " || key === "Enter") && t && t.classList && t.classList.contains("cell")) return;
  const act = actions[key];
  if (act) {
    e.preventDefault();
    act();
  }
});

for (const b of document.querySelectorAll("[data-set]")) {
  b.addEventListener("click", () => {
    const v = b.dataset.set === "clear" ? null : b.dataset.set;
    setLabel(state.cursor, v);
    cells[state.cursor].focus({ preventScroll: true });
  });
}

// ---- loading ----

/** GET /images/{id}/labels: per cell, this user's label ("mine") and every annotator's current one. */
function applyLabels(data) {
  const me = document.body.dataset.user;
  for (const cell of data.cells) {
    const k = idx(cell.row, cell.col);
    state.saved[k] = state.desired[k] = cell.mine;
    const mine = cell.annotations.find((a) => a.user === me);
    state.mineMeta[k] = mine ? { at: mine.at } : null;
    state.others[k] = cell.annotations.filter((a) => a.user !== me && a.label).map((a) => ({ user: a.user, label: a.label, at: a.at }));
    state.consensus[k] = cell.label;
  }
}

async function loadLabels() {
  const data = await api(`/images/${imageId}/labels`);
  applyLabels(data);
}

async function loadImageInfo() {
  const img = await api(`/images/${imageId}`);
  const name = img.original_filename;
  document.getElementById("image-title").textContent = name;
  document.title = `Label ${name} · PatchScreen`;
}

// N / P follow the images page's order (newest first) and its filter, passed as ?status=, so that
// "unlabeled" walks through the images still to label. Positions are found by id, so the walk goes
// on even when the current image has just left the filter (e.g. it got its first label).
const listStatus = new URLSearchParams(location.search).get("status") || "";
const labelUrl = (id) => `/images/${id}/label${listStatus ? `?status=${encodeURIComponent(listStatus)}` : ""}`;

async function loadNeighbours() {
  if (listStatus) document.getElementById("all-images").href = `/images?status=${encodeURIComponent(listStatus)}`;
  const ids = [];
  const filter = listStatus ? `&status=${encodeURIComponent(listStatus)}` : "";
  for (let offset = 0; offset < 5000; offset += 200) {
    const page = (await api(`/images?limit=200&offset=${offset}${filter}`)).items;
    ids.push(...page.map((i) => Number(i.id)));
    if (page.length < 200) break;
  }
  const me = Number(imageId);
  const newer = ids.filter((id) => id > me);
  const older = ids.filter((id) => id < me);
  neighbours = { prev: newer.length ? newer[newer.length - 1] : null, next: older.length ? older[0] : null };
  const prevA = document.getElementById("prev-image");
  const nextA = document.getElementById("next-image");
  prevA.href = neighbours.prev ? labelUrl(neighbours.prev) : "#";
  nextA.href = neighbours.next ? labelUrl(neighbours.next) : "#";
  prevA.classList.toggle("disabled", !neighbours.prev);
  nextA.classList.toggle("disabled", !neighbours.next);
  for (const [a, which] of [[prevA, "prev"], [nextA, "next"]]) {
    a.addEventListener("click", (e) => { e.preventDefault(); goTo(which); });
  }
}

async function loadSuggestions() {
  const box = document.getElementById("suggested");
  try {
    const data = await api(`/suggestions?n=5&image_id=${imageId}`);
    const items = itemsOf(data);
    state.suggested = new Set(items.map((s) => idx(s.row, s.col)));
    if (!items.length) {
      box.replaceChildren(el("span", { class: "muted" }, "No suggestions: every patch is labeled or no model is active yet."));
      return;
    }
    box.replaceChildren(el("ul", { class: "keys" }, items.map((s) => el("li", {},
      el("a", { href: "#", onclick: (e) => { e.preventDefault(); moveTo(idx(s.row, s.col)); } },
        `row ${s.row + 1}, column ${s.col + 1}`),
      ` p(diseased) ${fmtNum(s.probability, 2)}`))));
    for (const k of state.suggested) renderCell(k);
  } catch (err) {
    box.replaceChildren(el("span", { class: "muted" }, err.status === 409 ? err.message : `No suggestions (${err.message}).`));
  }
}

async function init() {
  buildGrid();
  fitStage();
  window.addEventListener("resize", fitStage);
  const r = Number(app.dataset.row);
  const c = Number(app.dataset.col);
  if (Number.isInteger(r) && Number.isInteger(c) && app.dataset.row !== "" && r >= 0 && r < GRID && c >= 0 && c < GRID) {
    state.cursor = idx(r, c);
  }
  renderAll();
  try {
    await Promise.all([loadLabels(), loadImageInfo()]);
    app.dataset.loaded = "true";
  } catch (err) {
    statusEl.className = "save-status error";
    statusEl.replaceChildren(`Could not load this image's labels: ${err.message} `,
      el("button", { type: "button", class: "btn small", onclick: () => location.reload() }, "Reload"));
    return;
  }
  renderAll();
  cells[state.cursor].focus({ preventScroll: true });
  neighboursLoaded = loadNeighbours().catch(() => {});
  loadSuggestions();
}

init();
