/* The campaign report's and the chip report's charts (Chart.js), from the data the page carries in
   json_script elements (#rates-data, #chip-data). A static file: the Content-Security-Policy allows no
   inline script. */
document.addEventListener("DOMContentLoaded", function () {
  "use strict";
  if (!window.Chart) return;
  var common = {tension: .2, pointRadius: 3, maxBarThickness: 48};
  var options = {maintainAspectRatio: false, scales: {y: {min: 0, max: 100}}};

  function dataset(label, values, color, extra) {
    return Object.assign({label: label, data: values, borderColor: color, backgroundColor: color}, common, extra || {});
  }

  var rates = document.getElementById("rates-data");
  if (rates) {
    var data = JSON.parse(rates.textContent);
    new Chart(document.getElementById("rates-chart"), {
      type: data.type,
      data: {labels: data.labels, datasets: [
        dataset(data.legend.delivered, data.delivered, "#3fa66b"),
        dataset(data.legend.read, data.read, "#1d4ed8")
      ]},
      options: options
    });
  }

  var chips = document.getElementById("chip-data");
  if (chips) {
    var perChip = JSON.parse(chips.textContent);
    var colors = ["#128c4a", "#1d4ed8", "#b54708", "#b42318", "#6d28d9", "#0e7490", "#4d7c0f", "#be185d"];
    var draw = function (id, key) {
      new Chart(document.getElementById(id), {
        type: perChip.type,
        data: {labels: perChip.labels, datasets: perChip.chips.map(function (chip, i) {
          return dataset(chip.name, chip[key], colors[i % colors.length], {spanGaps: true});
        })},
        options: options
      });
    };
    draw("delivered-chart", "delivered");
    draw("read-chart", "read");
  }
});
