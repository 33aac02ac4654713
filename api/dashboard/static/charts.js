// Chart.js (vendored UMD build: the global `Chart`) with the few settings the pages share.
const COLORS = { finetune_teacher: "#8a5cc2", layer_reduction: "#2457c5", quantization: "#d9822b" };

export function stageColor(stage) {
  return COLORS[stage] || "#555";
}

export function lineChart(canvas, xTitle, yTitle) {
  return new Chart(canvas, {
    type: "line",
    data: { datasets: [] },
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      parsing: false,
      scales: {
        x: { type: "linear", title: { display: true, text: xTitle } },
        y: { title: { display: true, text: yTitle } },
      },
      plugins: { legend: { position: "bottom" } },
    },
  });
}
