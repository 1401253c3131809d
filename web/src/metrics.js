// Reads Prometheus text format 0.0.4 (GET /metrics) and draws the dashboard's small SVG
// charts (a sparkline and a bar chart are a few lines; no chart library needed).

// [{name, labels: {k: v}, value}] of every sample line.
export function parseMetrics(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] || "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return samples;
}

export function sum(samples, name, where = {}) {
  return samples
    .filter((s) => s.name === name && Object.entries(where).every(([k, v]) => s.labels[k] === v))
    .reduce((a, s) => a + s.value, 0);
}

// {stage: [{le, count}]} with per-bucket (not cumulative) counts.
export function stageHistograms(samples) {
  const byStage = {};
  for (const s of samples) {
    if (s.name !== "cutor_stage_duration_seconds_bucket") continue;
    (byStage[s.labels.stage] ||= []).push({ le: s.labels.le, cumulative: s.value });
  }
  for (const stage of Object.keys(byStage)) {
    const buckets = byStage[stage].sort((a, b) => Number(a.le) - Number(b.le));  // "+Inf" -> NaN last
    let previous = 0;
    byStage[stage] = buckets.map((b) => {
      const count = b.cumulative - previous;
      previous = b.cumulative;
      return { le: b.le, count };
    });
  }
  return byStage;
}

const SVG = "http://www.w3.org/2000/svg";
function el(name, attrs, text) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

export function drawSparkline(svg, values) {
  svg.replaceChildren();
  if (values.length < 2) return;
  const max = Math.max(1, ...values);
  const points = values.map((v, i) => `${(i / (values.length - 1)) * 300},${75 - (v / max) * 65}`);
  svg.append(el("polyline", { class: "line", points: points.join(" ") }), el("text", { x: 2, y: 8 }, `max ${max}`));
}

export function drawBars(svg, buckets) {
  svg.replaceChildren();
  const max = Math.max(1, ...buckets.map((b) => b.count));
  const w = 300 / buckets.length;
  buckets.forEach((b, i) => {
    const h = (b.count / max) * 60;
    const bar = el("rect", { class: "bar", x: i * w + 1, y: 68 - h, width: w - 2, height: h });
    bar.append(el("title", {}, `≤ ${b.le} s: ${b.count}`));
    svg.append(bar);
    if (i % 2 === 0) svg.append(el("text", { x: i * w + 1, y: 78 }, b.le === "+Inf" ? "∞" : b.le));
  });
}
