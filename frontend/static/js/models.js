// Models page: every version with its metrics and training data, which one is active, activation
// (admin), and the ROC curve of the selected version drawn as SVG (no plotting library needed).
import { api, el, fmtDate, fmtNum, itemsOf, showError, toast, user } from "./api.js";

const SVG = "http://www.w3.org/2000/svg";
const tbody = document.querySelector("#models-table tbody");
const errorBox = document.getElementById("models-error");
const detail = document.getElementById("model-detail");
const rocBox = document.getElementById("roc");
let selected = location.hash.startsWith("#v") ? Number(location.hash.slice(2)) : null;

function trainingCounts(mv) {
  const s = mv.training_summary || {};
  const parts = [];
  if (s.n_labeled_patches !== undefined) parts.push(`${s.n_labeled_patches} labeled patches`);
  if (s.n_diseased_patches !== undefined || s.n_healthy_patches !== undefined) {
    parts.push(`${s.n_diseased_patches ?? "?"} diseased / ${s.n_healthy_patches ?? "?"} healthy`);
  }
  if (s.n_unlabeled_patches !== undefined) parts.push(`${s.n_unlabeled_patches} unlabeled`);
  if (s.n_images !== undefined) parts.push(`${s.n_images} images`);
  return parts.join(", ") || "–";
}

/** metrics.roc = {fpr: [...], tpr: [...]}: the validation patch ROC the training job recorded. */
function rocOf(m) {
  const r = m?.roc;
  return r && Array.isArray(r.fpr) && Array.isArray(r.tpr) && r.fpr.length > 1 ? r : null;
}

function svg(tag, attrs = {}, text) {
  const n = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
  if (text !== undefined) n.textContent = text;
  return n;
}

function drawRoc(mv) {
  const roc = rocOf(mv.metrics);
  if (!roc) {
    rocBox.replaceChildren(el("h3", {}, "ROC curve"), el("p", { class: "muted" }, "This version has no ROC curve recorded (no held-out labeled patches of both classes)."));
    return;
  }
  const W = 370, H = 360, L = 54, B = 36, T = 10, R = 20;
  const x = (f) => L + f * (W - L - R);
  const y = (t) => H - B - t * (H - B - T);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `ROC curve of version ${mv.version}` });
  for (let i = 0; i <= 4; i++) {
    const v = i / 4;
    root.append(svg("line", { class: "grid-line", x1: x(v), y1: y(0), x2: x(v), y2: y(1) }));
    root.append(svg("line", { class: "grid-line", x1: x(0), y1: y(v), x2: x(1), y2: y(v) }));
    root.append(svg("text", { x: x(v), y: H - B + 14, "text-anchor": "middle" }, v.toFixed(2)));
    root.append(svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, v.toFixed(2)));
  }
  root.append(svg("line", { class: "axis", x1: x(0), y1: y(0), x2: x(1), y2: y(0) }));
  root.append(svg("line", { class: "axis", x1: x(0), y1: y(0), x2: x(0), y2: y(1) }));
  root.append(svg("line", { class: "chance", x1: x(0), y1: y(0), x2: x(1), y2: y(1) }));
  const pts = roc.fpr.map((f, i) => `${x(f).toFixed(1)},${y(roc.tpr[i]).toFixed(1)}`).join(" ");
  root.append(svg("polyline", { class: "curve", points: pts }));
  root.append(svg("text", { x: (L + W) / 2, y: H - 4, "text-anchor": "middle" }, "false positive rate"));
  const yl = svg("text", { x: 12, y: (H - B) / 2, "text-anchor": "middle", transform: `rotate(-90 12 ${(H - B) / 2})` }, "true positive rate");
  root.append(yl);
  const auc = mv.metrics.val_patch_auc ?? null;
  rocBox.replaceChildren(el("h3", {}, `ROC curve, version ${mv.version}${auc !== null ? ` (AUC ${fmtNum(auc, 3)})` : ""}`), root);
}

function show(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : fmtNum(v, 4);
  return String(v);
}

// What the network is fed (ml/data/colour.py): a version trained on one input must be read with it.
function describeInput(network) {
  if (!network) return "not recorded (see the checkpoint)";
  const colour = network.input_norm === "image" ? "colours standardised per image" : "max-normalised, as published";
  return `${network.model_res}×${network.model_res} patches, ${colour}`;
}

function renderDetail(mv) {
  const m = mv.metrics || {};
  const flat = Object.entries(m).filter(([, v]) => v === null || typeof v !== "object");
  const summary = Object.entries(mv.training_summary || {}).filter(([, v]) => v === null || typeof v !== "object");
  detail.replaceChildren(
    el("h3", {}, `Version ${mv.version}${mv.active ? " (active)" : ""}`),
    el("dl", { class: "metrics-list" },
      [["Method", `${mv.method}${mv.preset ? ` · ${mv.preset}` : ""}`], ["Model input", describeInput(mv.network)],
        ["Created", fmtDate(mv.created_at)],
        ["Threshold", fmtNum(mv.threshold, 3)], ["Training job", mv.training_job_id ?? "–"],
        ...flat.map(([k, v]) => [k, show(v)]),
        ...summary.map(([k, v]) => [`training: ${k}`, show(v)]),
      ].flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
  );
  drawRoc(mv);
}

async function select(version) {
  selected = version;
  history.replaceState(null, "", `#v${version}`);
  for (const tr of tbody.children) tr.classList.toggle("selected", Number(tr.dataset.version) === version);
  try {
    renderDetail(await api(`/models/${version}`));
  } catch (err) {
    showError(detail, `Could not load version ${version}: ${err.message}`, () => select(version));
  }
}

async function activate(version) {
  if (!window.confirm(`Make version ${version} the active model? New predictions will use it.`)) return;
  try {
    await api(`/models/${version}/activate`, { method: "POST" });
    toast(`Version ${version} is now active.`);
  } catch (err) {
    toast(`Activation failed: ${err.message}`, "error", 6000);
  }
  load();
}

async function load() {
  let data;
  try {
    data = await api("/models");
  } catch (err) {
    showError(errorBox, `Could not load the model versions: ${err.message}`, load);
    return;
  }
  errorBox.replaceChildren();
  const models = itemsOf(data);
  const activeVersion = models.find((m) => m.active)?.version ?? null;
  tbody.replaceChildren(...models.map((mv) => {
    const isActive = mv.active;
    const m = mv.metrics || {};
    return el("tr", { id: `v${mv.version}`, class: isActive ? "is-active" : "", dataset: { version: mv.version } },
      el("td", {}, el("a", { href: `#v${mv.version}`, onclick: (e) => { e.preventDefault(); select(mv.version); } }, `v${mv.version}`)),
      el("td", {}, isActive ? el("span", { class: "badge active" }, "active") : ""),
      el("td", {}, `${mv.method}${mv.preset ? ` · ${mv.preset}` : ""}`),
      el("td", { class: "nowrap" }, fmtDate(mv.created_at)),
      el("td", {}, fmtNum(m.val_patch_auc, 3)),
      el("td", {}, fmtNum(m.val_image_auc, 3)),
      el("td", {}, fmtNum(mv.threshold, 2)),
      el("td", { class: "small" }, trainingCounts(mv)),
      el("td", {}, user.isAdmin && !isActive
        ? el("button", { type: "button", class: "btn small", onclick: () => activate(mv.version) }, "Activate")
        : ""),
    );
  }));
  if (!models.length) {
    tbody.append(el("tr", {}, el("td", { colspan: "9", class: "muted" }, "No model trained yet. Label some patches, then start a job on the Training page.")));
    return;
  }
  const pick = models.some((m) => m.version === selected) ? selected : (activeVersion ?? models[0].version);
  select(pick);
}

load();
