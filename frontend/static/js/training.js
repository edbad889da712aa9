// Training page: start a job (admin), follow its progress live by polling (no reload), cancel it,
// and list past jobs with the model version each produced.
import { api, el, fmtDate, fmtDuration, fmtNum, itemsOf, showError, toast, user } from "./api.js";

const ACTIVE = new Set(["queued", "running"]);
const FAST_POLL_MS = 1000;
const SLOW_POLL_MS = 5000;

const card = document.getElementById("current-job");
const tbody = document.querySelector("#jobs-table tbody");
const jobsError = document.getElementById("jobs-error");
const startMsg = document.getElementById("start-message");
let currentId = null;
let timer = null;

/** Progress numbers from the job's progress object, whatever the worker chose to report. */
function progressOf(job) {
  const p = job.progress || {};
  const epoch = p.epoch ?? null;
  const epochs = p.epochs ?? job.epochs ?? null;
  const it = p.iteration ?? null; // counted over the whole run, not per epoch
  const its = p.iterations ?? null;
  let frac = null;
  if (frac === null && it !== null && its) frac = it / its;
  if (frac === null && epoch !== null && epochs) frac = epoch / epochs;
  if (job.status === "succeeded") frac = 1;
  return {
    epoch, epochs, it, its, frac,
    losses: p.losses || {},
    valAuc: p.val_patch_auc ?? null,
    valImageAuc: p.val_image_auc ?? null,
    itPerS: p.it_per_s ?? null,
    eta: p.eta_s ?? null,
    message: p.message ?? null,
  };
}

function modelOf(job) {
  return job.model_version ?? job.produced_version ?? null;
}

function renderCard(job) {
  const pr = progressOf(job);
  const pct = pr.frac === null ? 0 : Math.round(100 * Math.max(0, Math.min(1, pr.frac)));
  const bar = el("span");
  bar.style.width = `${pct}%`;
  const cls = job.status === "succeeded" ? "done" : job.status === "failed" ? "failed" : "";
  const rows = [
    ["Status", el("span", { class: `badge ${job.status}`, id: "job-status", dataset: { status: job.status } }, job.status)],
    ["Method", `${job.method} · ${job.preset}`],
    ["Trains on", job.labels
      ? `${job.labels.diseased_patches} diseased and ${job.labels.healthy_patches} healthy patches on ${job.labels.images} images (+ all unlabeled patches)`
      : "the labels present when it starts"],
    ["Epoch", pr.epoch !== null ? `${pr.epoch} of ${pr.epochs ?? "?"}` : "–"],
    ["Iteration", pr.it !== null ? `${pr.it}${pr.its ? ` of ${pr.its}` : ""}` : "–"],
    ["Speed", pr.itPerS !== null ? `${fmtNum(pr.itPerS, 1)} it/s` : "–"],
    ["Time left", ACTIVE.has(job.status) ? fmtDuration(pr.eta) : "–"],
    ["Validation AUC (patch)", fmtNum(pr.valAuc, 3)],
    ["Validation AUC (image)", fmtNum(pr.valImageAuc, 3)],
    ...Object.entries(pr.losses).map(([k, v]) => [k.includes("acc") ? `Training accuracy (${k})` : `Loss ${k}`, fmtNum(v, 4)]),
    ["Worker", job.worker_host ? `${job.worker_host} (${job.worker_device || "?"})` : "–"],
    ["Started", fmtDate(job.started_at)],
  ];
  const mv = modelOf(job);
  if (mv) rows.push(["Model", el("a", { href: `/models#v${mv}` }, `version ${mv}`)]);
  if (job.error) rows.push(["Error", el("span", { class: "alert error" }, job.error)]);
  if (pr.message) rows.push(["Note", pr.message]);
  const hadFocus = document.activeElement?.id === "cancel-job";
  card.replaceChildren(
    el("h2", {}, `Job ${job.id}`),
    el("div", { class: `progress ${cls}`, role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": String(pct), "aria-label": "Training progress" }, bar),
    el("p", { class: "small muted" }, `${pct}%`),
    el("dl", {}, rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
  );
  card.append(...[
    user.isAdmin && ACTIVE.has(job.status) && !job.cancel_requested
      ? el("button", { type: "button", class: "btn danger", id: "cancel-job", onclick: () => cancel(job.id) }, "Cancel job")
      : null,
    job.cancel_requested && ACTIVE.has(job.status) ? el("p", { class: "muted" }, "Cancelling: the worker stops at its next iteration.") : null,
  ].filter(Boolean));
  if (hadFocus) document.getElementById("cancel-job")?.focus();
}

function renderTable(jobs) {
  tbody.replaceChildren(...jobs.map((j) => {
    const mv = modelOf(j);
    return el("tr", { dataset: { jobId: j.id } },
      el("td", {}, el("a", { href: "#", onclick: (e) => { e.preventDefault(); follow(j.id); } }, `#${j.id}`)),
      el("td", {}, el("span", { class: `badge ${j.status}` }, j.status)),
      el("td", {}, j.method), el("td", {}, j.preset),
      el("td", { class: "nowrap" }, fmtDate(j.created_at)),
      el("td", { class: "nowrap" }, fmtDate(j.finished_at)),
      el("td", {}, j.worker_host ? `${j.worker_host} (${j.worker_device || "?"})` : "–"),
      el("td", {}, mv ? el("a", { href: `/models#v${mv}` }, `v${mv}`) : "–"),
      el("td", { class: "small" }, j.error || ""),
    );
  }));
  if (!jobs.length) tbody.append(el("tr", {}, el("td", { colspan: "9", class: "muted" }, "No training job yet.")));
}

async function refresh() {
  clearTimeout(timer);
  let delay = SLOW_POLL_MS;
  try {
    const jobs = itemsOf(await api("/training-jobs?limit=50"));
    jobsError.replaceChildren();
    renderTable(jobs);
    if (currentId === null) {
      const running = jobs.find((j) => ACTIVE.has(j.status));
      if (running) currentId = running.id;
    }
    if (currentId !== null) {
      const job = await api(`/training-jobs/${currentId}`);
      renderCard(job);
      if (ACTIVE.has(job.status)) delay = FAST_POLL_MS;
    }
  } catch (err) {
    showError(jobsError, `Could not refresh the jobs: ${err.message}`, refresh);
  }
  timer = setTimeout(refresh, document.hidden ? SLOW_POLL_MS * 2 : delay);
}

function follow(id) {
  currentId = id;
  refresh();
}

async function cancel(id) {
  try {
    await api(`/training-jobs/${id}`, { method: "DELETE" });
    toast(`Cancelling job ${id}…`);
  } catch (err) {
    toast(`Cancel failed: ${err.message}`, "error", 6000);
  }
  refresh();
}

const form = document.getElementById("start-form");
if (form) {
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    startMsg.replaceChildren();
    const body = { method: form.method.value, preset: form.preset.value };
    if (form.epochs.value) body.epochs = Number(form.epochs.value);
    if (form.seed.value) body.seed = Number(form.seed.value);
    if (form.queue.checked) body.queue = true;
    const btn = document.getElementById("start-job");
    btn.disabled = true;
    try {
      const job = await api("/training-jobs", { method: "POST", json: body });
      startMsg.replaceChildren(el("div", { class: "alert ok" }, `Job ${job.id} queued.`));
      follow(job.id);
    } catch (err) {
      const running = err.body?.job_id ?? err.body?.detail?.job_id ?? null;
      startMsg.replaceChildren(el("div", { class: "alert error", role: "alert" }, err.message));
      if (running) follow(running);
    } finally {
      btn.disabled = false;
    }
  });
}

document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
refresh();
