// One job: live summary, loss and dev-metric curves per stage (from its events), teacher vs
// student, size, artifacts (authorized downloads), events, cancel.
import { api } from "./api.js";
import { lineChart, stageColor } from "./charts.js";
import { TERMINAL, badge, bytes, compression, el, eta, taskName } from "./format.js";

const POLL_MS = 1000;
const TRAINING_STAGES = ["finetune_teacher", "layer_reduction", "quantization"];

function numericKeys(metrics) {
  return Object.entries(metrics || {}).filter(([, v]) => typeof v === "number").map(([k]) => k);
}

class Curves {
  constructor() {
    this.loss = lineChart(document.getElementById("loss-chart"), "step", "loss");
    this.metric = lineChart(document.getElementById("metric-chart"), "step", "dev metric");
    this.metricName = null;
    window.xtcCharts = { ...(window.xtcCharts || {}), loss: this.loss, metric: this.metric };
  }

  series(chart, stage) {
    let ds = chart.data.datasets.find((d) => d.label === stage);
    if (!ds) {
      const color = stageColor(stage);
      ds = { label: stage, data: [], borderColor: color, backgroundColor: color, pointRadius: 2, tension: 0.1 };
      chart.data.datasets.push(ds);
    }
    return ds;
  }

  add(events, job) {
    for (const e of events) {
      if (e.kind !== "progress" || !TRAINING_STAGES.includes(e.stage) || !e.step) continue;
      if (e.loss != null) this.series(this.loss, e.stage).data.push({ x: e.step, y: e.loss });
      const keys = numericKeys(e.metrics);
      if (!keys.length) continue;
      const name = (job.metrics && job.metrics.main_metric) || this.metricName || keys[0];
      if (!(name in e.metrics)) continue;
      this.metricName = name;
      this.metric.options.scales.y.title.text = `dev ${name}`;
      const ds = this.series(this.metric, e.stage);
      const last = ds.data[ds.data.length - 1];
      if (!last || last.x !== e.step) ds.data.push({ x: e.step, y: e.metrics[name] });
    }
    this.loss.update("none");
    this.metric.update("none");
  }

  destroy() {
    this.loss.destroy();
    this.metric.destroy();
  }
}

function fillTable(id, rows) {
  document.querySelector(`#${id} tbody`).replaceChildren(
    ...rows.map((cells) => el("tr", {}, ...cells.map((c) => el("td", {}, c)))));
}

function renderSummary(job) {
  document.getElementById("job-id").textContent = job.id;
  document.getElementById("job-status").replaceWith(
    Object.assign(badge(job.status), { id: "job-status" }));
  document.getElementById("job-stage").textContent = job.stage || "";
  document.getElementById("job-progress").value = job.progress;
  document.getElementById("job-progress-text").textContent = `${(job.progress * 100).toFixed(0)}%`;
  document.getElementById("job-eta").textContent = job.status === "running" ? eta(job.eta_seconds) || "…" : "";
  document.getElementById("job-cancel").hidden = TERMINAL.includes(job.status) || job.cancel_requested;
  document.getElementById("job-error").textContent = job.error ? `${job.error.code}: ${job.error.message}` : "";
  const t = job.request.training || {};
  document.getElementById("job-request").textContent =
    `${job.request.model} · ${taskName(job)} · ${compression(job)} · budget ${t.budget}`;
  const m = job.metrics;
  if (m && m.teacher) {
    const names = Object.keys(m.student);
    fillTable("job-metrics", [["", "teacher (fp32)", "student"],
      ...names.map((k) => [k + (k === m.main_metric ? " (main)" : ""), m.teacher[k]?.toFixed(4) ?? "",
                           m.student[k].toFixed(4)]),
      ["delta", "", `${m.delta >= 0 ? "+" : ""}${m.delta.toFixed(4)}`]]);
    fillTable("job-size", [["fp32 teacher", bytes(m.fp32_bytes)], ["packed student", bytes(m.packed_bytes)],
      ["ratio", `${m.ratio.toFixed(1)}x smaller`], ["train / dev examples",
        `${m.train_examples} / ${Object.values(m.dev_examples || {}).join(", ")}`],
      ["time", `${Math.round(m.seconds)} s on ${m.device}`]]);
  } else {
    const latest = job.latest_metrics || {};
    fillTable("job-metrics", Object.entries(latest).map(([k, v]) => [k, typeof v === "number" ? v.toFixed(4) : String(v)]));
    fillTable("job-size", [["", "available when the job succeeds"]]);
  }
}

function eventRow(e) {
  const metrics = Object.entries(e.kind === "progress" ? e.metrics || {} : {}).filter(([, v]) => typeof v === "number")
    .map(([k, v]) => `${k}=${v.toFixed(4)}`).join(" ");
  return el("tr", {}, el("td", {}, String(e.id)), el("td", {}, new Date(e.created_at).toLocaleTimeString()),
    el("td", {}, e.kind), el("td", {}, e.status || e.stage || ""), el("td", {}, e.step != null ? `${e.step}/${e.total}` : ""),
    el("td", {}, e.loss != null ? e.loss.toFixed(4) : ""), el("td", {}, metrics), el("td", { class: "message" }, e.message || ""));
}

async function renderArtifacts(job, onError) {
  const { data } = await api.artifacts(job.id);
  fillTable("job-artifacts", data.map((a) => [a.name, a.size.toLocaleString(), a.sha256.slice(0, 16) + "…",
    el("button", { type: "button", dataset: { artifact: a.name }, onclick: () => api.download(a.url, a.name).catch(onError) },
      "Download")]));
}

export function showJob(id, onError) {
  const curves = new Curves();
  const eventsBody = document.querySelector("#job-events tbody");
  eventsBody.replaceChildren();
  fillTable("job-artifacts", []);
  fillTable("job-metrics", []);
  fillTable("job-size", []);
  let after = null, timer = null, stopped = false, artifactsShown = false;
  const cancel = document.getElementById("job-cancel");
  cancel.onclick = async () => {
    cancel.disabled = true;
    try { renderSummary(await api.cancel(id)); } catch (e) { onError(e); } finally { cancel.disabled = false; }
  };

  async function poll() {
    let job;
    try {
      job = await api.job(id);
      let page;
      do {
        page = await api.events(id, after);
        after = page.next_after;
        if (stopped) return;
        curves.add(page.data, job);
        for (const e of page.data) eventsBody.prepend(eventRow(e));
      } while (page.data.length === 1000);
      renderSummary(job);
      if (job.status === "succeeded" && !artifactsShown) {
        artifactsShown = true;
        await renderArtifacts(job, onError);
      }
    } catch (e) {
      if (onError(e)) return;
    }
    if (!stopped && !(job && TERMINAL.includes(job.status))) timer = setTimeout(poll, POLL_MS);
  }
  poll();
  return () => { stopped = true; clearTimeout(timer); curves.destroy(); };
}
