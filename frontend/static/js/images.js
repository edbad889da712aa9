// Images page: the library as thumbnails with labeling status, filters, and multi-file upload with a
// progress bar and an error per file (one bad file never stops the others).
import { api, el, fmtBytes, fmtNum, showError, uploadFile } from "./api.js";

const PAGE_SIZE = 48;
const UPLOAD_CONCURRENCY = 2;

const grid = document.getElementById("image-grid");
const errorBox = document.getElementById("images-error");
const countInfo = document.getElementById("image-count");
const pageInfo = document.getElementById("page-info");
const prevBtn = document.getElementById("prev-page");
const nextBtn = document.getElementById("next-page");
const statusSel = document.getElementById("filter-status");

const params = new URLSearchParams(location.search);
let page = Math.max(0, Number(params.get("page") || 0));
statusSel.value = params.get("status") || "";


function statusBadges(img) {
  const n = img.labeled_patches;
  const out = [];
  out.push(n ? el("span", { class: "badge ok" }, `${n} of 64 labeled`) : el("span", { class: "badge" }, "unlabeled"));
  const pred = img.latest_prediction;
  if (pred) {
    out.push(el("span", {
      class: `badge ${pred.diseased ? "dr" : "nodr"}`,
      title: `Latest prediction by model v${pred.model_version} (threshold ${fmtNum(pred.threshold, 2)})`,
    }, `score ${fmtNum(pred.score, 1)} ${pred.diseased ? "DR" : "no DR"}`));
  }
  return out;
}

function thumb(img) {
  const name = img.original_filename;
  const labelHref = `/images/${img.id}/label${statusSel.value ? `?status=${statusSel.value}` : ""}`;
  return el("article", { class: "thumb", dataset: { imageId: img.id } },
    el("a", { class: "open", href: labelHref, title: `Label ${name}` },
      el("img", { src: `${img.preview_url}?size=256`, alt: `Fundus photograph ${name}`, loading: "lazy" }),
      el("span", { class: "fname" }, name)),
    el("div", { class: "meta" },
      el("span", { class: "row" }, statusBadges(img)),
      el("span", { class: "row" },
        el("a", { href: labelHref, class: "small" }, "Label"),
        el("a", { href: `/predict?image_id=${img.id}`, class: "small" }, "Prediction")),
    ),
  );
}

function syncUrl() {
  const p = new URLSearchParams();
  if (statusSel.value) p.set("status", statusSel.value);
  if (page) p.set("page", String(page));
  const qs = p.toString();
  history.replaceState(null, "", qs ? `?${qs}` : location.pathname);
}

export async function loadImages() {
  errorBox.replaceChildren();
  const p = new URLSearchParams({ limit: String(PAGE_SIZE), offset: String(page * PAGE_SIZE) });
  if (statusSel.value) p.set("status", statusSel.value);
  syncUrl();
  let data;
  try {
    data = await api(`/images?${p}`);
  } catch (err) {
    showError(errorBox, `Could not load the images: ${err.message}`, loadImages);
    return;
  }
  const items = data.items;
  const total = data.total;
  grid.replaceChildren(...items.map(thumb));
  if (!items.length) {
    const hint = page ? "No more images." : statusSel.value ? "No image matches this filter."
      : dropzone ? "No images yet: upload some above." : "No images yet: an annotator or admin uploads them.";
    grid.append(el("p", { class: "muted" }, hint));
  }
  countInfo.textContent = `${total} image${total === 1 ? "" : "s"}`;
  const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
  pageInfo.textContent = `Page ${page + 1} of ${pages}`;
  prevBtn.disabled = page === 0;
  nextBtn.disabled = page + 1 >= pages;
}

prevBtn.addEventListener("click", () => { page = Math.max(0, page - 1); loadImages(); });
nextBtn.addEventListener("click", () => { page += 1; loadImages(); });
statusSel.addEventListener("change", () => { page = 0; loadImages(); });
document.getElementById("filters").addEventListener("submit", (e) => e.preventDefault());

// ---- upload ----
const dropzone = document.getElementById("dropzone");
const fileInput = document.getElementById("file-input");
const uploadList = document.getElementById("upload-list");
const queue = [];
let active = 0;
let uploadedSinceRefresh = 0;

function uploadRow(file) {
  const bar = el("span");
  const progress = el("div", { class: "progress", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": "0" }, bar);
  const status = el("span", { class: "status" }, "waiting…");
  const li = el("li", { class: "upload-item", dataset: { file: file.name } },
    el("span", { class: "name", title: file.name }, `${file.name} `, el("span", { class: "muted small" }, fmtBytes(file.size))),
    progress, status);
  uploadList.prepend(li);
  return {
    setProgress(frac) {
      const pct = Math.round(frac * 100);
      bar.style.width = `${pct}%`;
      progress.setAttribute("aria-valuenow", String(pct));
      status.textContent = pct < 100 ? `uploading ${pct}%` : "processing…";
    },
    done(text) {
      bar.style.width = "100%";
      progress.classList.add("done");
      status.className = "status ok";
      status.textContent = text;
      li.classList.add("upload-ok");
    },
    fail(text) {
      progress.classList.add("failed");
      bar.style.width = "100%";
      status.className = "status error";
      status.textContent = text;
      status.setAttribute("role", "alert");
      li.classList.add("upload-error");
    },
  };
}

async function runOne(job) {
  const { file, row } = job;
  try {
    const { data: img } = await uploadFile("/images", file, { field: "files", onProgress: row.setProgress });
    row.done(img.created === false
      ? `already in the library (image ${img.id})`
      : `uploaded as image ${img.id} (${img.width}×${img.height})`);
    uploadedSinceRefresh += 1;
  } catch (err) {
    row.fail(err.message);
  }
}

function pump() {
  while (active < UPLOAD_CONCURRENCY && queue.length) {
    const job = queue.shift();
    active += 1;
    runOne(job).finally(() => {
      active -= 1;
      if (!queue.length && !active && uploadedSinceRefresh) {
        uploadedSinceRefresh = 0;
        loadImages();
      }
      pump();
    });
  }
}

function enqueue(files) {
  for (const file of files) queue.push({ file, row: uploadRow(file) });
  pump();
}

if (dropzone) {
  ["dragenter", "dragover"].forEach((t) => dropzone.addEventListener(t, (e) => {
    e.preventDefault();
    dropzone.classList.add("dragover");
  }));
  ["dragleave", "drop"].forEach((t) => dropzone.addEventListener(t, (e) => {
    e.preventDefault();
    dropzone.classList.remove("dragover");
  }));
  dropzone.addEventListener("drop", (e) => enqueue([...(e.dataTransfer?.files || [])]));
  document.getElementById("choose-files").addEventListener("click", () => fileInput.click());
  fileInput.addEventListener("change", () => {
    enqueue([...fileInput.files]);
    fileInput.value = "";
  });
  // A drop outside the zone must not navigate away from the page (and lose the upload list).
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
}

window.addEventListener("beforeunload", (e) => {
  if (active || queue.length) {
    e.preventDefault();
    e.returnValue = "";
  }
});

loadImages();
