// Prediction view: score, decision and threshold, the blurred heatmap over the image with an opacity
// slider, a toggle to the raw 8x8 patch probabilities, and the model version that answered.
import { api, el, fmtNum, showError } from "./api.js";

const result = document.getElementById("predict-result");
const errorBox = document.getElementById("predict-error");
const stage = document.getElementById("stage");
const baseImg = document.getElementById("base-image");
const heatImg = document.getElementById("heat-image");
const probGrid = document.getElementById("prob-grid");
const opacity = document.getElementById("opacity");
const opacityValue = document.getElementById("opacity-value");
const rawToggle = document.getElementById("raw-toggle");

function fitStage() {
  // The largest square between the stage's top and the bottom of the window, beside the panel.
  const main = document.getElementById("main");
  const wide = window.innerWidth > 1100;
  const availW = main.clientWidth - 40 - (wide ? 360 : 0);
  const top = stage.getBoundingClientRect().top + window.scrollY;
  const availH = window.innerHeight - top - 16;
  stage.style.setProperty("--stage", `${Math.floor(Math.max(320, Math.min(availW, availH, 1200)))}px`);
}

// The server's heatmap colours (ml/heatmap.py anchors, "inferno"-like), so both views read alike.
const ANCHORS = [[0, 0, 4], [66, 10, 104], [147, 38, 103], [221, 81, 58], [252, 165, 10], [252, 255, 164]];

function colourFor(p) {
  const h = Math.max(0, Math.min(1, p)) * (ANCHORS.length - 1);
  const lo = Math.min(Math.floor(h), ANCHORS.length - 2);
  const t = h - lo;
  return ANCHORS[lo].map((a, i) => Math.round(a * (1 - t) + ANCHORS[lo + 1][i] * t));
}

function drawLegend() {
  const bar = document.getElementById("legend-bar");
  const stops = ANCHORS.map((c, i) => `rgb(${c.join(", ")}) ${(100 * i) / (ANCHORS.length - 1)}%`);
  bar.style.backgroundImage = `linear-gradient(to right, ${stops.join(", ")})`;
}

function applyOpacity() {
  const a = Number(opacity.value) / 100;
  opacityValue.textContent = `${opacity.value}%`;
  heatImg.style.opacity = String(a);
  for (const cell of probGrid.children) {
    const [r, g, b] = colourFor(Number(cell.dataset.p));
    cell.style.backgroundColor = `rgba(${r}, ${g}, ${b}, ${a})`;
  }
}

function applyRaw() {
  probGrid.classList.toggle("hidden", !rawToggle.checked);
  heatImg.classList.toggle("hidden", rawToggle.checked);
}

function flatProbs(p) {
  if (!Array.isArray(p)) return [];
  return Array.isArray(p[0]) ? p.flat() : p;
}

function show(pred, name) {
  errorBox.replaceChildren();
  result.classList.remove("hidden");
  document.getElementById("recent").classList.add("hidden");
  document.getElementById("no-model").classList.add("hidden");
  const decision = document.getElementById("decision");
  decision.textContent = pred.diseased ? "Signs of DR (score at or above threshold)" : "No DR detected (below threshold)";
  decision.className = `decision ${pred.diseased ? "dr" : "nodr"}`;
  document.getElementById("score").textContent = `${fmtNum(pred.score, 2)} of 64`;
  document.getElementById("threshold").textContent = fmtNum(pred.threshold, 2);
  document.getElementById("model-version").textContent = `v${pred.model_version}`;
  document.getElementById("source-name").textContent = name;
  // The square image the heatmap is drawn on is the overlay at alpha 0 (for stored images and for
  // uploads that were not stored alike); the bare heatmap goes on top with the slider's opacity.
  baseImg.src = `${pred.heatmap_url}?overlay=true&alpha=0`;
  heatImg.src = `${pred.heatmap_url}?overlay=false`;
  const probs = flatProbs(pred.patch_probabilities);
  probGrid.replaceChildren(...probs.map((p, k) => el("div", {
    dataset: { p, k }, title: `row ${Math.floor(k / 8) + 1}, column ${(k % 8) + 1}: ${fmtNum(p, 3)}`,
  }, fmtNum(p, 2))));
  applyOpacity();
  applyRaw();
  const links = document.getElementById("result-links");
  links.replaceChildren(
    el("a", { class: "btn", href: pred.heatmap_url, target: "_blank", rel: "noopener" }, "Open heatmap PNG"),
    pred.image_id ? el("a", { class: "btn", href: `/images/${pred.image_id}/label` }, "Label this image") : null,
  );
  fitStage();
}

function showFailure(err, retry) {
  if (err.status === 409) {
    // No trained model yet: say what to do rather than show an error.
    result.classList.add("hidden");
    const box = document.getElementById("no-model");
    box.classList.remove("hidden");
    box.replaceChildren(el("div", { class: "alert info", role: "status" }, err.message, " ",
      el("a", { href: "/training" }, "Go to Training"), "."));
    return;
  }
  showError(errorBox, `Prediction failed: ${err.message}`, retry);
}

async function predictLibrary(imageId) {
  errorBox.replaceChildren(el("p", { class: "muted" }, "Predicting…"));
  try {
    const pred = await api("/predict", { method: "POST", json: { image_id: Number(imageId) } });
    let name = `Image ${imageId}`;
    try {
      const img = await api(`/images/${imageId}`);
      name = img.original_filename || name;
    } catch { /* the name is cosmetic */ }
    show(pred, name);
    history.replaceState(null, "", `?image_id=${imageId}`);
  } catch (err) {
    showFailure(err, () => predictLibrary(imageId));
  }
}

async function predictUpload(file) {
  errorBox.replaceChildren(el("p", { class: "muted" }, `Predicting ${file.name}…`));
  const form = new FormData();
  form.append("file", file, file.name);
  try {
    const pred = await api("/predict", { method: "POST", body: form });
    show(pred, `${file.name} (not stored)`);
  } catch (err) {
    showFailure(err, () => predictUpload(file));
  }
}

document.getElementById("upload-predict").addEventListener("submit", (e) => {
  e.preventDefault();
  const file = document.getElementById("predict-file").files[0];
  if (!file) {
    showError(errorBox, "Choose an image file first.");
    return;
  }
  predictUpload(file);
});

document.getElementById("library-predict").addEventListener("submit", (e) => {
  e.preventDefault();
  const id = document.getElementById("predict-image-id").value;
  if (!id) {
    showError(errorBox, "Enter the id of an image of the library.");
    return;
  }
  predictLibrary(id);
});

drawLegend();
opacity.addEventListener("input", applyOpacity);
rawToggle.addEventListener("change", applyRaw);
window.addEventListener("resize", fitStage);
fitStage();

async function showActiveModel() {
  const line = document.getElementById("active-model");
  try {
    const active = (await api("/models")).find((m) => m.active);
    line.textContent = active
      ? `Active model: version ${active.version} (${active.method}, threshold ${fmtNum(active.threshold, 2)})`
      : "No model is active yet: label patches and train one on the Training page.";
  } catch (err) {
    line.textContent = `Active model unknown: ${err.message}`;
  }
}

async function showRecent() {
  // Something to click on when the page is opened without an image.
  try {
    const { items } = await api("/images?limit=12");
    if (!items.length) return;
    document.getElementById("recent-grid").replaceChildren(...items.map((img) => el("button", {
      type: "button", title: `Predict ${img.original_filename}`,
      onclick: () => { document.getElementById("predict-image-id").value = img.id; predictLibrary(img.id); },
    }, el("img", { src: `${img.preview_url}?size=128`, alt: "" }), el("span", {}, img.original_filename))));
    document.getElementById("recent").classList.remove("hidden");
  } catch { /* the list is a convenience */ }
}

showActiveModel();
const initial = result.dataset.imageId;
if (initial) predictLibrary(initial);
else showRecent();
