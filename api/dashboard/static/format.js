// Small formatting helpers shared by the pages.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}

export function eta(seconds) {
  if (seconds == null) return "";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return h ? `${h}h ${m}m` : m ? `${m}m ${r}s` : `${r}s`;
}

export function bytes(n) {
  if (n == null) return "";
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} kB`;
  return `${n} B`;
}

export function compression(job) {
  const c = job.request.compression || {};
  const layers = c.layers == null ? "half" : Array.isArray(c.layers) ? c.layers.join(",") : c.layers;
  const embedding = c.embedding_bits ? ` · embeddings ${c.embedding_bits}-bit` : "";
  const groups = (c.weight_groups ?? 1) > 1 ? ` · ${c.weight_groups} groups` : "";
  return `W${c.weight_bits ?? 1}A${c.activation_bits ?? 32} · layers ${layers}${embedding}${groups}`;
}

export function taskName(job) {
  const t = job.request.task;
  return typeof t === "string" ? t : `dataset ${t.train_dataset}`;
}

export function mainScore(job) {
  const m = job.metrics;
  if (!m || !m.main_metric) return null;
  return { name: m.main_metric, student: m.student[m.main_metric], teacher: m.teacher[m.main_metric] };
}

export function badge(status) {
  return el("span", { class: `badge ${status}`, dataset: { status } }, status);
}

export const TERMINAL = ["succeeded", "failed", "cancelled"];
