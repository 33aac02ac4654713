// The tenant's jobs, refreshed every couple of seconds (status, stage, progress, ETA).
import { api } from "./api.js";
import { badge, bytes, compression, el, eta, mainScore, taskName } from "./format.js";

const POLL_MS = 2000;

function row(job) {
  const score = mainScore(job);
  const m = job.metrics || {};
  return el("tr", { dataset: { jobId: job.id } },
    el("td", {}, el("a", { href: `#/jobs/${job.id}` }, job.id)),
    el("td", {}, badge(job.status)),
    el("td", {}, job.stage || ""),
    el("td", {}, el("progress", { max: "1", value: String(job.progress) }), ` ${Math.round(job.progress * 100)}%`),
    el("td", {}, job.status === "running" ? eta(job.eta_seconds) : ""),
    el("td", { class: "model", title: String(job.request.model) }, String(job.request.model)),
    el("td", {}, taskName(job)),
    el("td", {}, compression(job)),
    el("td", {}, score ? `${score.name} ${score.student.toFixed(4)}` : ""),
    el("td", {}, m.packed_bytes ? `${bytes(m.packed_bytes)} (${m.ratio.toFixed(1)}x)` : ""),
    el("td", {}, new Date(job.created_at).toLocaleString()),
  );
}

export function showJobs(onError) {
  const tbody = document.querySelector("#jobs-table tbody");
  let timer = null, stopped = false;
  async function poll() {
    try {
      const page = await api.jobs({ limit: 100 });
      if (stopped) return;
      tbody.replaceChildren(...page.data.map(row));
      document.getElementById("jobs-empty").hidden = page.data.length > 0;
    } catch (e) {
      if (onError(e)) return;
    }
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  }
  tbody.replaceChildren();
  poll();
  return () => { stopped = true; clearTimeout(timer); };
}
