/* Draws every <canvas data-source="ID"> of the operators' console with Chart.js.
   The element #ID holds {labels, datasets: [{label, data, axis, color}], axes: {y, y1}}. */
(function () {
  "use strict";

  // No dots on a line, but a value with no neighbour (the first hours, or after a gap) is drawn as one.
  function isolatedPoint(context) {
    var data = context.dataset.data, i = context.dataIndex;
    return data[i] != null && data[i - 1] == null && data[i + 1] == null ? 4 : 0;
  }

  function draw(canvas) {
    var config = JSON.parse(document.getElementById(canvas.dataset.source).textContent);
    var scales = {x: {ticks: {maxTicksLimit: 14, autoSkip: true}}};
    Object.keys(config.axes || {}).forEach(function (axis, index) {
      scales[axis] = {
        type: "linear", position: index === 0 ? "left" : "right", beginAtZero: true,
        title: {display: true, text: config.axes[axis]}, grid: {drawOnChartArea: index === 0}
      };
    });
    canvas.chart = new Chart(canvas, {
      type: "line",
      data: {
        labels: config.labels,
        datasets: config.datasets.map(function (set) {
          return {
            label: set.label, data: set.data, yAxisID: set.axis || "y", borderColor: set.color,
            backgroundColor: set.color, borderWidth: 2, pointRadius: isolatedPoint, tension: 0.2, spanGaps: false
          };
        })
      },
      options: {
        animation: false, responsive: true, maintainAspectRatio: false,
        interaction: {mode: "index", intersect: false}, scales: scales,
        plugins: {legend: {position: "bottom"}}
      }
    });
  }

  function drawAll() {
    document.querySelectorAll("canvas[data-source]").forEach(function (canvas) {
      if (!canvas.chart) { draw(canvas); }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", drawAll);
  } else {
    drawAll();
  }
})();
