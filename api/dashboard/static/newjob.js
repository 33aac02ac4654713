// The new-job form: model, a GLUE task or uploaded files with a column mapping, bits, layers, budget.
import { api } from "./api.js";

function layersValue(text) {
  const t = text.trim();
  if (!t) return null;
  if (t.includes(",")) return t.split(",").filter((s) => s.trim()).map((s) => Number(s));
  return Number(t);
}

async function upload(file, f) {
  const form = new FormData();
  form.append("file", file);
  form.append("text_column", f.text_column.value.trim());
  form.append("label_column", f.label_column.value.trim());
  if (f.text_pair_column.value.trim()) form.append("text_pair_column", f.text_pair_column.value.trim());
  form.append("regression", f.regression.checked ? "true" : "false");
  return (await api.uploadDataset(form)).id;
}

async function buildBody(f) {
  let overrides = {};
  if (f.overrides.value.trim()) {
    try {
      overrides = JSON.parse(f.overrides.value);
    } catch (_) {
      throw new Error("Overrides must be a JSON object, e.g. {\"lr\": 3e-5}");
    }
  }
  let task = f.task.value;
  if (f.source.value === "upload") {
    const train = f.train_file.files[0];
    if (!train) throw new Error("Choose a training file");
    if (!f.text_column.value.trim() || !f.label_column.value.trim()) {
      throw new Error("Give the text and label columns of your file");
    }
    const trainId = await upload(train, f);
    const devFile = f.dev_file.files[0];
    task = { train_dataset: trainId, dev_dataset: devFile ? await upload(devFile, f) : trainId };
  }
  return {
    model: f.model.value.trim(),
    task,
    compression: {
      weight_bits: Number(f.weight_bits.value),
      activation_bits: f.activation_bits.value === "none" ? null : 8,
      layers: layersValue(f.layers.value),
      embedding_bits: f.embedding_bits.value ? Number(f.embedding_bits.value) : null,
    },
    training: { budget: f.budget.value, overrides },
  };
}

export function showNewJob(onError) {
  const form = document.getElementById("new-job-form");
  const error = document.getElementById("new-job-error");
  const uploadFields = document.getElementById("upload-fields");
  const sync = () => { uploadFields.hidden = form.source.value !== "upload"; form.task.disabled = !uploadFields.hidden; };
  form.querySelectorAll("input[name=source]").forEach((r) => { r.onchange = sync; });
  sync();
  error.textContent = "";
  form.onsubmit = async (event) => {
    event.preventDefault();
    error.textContent = "";
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const job = await api.createJob(await buildBody(form));
      location.hash = `#/jobs/${job.id}`;
    } catch (e) {
      if (!onError(e)) error.textContent = e.code ? `${e.message} (${e.code})` : e.message;
    } finally {
      button.disabled = false;
    }
  };
  return () => { form.onsubmit = null; };
}
