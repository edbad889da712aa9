// Images page: the library as thumbnails with labeling status, filters, and multi-file upload with a
// progress bar and an error per file (one bad file never stops the others).
import { api, el, fmtBytes, fmtNum, itemsOf, showError, uploadFile } from "./api.js";

const PAGE_SIZE = 48;
const UPLOAD_CONCURRENCY = 2;

const grid = document.getElementById("image-grid");
const errorBox = document.getElementById("images-error");
const countInfo = document.getElementById("image-count");
const pageInfo = document.getElementById("page-info");
const prevBtn = document.getElementById("prev-page");
const nextBtn = document.getElementById("next-page");
const statusSel = document.getElementById("filter-status");
const qInput = document.getElementById("filter-q");

const params = new URLSearchParams(location.search);
let page = Math.max(0, Number(params.get("page") || 0));
statusSel.value = params.get("status") || "";
qInput.value = params.get("q") || "";

export function labeledCount(img) {
  return img.labeled_patches ?? img.labeled_count ?? img.n_labeled ?? 0;
}

function statusBadges(img) {
  const n = labeledCount(img);
  const out = [];
  out.push(n ? el("span", { class: "badge ok" }, `${n} of 64 labeled`) : el("span", { class: "badge" }, "unlabeled"));
  const score = img.score ?? img.prediction?.score ?? img.latest_prediction?.score;
  if (score !== undefined && score !== null) {
    const dr = img.diseased ?? img.prediction?.diseased ?? img.latest_prediction?.diseased;
    out.push(el("span", { class: `badge ${dr ? "dr" : "nodr"}`, title: "Latest predicted score" }, `score ${fmtNum(score, 2)}`));
  }
  return out;
}

function thumb(img) {
  const name = img.original_filename || img.filename || `image ${img.id}`;
  return el("a", { class: "thumb", href: `/images/${img.id}/label`, dataset: { imageId: img.id } },
    el("img", { src: `/api/v1/images/${img.id}/file?thumb=1`, alt: `Fundus photograph ${name}`, loading: "lazy" }),
    el("div", { class: "meta" },
      el("span", { class: "fname", title: name }, name),
      el("span", { class: "row" }, statusBadges(img)),
      el("span", { class: "row" },
        el("a", { href: `/predict?image_id=${img.id}`, class: "small" }, "Prediction")),
    ),
  );
}

function syncUrl() {
  const p = new URLSearchParams();
  if (statusSel.value) p.set("status", statusSel.value);
  if (qInput.value.trim()) p.set("q", qInput.value.trim());
  if (page) p.set("page", String(page));
  const qs = p.toString();
  history.replaceState(null, "", qs ? `?${qs}` : location.pathname);
}

export async function loadImages() {
  errorBox.replaceChildren();
  const p = new URLSearchParams({ limit: String(PAGE_SIZE), offset: String(page * PAGE_SIZE) });
  if (statusSel.value) p.set("status", statusSel.value);
  if (qInput.value.trim()) p.set("q", qInput.value.trim());
  syncUrl();
  let data;
  try {
    data = await api(`/images?${p}`);
  } catch (err) {
    showError(errorBox, `Could not load the images: ${err.message}`, loadImages);
    return;
  }
  const items = itemsOf(data);
  const total = data && Number.isFinite(data.total) ? data.total : null;
  grid.replaceChildren(...items.map(thumb));
  if (!items.length) {
    grid.append(el("p", { class: "muted" }, page ? "No more images." : "No images match. Upload some above."));
  }
  countInfo.textContent = total === null ? `${items.length} shown` : `${total} image${total === 1 ? "" : "s"}`;
  const pages = total === null ? null : Math.max(1, Math.ceil(total / PAGE_SIZE));
  pageInfo.textContent = pages ? `Page ${page + 1} of ${pages}` : `Page ${page + 1}`;
  prevBtn.disabled = page === 0;
  nextBtn.disabled = pages ? page + 1 >= pages : items.length < PAGE_SIZE;
}

prevBtn.addEventListener("click", () => { page = Math.max(0, page - 1); loadImages(); });
nextBtn.addEventListener("click", () => { page += 1; loadImages(); });
statusSel.addEventListener("change", () => { page = 0; loadImages(); });
let qTimer = null;
qInput.addEventListener("input", () => {
  clearTimeout(qTimer);
  qTimer = setTimeout(() => { page = 0; loadImages(); }, 250);
});
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
    const { status, data } = await uploadFile("/images", file, { field: "files", onProgress: row.setProgress });
    const img = Array.isArray(data) ? data[0] : itemsOf(data)[0] || data;
    const existed = status === 200 || (img && img.existing === true) || (img && img.created === false);
    row.done(existed ? "already in the library" : `uploaded (${img?.width ?? "?"}×${img?.height ?? "?"})`);
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
