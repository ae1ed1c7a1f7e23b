// The admin's Operations page: draws each chart with the vendored uPlot
// (window.uPlot) from the JSON the server put in #operations-data. A file of its
// own, no inline script or style: the Content-Security-Policy allows neither.

const COLORS = ["#2f6f4f", "#b3261e", "#8a8a8a", "#1f5fa8", "#c77700", "#6b3fa0"];
const HEIGHT = 220;

function width(box) {
  return Math.max(280, Math.floor(box.getBoundingClientRect().width));
}

function line(label, color, extra = {}) {
  return { label, stroke: color, width: 2, spanGaps: false, points: { show: false }, ...extra };
}

function filled(label, color) {
  return line(label, color, { fill: color + "33" });
}

function seconds(value) {
  if (value == null) return "–";
  return value < 90 ? `${value.toFixed(2)} s` : value < 5400 ? `${(value / 60).toFixed(1)} min` : `${(value / 3600).toFixed(1)} h`;
}

function count(value) {
  return value == null ? "–" : String(Math.round(value));
}

// Counts are whole: their axis steps by 1, 2, 5, 10, ...
const WHOLE = [1, 2, 5].flatMap((n) => [1, 10, 100, 1e3, 1e4, 1e5, 1e6].map((p) => n * p)).sort((a, b) => a - b);

function timeChart(data, series, format) {
  const yAxis = { values: (u, splits) => splits.map(format), size: 72 };
  if (format === count) yAxis.incrs = WHOLE;
  return {
    data: [data.starts, ...series.map((s) => s.values)],
    opts: {
      height: HEIGHT,
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
      series: [{}, ...series.map((s) => ({ ...s.style, value: (u, v) => format(v) }))],
      axes: [{}, yAxis],
    },
  };
}

function bars(names, series, format) {
  const xs = names.map((_, i) => i);
  const paths = window.uPlot.paths.bars({ size: [0.6, 64] });
  return {
    data: [xs, ...series.map((s) => s.values)],
    opts: {
      height: HEIGHT,
      scales: {
        x: { time: false, range: () => [-0.5, Math.max(0.5, names.length - 0.5)] },
        // Waits run from seconds to days: a log scale shows both.
        y: { distr: 3, range: (u, min, max) => [1, Math.max(10, (max || 1) * 2)] },
      },
      series: [
        { value: (u, i) => names[i] ?? "" },
        // In one slot per tool, the later (shorter) bar drawn over the earlier.
        ...series.map((s) => ({
          ...s.style,
          fill: s.style.stroke,
          paths,
          points: { show: false },
          value: (u, v) => format(v),
        })),
      ],
      axes: [
        { splits: () => xs, values: (u, splits) => splits.map((i) => names[i] ?? "") },
        { values: (u, splits) => splits.map(format), size: 72 },
      ],
    },
  };
}

const CHARTS = {
  turns: (d) =>
    timeChart(
      d,
      [
        { values: d.turns.completed, style: filled("completed", COLORS[0]) },
        { values: d.turns.failed, style: filled("failed", COLORS[1]) },
        { values: d.turns.cancelled, style: filled("cancelled", COLORS[2]) },
      ],
      count,
    ),
  first_token: (d) =>
    timeChart(
      d,
      [
        { values: d.first_token.p50, style: line("p50", COLORS[3]) },
        { values: d.first_token.p95, style: line("p95", COLORS[4]) },
      ],
      seconds,
    ),
  tokens: (d) =>
    timeChart(
      d,
      Object.entries(d.tokens).map(([model, values], i) => ({
        values,
        style: filled(model, COLORS[(i + 3) % COLORS.length]),
      })),
      count,
    ),
  pending: (d) => timeChart(d, [{ values: d.pending, style: filled("pending", COLORS[4]) }], count),
  approval_wait: (d) =>
    bars(
      d.approval_wait.tools,
      [
        { values: d.approval_wait.p95, style: line("p95", COLORS[4]) },
        { values: d.approval_wait.p50, style: line("p50", COLORS[3]) },
      ],
      seconds,
    ),
  deliveries_failed: (d) =>
    timeChart(
      d,
      Object.entries(d.deliveries_failed).map(([kind, values], i) => ({
        values,
        style: filled(kind, COLORS[(i + 1) % COLORS.length]),
      })),
      count,
    ),
};

function draw() {
  const source = document.getElementById("operations-data");
  if (!source || !window.uPlot) return;
  const data = JSON.parse(source.textContent);
  const plots = [];
  for (const box of document.querySelectorAll("[data-chart]")) {
    const build = CHARTS[box.dataset.chart];
    if (!build) continue;
    const { data: series, opts } = build(data);
    plots.push([box, new window.uPlot({ ...opts, width: width(box) }, series, box)]);
  }
  let pending = 0;
  window.addEventListener("resize", () => {
    cancelAnimationFrame(pending);
    pending = requestAnimationFrame(() => {
      for (const [box, plot] of plots) plot.setSize({ width: width(box), height: HEIGHT });
    });
  });
  document.body.dataset.chartsDrawn = String(plots.length);
}

draw();
