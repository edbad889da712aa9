// "Label these next": the most uncertain unlabeled patches of the active model, each a link into the
// labeling view with that patch selected.
import { api, el, fmtNum, itemsOf, showError } from "./api.js";

const grid = document.getElementById("suggest-grid");
const errorBox = document.getElementById("suggest-error");
const info = document.getElementById("suggest-info");
const nSel = document.getElementById("suggest-n");

async function load() {
  errorBox.replaceChildren();
  let data;
  try {
    data = await api(`/suggestions?n=${nSel.value}`);
  } catch (err) {
    grid.replaceChildren();
    if (err.status === 409) {
      errorBox.replaceChildren(el("div", { class: "alert info" }, err.message, " ", el("a", { href: "/training" }, "Go to Training"), "."));
    } else {
      showError(errorBox, `Could not load suggestions: ${err.message}`, load);
    }
    return;
  }
  const items = itemsOf(data);
  info.textContent = `from model version ${data.model_version}, ${data.scanned_images} images ranked`
    + (data.pending_images ? `; ${data.pending_images} not scored yet: refresh to include them` : "");
  grid.replaceChildren(...items.map((s) => el("a", {
    class: "suggest", href: `/images/${s.image_id}/label?row=${s.row}&col=${s.col}`,
    dataset: { imageId: s.image_id, row: s.row, col: s.col },
  },
  el("img", { src: `/api/v1/images/${s.image_id}/patches/${s.row}/${s.col}`, alt: `Patch row ${s.row + 1}, column ${s.col + 1} of ${s.original_filename || `image ${s.image_id}`}`, loading: "lazy" }),
  el("div", { class: "meta" },
    el("div", { class: "fname" }, s.original_filename || `image ${s.image_id}`),
    el("div", {}, `row ${s.row + 1}, column ${s.col + 1}`),
    el("div", { class: "muted" }, `p(diseased) ${fmtNum(s.probability, 2)} · entropy ${fmtNum(s.entropy, 2)} bit`)))));
  if (!items.length) grid.append(el("p", { class: "muted" }, "Nothing to suggest: every patch is labeled."));
}

document.getElementById("suggest-form").addEventListener("submit", (e) => { e.preventDefault(); load(); });
load();
