// Draws a release page's charts with uPlot from the page's series JSON:
// traffic (the weight set against the split observed) and one chart per
// gate (its query over time, the threshold as a line, a dot per recorded
// check). Redrawn when the Git head moves and every few polls.
(function () {
  "use strict";
  var root = document.getElementById("charts");
  if (!root || !window.uPlot) return;
  var css = getComputedStyle(document.documentElement);
  function v(name) { return css.getPropertyValue(name).trim(); }
  var interval = (Number(document.body.dataset.poll) || 3000) * 2;
  var plots = {};

  function dots(color) {
    return { stroke: color, fill: color, width: 0, paths: function () { return null; },
      points: { show: true, size: 9, width: 1, stroke: color, fill: color } };
  }
  var styles = {
    set: { stroke: v("--ink"), width: 1.5, dash: [6, 4], paths: uPlot.paths.stepped({ align: 1 }), points: { show: false } },
    stable: { stroke: v("--stable"), width: 1.5, points: { show: false } },
    candidate: { stroke: v("--current"), width: 2, points: { show: false } },
    other: { stroke: v("--nodata"), width: 1, points: { show: false } },
    value: { stroke: v("--ink"), width: 1.5, points: { show: false } },
    min: { stroke: v("--fail"), width: 1, dash: [4, 4], points: { show: false } },
    max: { stroke: v("--fail"), width: 1, dash: [4, 4], points: { show: false } },
    pass: dots(v("--pass")),
    fail: dots(v("--fail")),
    nodata: dots(v("--nodata"))
  };

  // Transitions as thin vertical lines, named at the top.
  function markers(steps) {
    return function (u) {
      var ctx = u.ctx, top = u.bbox.top, bottom = top + u.bbox.height;
      ctx.save();
      ctx.strokeStyle = v("--line");
      ctx.fillStyle = v("--muted");
      ctx.lineWidth = 1;
      ctx.font = 10 * devicePixelRatio + "px system-ui, sans-serif";
      steps.forEach(function (s) {
        var x = Math.round(u.valToPos(s.t, "x", true)) + 0.5;
        if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) return;
        ctx.beginPath();
        ctx.moveTo(x, top);
        ctx.lineTo(x, bottom);
        ctx.stroke();
        ctx.fillText(s.step, x + 3 * devicePixelRatio, top + 10 * devicePixelRatio);
      });
      ctx.restore();
    };
  }

  function count(data, series, kinds) {
    var n = 0;
    series.forEach(function (s, i) {
      if (kinds.indexOf(s.kind) < 0) return;
      data[i + 1].forEach(function (y) { if (y !== null) n++; });
    });
    return n;
  }

  function draw(el, chart, steps, from, to) {
    var key = chart.series.map(function (s) { return s.kind + ":" + s.label; }).join("|");
    el.dataset.points = count(chart.data, chart.series, ["value", "stable", "candidate", "other"]);
    el.dataset.set = count(chart.data, chart.series, ["set"]);
    el.dataset.checks = count(chart.data, chart.series, ["pass", "fail", "nodata"]);
    el.dataset.failed = count(chart.data, chart.series, ["fail"]);
    el.dataset.thresholds = chart.series.filter(function (s) { return s.kind === "min" || s.kind === "max"; }).length;
    el.title = chart.query || "";
    var old = plots[el.id];
    if (old && old.key === key) {
      old.steps.length = 0;
      Array.prototype.push.apply(old.steps, steps);
      old.u.setData(chart.data);
      return;
    }
    if (old) old.u.destroy();
    var stepsRef = steps.slice();
    var series = [{}].concat(chart.series.map(function (s) {
      return Object.assign({ label: s.label, spanGaps: s.kind === "min" || s.kind === "max" }, styles[s.kind] || styles.other);
    }));
    var unit = chart.unit || "";
    var opts = {
      width: Math.max(el.clientWidth, 300), height: 220,
      series: series,
      scales: { x: { time: true, range: [from, to] }, y: el.dataset.kind === "traffic" ? { range: [0, 100] } : {} },
      axes: [
        { stroke: v("--muted"), grid: { stroke: v("--line"), width: 1 }, ticks: { stroke: v("--line") } },
        { stroke: v("--muted"), grid: { stroke: v("--line"), width: 1 }, ticks: { stroke: v("--line") }, size: 64,
          values: function (u, ticks) { return ticks.map(function (t) { return t + unit; }); } }
      ],
      cursor: { points: { size: 6 } },
      legend: { live: false },
      hooks: { draw: [markers(stepsRef)] }
    };
    plots[el.id] = { u: new uPlot(opts, chart.data, el), key: key, steps: stepsRef };
  }

  async function load() {
    var err = document.getElementById("chart-error");
    try {
      var res = await fetch(root.dataset.series, { cache: "no-store" });
      if (!res.ok) throw new Error("HTTP " + res.status);
      var s = await res.json();
      var problems = [];
      var traffic = document.getElementById("chart-traffic");
      if (traffic && s.traffic) {
        draw(traffic, s.traffic, s.steps, s.from, s.to);
        if (s.traffic.error) problems.push("Traffic: " + s.traffic.error);
      }
      s.gates.forEach(function (g) {
        var el = document.getElementById("chart-gate-" + g.metric);
        if (el) draw(el, g, s.steps, s.from, s.to);
        if (g.error) problems.push(g.metric + ": " + g.error);
      });
      err.textContent = problems.join(" · ");
      root.dataset.loaded = String(Date.now());
    } catch (e) {
      err.textContent = "Charts unavailable: " + e.message;
    }
  }

  var timer;
  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(function () { load().then(schedule); }, interval);
  }
  document.addEventListener("sluice:head", function () { load().then(schedule); });
  window.addEventListener("resize", function () {
    Object.keys(plots).forEach(function (id) {
      var el = document.getElementById(id);
      if (el) plots[id].u.setSize({ width: Math.max(el.clientWidth, 300), height: 220 });
    });
  });
  load().then(schedule);
})();
