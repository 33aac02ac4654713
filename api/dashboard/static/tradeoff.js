// Accuracy vs size over the tenant's finished jobs of one task, with the Pareto front marked.
import { allJobs } from "./api.js";
import { bytes, compression, el, mainScore, taskName } from "./format.js";
import { paretoFront } from "./pareto.js";

let chart = null;

function points(jobs) {
  return jobs.filter((j) => mainScore(j)).map((j) => ({
    x: j.metrics.packed_bytes, y: mainScore(j).student, job: j,
  }));
}

function teacherPoints(jobs) {
  const seen = new Map();
  for (const j of jobs) {
    const s = mainScore(j);
    if (s && !seen.has(j.request.model)) seen.set(j.request.model, { x: j.metrics.fp32_bytes, y: s.teacher, job: j });
  }
  return [...seen.values()];
}

function draw(jobs, task) {
  const mine = jobs.filter((j) => taskName(j) === task);
  const pts = points(mine);
  const front = paretoFront(pts);
  const metric = mine.length ? mine[0].metrics.main_metric : "metric";
  if (chart) chart.destroy();
  chart = new Chart(document.getElementById("tradeoff-chart"), {
    type: "scatter",
    data: {
      datasets: [
        { label: "jobs", data: pts, backgroundColor: "#2457c5", pointRadius: 5 },
        { label: "Pareto front", data: front, showLine: true, borderColor: "#d9822b", backgroundColor: "#d9822b",
          pointRadius: 7, pointStyle: "rectRot", borderWidth: 2 },
        { label: "teacher (fp32)", data: teacherPoints(mine), backgroundColor: "#8a5cc2", pointRadius: 6,
          pointStyle: "triangle" },
      ],
    },
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      parsing: false,
      scales: {
        x: {
          type: "logarithmic",
          title: { display: true, text: "checkpoint size (log scale)" },
          // label only 1, 2 and 5 x 10^n: the default labels of a log axis collide
          ticks: { callback: (v) => ([1, 2, 5].includes(Math.round(v / 10 ** Math.floor(Math.log10(v)) * 100) / 100)
            ? bytes(v) : "") },
        },
        y: { title: { display: true, text: `dev ${metric}` } },
      },
      plugins: {
        legend: { position: "bottom" },
        tooltip: { callbacks: { label: (c) => `${c.raw.job.id}: ${c.raw.y.toFixed(4)}, ${bytes(c.raw.x)}` } },
      },
      onClick: (_e, items) => {
        if (items.length) location.hash = `#/jobs/${items[0].element.$context.raw.job.id}`;
      },
    },
  });
  window.xtcCharts = { ...(window.xtcCharts || {}), tradeoff: chart };
  const onFront = new Set(front.map((p) => p.job.id));
  document.querySelector("#tradeoff-table tbody").replaceChildren(...pts.sort((a, b) => a.x - b.x).map((p) =>
    el("tr", { dataset: { jobId: p.job.id } }, el("td", {}, el("a", { href: `#/jobs/${p.job.id}` }, p.job.id)),
      el("td", {}, compression(p.job)), el("td", {}, p.y.toFixed(4)), el("td", {}, bytes(p.x)),
      el("td", {}, `${p.job.metrics.ratio.toFixed(1)}x`), el("td", {}, onFront.has(p.job.id) ? "★" : ""))));
}

export function showTradeoff(onError) {
  const select = document.getElementById("tradeoff-task");
  let stopped = false;
  allJobs("succeeded").then((jobs) => {
    if (stopped) return;
    const counts = new Map();
    for (const j of jobs) counts.set(taskName(j), (counts.get(taskName(j)) || 0) + 1);
    const tasks = [...counts.keys()].sort((a, b) => counts.get(b) - counts.get(a));
    select.replaceChildren(...tasks.map((t) => el("option", { value: t }, `${t} (${counts.get(t)})`)));
    select.onchange = () => draw(jobs, select.value);
    draw(jobs, tasks[0]);
  }).catch(onError);
  return () => { stopped = true; if (chart) { chart.destroy(); chart = null; } };
}
