// unnoise studio page: runs, the forms the server describes per run kind, a mask painter, the queue, live
// progress over server-sent events, results per viewer, a history that restores settings, PNG drop.
"use strict";

const state = { run: null, forms: [], form: null, widgets: {}, current: null, events: null, shape: null };
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== null && value !== undefined && value !== false) node.setAttribute(key, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

const fileUrl = (job, name) => `/api/jobs/${job}/files/${encodeURIComponent(name)}`;

// ---- runs and forms -------------------------------------------------------------------------------------
async function loadRuns() {
  const { runs } = await api("/api/runs");
  const select = $("run-select");
  select.replaceChildren(...runs.map((r) => el("option", { value: r.name, disabled: !r.kind },
    `${r.name} (${r.kind || "unusable: " + r.error})`)));
  if (!runs.length) select.append(el("option", { value: "" }, "no runs under --runs"));
  const first = runs.find((r) => r.kind);
  if (first) await selectRun(first.name);
}

async function selectRun(name, formName) {
  const data = await api(`/api/forms?run=${encodeURIComponent(name)}`);
  state.run = name; state.forms = data.forms; state.shape = data.shape;
  $("run-select").value = name;
  $("run-kind").textContent = `${data.kind} · ${data.modality} ${data.shape.join("×")}`;
  $("form-tabs").replaceChildren(...data.forms.map((f) => el("button", {
    type: "button", role: "tab", "data-form": f.name, onclick: () => selectForm(f.name) }, f.title)));
  selectForm(formName || data.forms[0].name);
}

function selectForm(name) {
  state.form = state.forms.find((f) => f.name === name) || state.forms[0];
  for (const tab of $("form-tabs").children) tab.setAttribute("aria-selected", tab.dataset.form === state.form.name);
  state.widgets = {};
  $("fields").replaceChildren(...state.form.fields.map(fieldWidget));
  updateVisibility();
}

function fieldWidget(field) {
  const id = `field-${field.name}`;
  let input;
  if (field.type === "choice") {
    input = el("select", { id, name: field.name });
    if (field.optional) input.append(el("option", { value: "" }, "(run default)"));
    for (const choice of field.choices) input.append(el("option", { value: choice }, choice));
    input.value = field.default ?? "";
  } else if (field.type === "bool") {
    input = el("input", { id, type: "checkbox" });
    input.checked = !!field.default;
  } else if (field.type === "text") {
    input = el("textarea", { id, rows: 2 });
    input.value = field.default ?? "";
  } else if (field.type === "int" || field.type === "float") {
    input = el("input", { id, type: "number", step: field.type === "int" ? 1 : "any", min: field.low, max: field.high,
      placeholder: field.optional ? "run default" : "" });
    input.value = field.default ?? "";
  } else if (field.type === "image") {
    return imageWidget(field);
  } else if (field.type === "mask") {
    return maskWidget(field);
  }
  input.addEventListener("change", updateVisibility);
  state.widgets[field.name] = { field, input, get: () => readValue(field, input),
    set: (v) => { if (field.type === "bool") input.checked = !!v; else input.value = v ?? ""; } };
  return el("div", { class: "field", "data-field": field.name }, el("label", { for: id }, field.label), input,
    field.help ? el("div", { class: "help" }, field.help) : null);
}

function readValue(field, input) {
  if (field.type === "bool") return input.checked;
  if (input.value === "") return null;
  if (field.type === "int") return Number.parseInt(input.value, 10);
  if (field.type === "float") return Number.parseFloat(input.value);
  return input.value;
}

function currentValues() {
  const values = {};
  for (const [name, widget] of Object.entries(state.widgets)) values[name] = widget.get();
  return values;
}

function updateVisibility() {
  const values = currentValues();
  for (const field of state.form.fields) {
    const box = $("fields").querySelector(`[data-field="${field.name}"]`);
    const shown = !field.show_if || Object.entries(field.show_if).every(([k, allowed]) => allowed.includes(values[k]));
    if (box) box.hidden = !shown;
    if (state.widgets[field.name]) state.widgets[field.name].shown = shown;
    if (field.type === "mask" && painter.mask) painter.mask.hidden = !shown;
  }
  resizePainter();
}

// ---- image upload and mask painter ----------------------------------------------------------------------
const painter = { source: null, image: null, mask: null, data: null, undo: [], eraser: false, brush: 1, w: 0, h: 0 };

function inputSize() {
  const [, h, w] = state.shape;
  const values = currentValues();
  const scale = values.task === "sr" ? Number(values.scale || 1) : 1;
  return [Math.max(1, Math.round(h / scale)), Math.max(1, Math.round(w / scale))];
}

function imageWidget(field) {
  const file = el("input", { id: "field-image", type: "file", accept: "image/png,image/jpeg" });
  painter.image = el("canvas", { id: "image-canvas", class: "image" });
  painter.mask = el("canvas", { id: "mask-canvas", class: "mask" });
  file.addEventListener("change", () => file.files[0] && loadImageFile(file.files[0]));
  state.widgets[field.name] = { field, get: () => (painter.source ? painter.image.toDataURL("image/png") : null),
    set: () => {} };
  bindPainting(painter.mask);
  return el("div", { class: "field wide", "data-field": field.name }, el("label", { for: "field-image" }, field.label),
    file, el("div", { class: "painter" }, painter.image, painter.mask));
}

function maskWidget(field) {
  const brush = el("input", { id: "brush-size", type: "range", min: 1, max: 16, value: 1 });
  brush.addEventListener("input", () => { painter.brush = Number(brush.value); });
  const eraser = el("button", { type: "button", id: "eraser", "aria-pressed": "false", onclick: () => {
    painter.eraser = !painter.eraser; eraser.setAttribute("aria-pressed", painter.eraser); } }, "Eraser");
  state.widgets[field.name] = { field, get: maskDataUrl, set: () => {} };
  return el("div", { class: "field wide", "data-field": field.name }, el("label", {}, field.label),
    el("div", { class: "tools" }, el("span", {}, "Brush"), brush, eraser,
      el("button", { type: "button", id: "undo", onclick: undoStroke }, "Undo"),
      el("button", { type: "button", id: "clear", onclick: clearMask }, "Clear"),
      el("span", { id: "mask-count", class: "muted" }, "0 pixels to fill")),
    el("div", { class: "help" }, "Paint on the image: painted pixels are filled in."));
}

function loadImageFile(file) {
  const reader = new FileReader();
  reader.onload = () => loadImageUrl(reader.result);
  reader.readAsDataURL(file);
}

function loadImageUrl(url, then) {
  const image = new Image();
  image.onload = () => { painter.source = image; resizePainter(true); if (then) then(); };
  image.src = url;
}

function loadMaskUrl(url) {  // a stored mask picture: light pixels are painted (filled in), dark ones kept
  const image = new Image();
  image.onload = () => {
    const canvas = el("canvas", { width: painter.w, height: painter.h });
    const context = canvas.getContext("2d");
    context.drawImage(image, 0, 0, painter.w, painter.h);
    const pixels = context.getImageData(0, 0, painter.w, painter.h).data;
    painter.undo.push(painter.data.slice());
    painter.data = painter.data.map((_, i) => (pixels[4 * i] >= 128 ? 1 : 0));
    drawMask();
  };
  image.src = url;
}

function resizePainter(force) {
  if (!painter.image || !state.shape) return;
  const [h, w] = inputSize();
  if (!force && painter.w === w && painter.h === h) return;
  painter.w = w; painter.h = h;
  for (const canvas of [painter.image, painter.mask]) { canvas.width = w; canvas.height = h; }
  painter.data = new Uint8Array(w * h); painter.undo = [];
  painter.brush = Math.min(Number($("brush-size")?.value || 1), Math.max(w, h));
  const context = painter.image.getContext("2d");
  context.imageSmoothingEnabled = true;
  if (painter.source) context.drawImage(painter.source, 0, 0, w, h);
  drawMask();
}

function bindPainting(canvas) {
  let painting = false;
  const at = (event) => {
    const rect = canvas.getBoundingClientRect();
    return [(event.clientX - rect.left) / rect.width * painter.w, (event.clientY - rect.top) / rect.height * painter.h];
  };
  canvas.addEventListener("pointerdown", (event) => {
    if (!painter.data) return;
    painting = true; canvas.setPointerCapture(event.pointerId);
    painter.undo.push(painter.data.slice());
    paint(...at(event));
  });
  canvas.addEventListener("pointermove", (event) => painting && paint(...at(event)));
  const stop = () => { painting = false; };
  canvas.addEventListener("pointerup", stop);
  canvas.addEventListener("pointercancel", stop);
}

function paint(x, y) {
  const radius = painter.brush / 2, value = painter.eraser ? 0 : 1;
  for (let row = Math.floor(y - radius); row <= Math.ceil(y + radius); row++) {
    for (let col = Math.floor(x - radius); col <= Math.ceil(x + radius); col++) {
      if (row < 0 || col < 0 || row >= painter.h || col >= painter.w) continue;
      const dx = col + 0.5 - x, dy = row + 0.5 - y;
      if (dx * dx + dy * dy <= Math.max(radius * radius, 0.5)) painter.data[row * painter.w + col] = value;
    }
  }
  drawMask();
}

function drawMask() {
  if (!painter.mask || !painter.data) return;
  const context = painter.mask.getContext("2d");
  const pixels = context.createImageData(painter.w, painter.h);
  let count = 0;
  painter.data.forEach((v, i) => { if (v) { count++; pixels.data.set([255, 40, 40, 255], i * 4); } });
  context.putImageData(pixels, 0, 0);
  const label = $("mask-count");
  if (label) label.textContent = `${count} pixels to fill`;
  painter.mask.dataset.painted = count;
}

function undoStroke() { if (painter.undo.length) { painter.data = painter.undo.pop(); drawMask(); } }
function clearMask() {
  if (painter.data) { painter.undo.push(painter.data.slice()); painter.data.fill(0); drawMask(); }
}

function maskDataUrl() {
  if (!painter.data) return null;
  const canvas = el("canvas", { width: painter.w, height: painter.h });
  const context = canvas.getContext("2d");
  const pixels = context.createImageData(painter.w, painter.h);
  painter.data.forEach((v, i) => pixels.data.set(v ? [255, 255, 255, 255] : [0, 0, 0, 255], i * 4));
  context.putImageData(pixels, 0, 0);
  return canvas.toDataURL("image/png");
}

// ---- jobs, progress and results -------------------------------------------------------------------------
async function submitJob(event) {
  event.preventDefault();
  $("form-error").textContent = "";
  $("results").replaceChildren();
  $("progress-text").textContent = "submitting";
  const params = {};
  for (const [name, widget] of Object.entries(state.widgets)) {
    if (widget.shown === false) continue;
    const value = widget.get();
    if (value !== null) params[name] = value;
  }
  try {
    const { job } = await api("/api/jobs", { run: state.run, form: state.form.name, params });
    follow(job.id);
    refreshQueue();
  } catch (error) {
    $("form-error").textContent = error.message;
  }
}

function follow(jobId) {
  if (state.events) state.events.close();
  state.current = jobId;
  $("progress-box").hidden = false;
  $("preview").removeAttribute("src");
  $("progress-text").textContent = "submitted";
  $("results").replaceChildren();
  const source = new EventSource(`/api/jobs/${jobId}/events`);
  state.events = source;
  source.onmessage = (message) => {
    const job = JSON.parse(message.data);
    showProgress(job);
    if (["done", "failed", "cancelled", "interrupted"].includes(job.status)) {
      source.close(); state.events = null;
      showResults(job); refreshQueue(); refreshHistory();
    }
  };
}

function showProgress(job) {
  const text = job.status === "queued" ? `queued, position ${job.position + 1}`
    : job.status === "running" ? `step ${job.step}/${job.total}` : job.status + (job.error ? `: ${job.error}` : "");
  $("progress-text").textContent = text;
  $("progress").max = Math.max(1, job.total); $("progress").value = Math.min(job.step, job.total);
  if (job.has_preview && job.status === "running") {
    $("preview").src = `/api/jobs/${job.id}/preview.png?v=${job.version}`;
  }
}

const VIEWERS = {  // one per form viewer a kind names (kinds.VIEWERS)
  image: (job, output) => {
    const picture = el("img", { src: fileUrl(job.id, output.file), class: "pixelated", alt: `seed ${output.seed}` });
    if (!output.download) return picture;  // e.g. a molecule's SDF beside its drawing
    return el("div", {}, picture, el("a", { href: fileUrl(job.id, output.download), download: output.download,
      text: output.download }));
  },
  audio: (job, output) => el("div", {}, el("audio", { controls: true, src: fileUrl(job.id, output.file) }),
    output.spectrogram ? el("img", { src: fileUrl(job.id, output.spectrogram), alt: "spectrogram" }) : null),
  text: (job, output) => el("pre", { text: output.text ?? "" }),
};

function viewerOf(job) {
  const form = state.forms.find((f) => f.name === job.form);
  return VIEWERS[(form && form.viewer) || "image"];
}

function showResults(job) {
  const view = viewerOf(job);
  $("results").replaceChildren(...job.outputs.map((output) => el("div", { class: "output", "data-seed": output.seed },
    view(job, output), el("div", {}, `seed ${output.seed} `,
      el("button", { type: "button", onclick: () => reuse(job, output.seed) }, "reuse")))));
  if (job.status !== "done") $("results").prepend(el("div", { class: `status-${job.status}` }, job.status +
    (job.error ? `: ${job.error}` : "")));
}

async function cancelJob(jobId) { await api(`/api/jobs/${jobId}/cancel`, {}); refreshQueue(); }
async function moveJob(jobId, position) {
  try { await api(`/api/jobs/${jobId}/move`, { position: Math.max(0, position) }); } catch (e) { /* it started */ }
  refreshQueue();
}

async function refreshQueue() {
  const { jobs } = await api("/api/jobs");
  const live = jobs.filter((j) => j.status === "running" || j.status === "queued")
    .sort((a, b) => (a.position ?? -1) - (b.position ?? -1));
  const button = (title, text, onclick) => el("button", { type: "button", title, onclick }, text);
  $("queue").replaceChildren(...live.map((job) => {
    const where = job.status === "running" ? `running ${job.step}/${job.total}` : `#${job.position + 1}`;
    const waiting = job.status === "queued";
    return el("li", { "data-job": job.id }, `${job.run} · ${job.form} · ${where}`,
      waiting ? button("earlier", "↑", () => moveJob(job.id, job.position - 1)) : null,
      waiting ? button("later", "↓", () => moveJob(job.id, job.position + 1)) : null,
      button("cancel", "✕", () => cancelJob(job.id)));
  }));
}

async function refreshHistory() {
  const { jobs } = await api("/api/history?limit=30");
  $("history").replaceChildren(...jobs.map((job) => {
    const first = job.outputs.find((o) => o.type === "image") || job.outputs[0];
    const thumb = first && first.type === "image"
      ? el("img", { src: fileUrl(job.id, first.file), class: "pixelated", alt: "" })
      : el("div", { class: "muted" }, first ? first.type : "no output");
    return el("div", { class: "history-item", "data-job": job.id }, thumb,
      el("div", { class: `status-${job.status}` }, `${job.run} · ${job.form} · ${job.status}`),
      el("button", { type: "button", onclick: () => reuse(job) }, "reuse these settings"),
      el("button", { type: "button", onclick: () => { follow(job.id); } }, "show"));
  }));
}

async function reuse(job, seed) {
  const settings = { ...job.settings, params: { ...job.settings.params } };
  if (seed !== undefined) Object.assign(settings.params, { seed, n: 1 });
  await applySettings(settings);
  const uploads = job.settings.uploads || [];
  if (uploads.includes("image")) {
    const mask = uploads.includes("mask") ? () => loadMaskUrl(fileUrl(job.id, "upload-mask.png")) : null;
    loadImageUrl(fileUrl(job.id, "upload-image.png"), mask);
  }
}

async function applySettings(settings) {
  if (settings.run !== state.run || settings.form !== state.form?.name) await selectRun(settings.run, settings.form);
  for (const [name, value] of Object.entries(settings.params || {})) {
    const widget = state.widgets[name];
    if (widget && !["image", "mask"].includes(widget.field.type)) widget.set(value);
  }
  updateVisibility();
}

// ---- a dropped PNG restores its settings ----------------------------------------------------------------
function bindDrop() {
  const overlay = $("drop-overlay");
  document.addEventListener("dragover", (event) => { event.preventDefault(); overlay.hidden = false; });
  document.addEventListener("dragleave", () => { overlay.hidden = true; });
  document.addEventListener("drop", (event) => {
    event.preventDefault(); overlay.hidden = true;
    const file = event.dataTransfer.files[0];
    if (file) restoreFromPng(file);
  });
}

function restoreFromPng(file) {
  const reader = new FileReader();
  reader.onload = async () => {
    try {
      const { settings } = await api("/api/png-settings", { png: reader.result });
      await applySettings(settings);
      $("form-error").textContent = "";
    } catch (error) { $("form-error").textContent = error.message; }
  };
  reader.readAsDataURL(file);
}

window.addEventListener("DOMContentLoaded", async () => {
  $("job-form").addEventListener("submit", submitJob);
  $("run-select").addEventListener("change", (event) => selectRun(event.target.value));
  $("cancel-current").addEventListener("click", () => state.current && cancelJob(state.current));
  bindDrop();
  try { await loadRuns(); } catch (error) { $("form-error").textContent = error.message; }
  refreshQueue(); refreshHistory();
  setInterval(refreshQueue, 2000);
  window.studio = { state, painter, applySettings, restoreFromPng };  // for tests and the console
});
