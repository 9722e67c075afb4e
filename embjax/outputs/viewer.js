// embjax's embedding-space page: decodes the frames embjax.viewer embedded and drives Plotly with them.
// One frame index for the whole page; each member shows its newest frame at or before that step.
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("embjax-data").textContent);
  const $ = (id) => document.getElementById(id);
  const BASE_MS = 250; // one frame per 250 ms at 1x
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#e7ba52", "#843c39", "#5254a3", "#637939", "#ad494a"];
  const BUCKETS = [["top 1 %", "#d62728"], ["1-10 %", "#ff7f0e"], ["rest", "#1f77b4"], ["unseen", "#aaaaaa"]];
  const UPDATED = [["updated", "#1f77b4"], ["never updated", "#d62728"]];

  function decode(b64, Type) {
    const s = atob(b64), u = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) u[i] = s.charCodeAt(i);
    return new Type(u.buffer);
  }
  for (const m of D.members) {
    m.xyz = decode(m.coords, Float32Array);
    m.norm = decode(m.norms, Float32Array);
    m.nnIdx = decode(m.nn, m.nn_wide ? Uint32Array : Uint16Array);
    m.nnCos = decode(m.nncos, Int16Array);
    m.upd = decode(m.updated, Uint8Array);
    if (m.highlight) {
      const h = m.highlight;
      h.on = decode(h.marked, Uint8Array);
      h.cos = decode(h.paircos, Int16Array);
      h.partners = Array.from({ length: m.N }, () => []); // shown row -> [pair index, partner]
      h.pairs.forEach(([a, b], p) => { h.partners[a].push([p, b]); h.partners[b].push([p, a]); });
    }
  }
  const hasClasses = D.members.every((m) => m.classes !== null);
  const marked = D.members[0].highlight;
  const modes = (marked ? [["highlight", marked.label + " words"]] : []).concat(
    hasClasses ? [["class", "planted class"]] : [], [["bucket", "frequency bucket"], ["updated", "never updated"]]);
  const HIGHLIGHT = [["benchmark word", "#d62728"], ["other", "#cccccc"]];
  const S = { frame: 0, playing: false, timer: null, speed: 1, colour: modes[0][0], three: false };

  function frameOf(m, step) { // the member's newest frame at or before step (-1: none yet)
    let f = -1;
    while (f + 1 < m.F && m.steps[f + 1] <= step) f++;
    return f;
  }
  function fmt(x) { return Math.abs(x) >= 1e-3 || x === 0 ? x.toFixed(3) : x.toExponential(2); }
  function fmtCount(m, c) { return m.count_name === "count" ? Math.round(c).toLocaleString("en-US") : fmt(c); }
  function hover(m, f) {
    const out = new Array(m.N), K = m.nnIdx.length / (m.F * m.N);
    for (let i = 0; i < m.N; i++) {
      let s = "<b>" + m.tokens[i] + "</b>  id " + m.ids[i] + ", " + m.count_name + " " + fmtCount(m, m.counts[i]) +
        "<br>norm " + fmt(m.norm[f * m.N + i]) + "<br>nearest:";
      for (let k = 0; k < K; k++) {
        const o = (f * m.N + i) * K + k;
        s += (k ? "," : "") + " " + m.tokens[m.nnIdx[o]] + " (" + (m.nnCos[o] / 10000).toFixed(2) + ")";
      }
      const h = m.highlight;
      if (h && h.partners[i].length) {
        const P = h.pairs.length;
        s += "<br>" + h.label + ":" + h.partners[i].slice(0, 8).map(([p, j]) =>
          " " + m.tokens[j] + " (" + (h.cos[f * P + p] / 10000).toFixed(2) + ")").join(",");
      }
      out[i] = s;
    }
    return out;
  }
  function colours(m, f) {
    const out = new Array(m.N);
    for (let i = 0; i < m.N; i++) {
      if (S.colour === "highlight") out[i] = HIGHLIGHT[m.highlight.on[i] ? 0 : 1][1];
      else if (S.colour === "class") out[i] = PALETTE[m.classes[i] % PALETTE.length];
      else if (S.colour === "bucket") out[i] = BUCKETS[m.bucket[i]][1];
      else out[i] = UPDATED[m.upd[f * m.N + i] ? 0 : 1][1];
    }
    return out;
  }
  function trace(m, f) {
    if (f < 0) return { x: [], y: [], z: S.three ? [] : undefined, mode: "markers", type: S.three ? "scatter3d" : "scatter" };
    const x = new Float32Array(m.N), y = new Float32Array(m.N), z = new Float32Array(m.N);
    for (let i = 0; i < m.N; i++) {
      const o = (f * m.N + i) * 3;
      x[i] = m.xyz[o]; y[i] = m.xyz[o + 1]; z[i] = m.xyz[o + 2];
    }
    const t = { x: x, y: y, mode: "markers", type: S.three ? "scatter3d" : "scatter", text: hover(m, f),
      hoverinfo: "text", marker: { size: S.three ? m.size.map((v) => v / 2) : m.size, color: colours(m, f),
        opacity: 0.8, line: { width: 0 } } };
    if (S.three) t.z = z;
    return t;
  }
  function layout(m, f) {
    const small = D.members.length > 1;
    const when = f < 0 ? "no frame yet" : "step " + m.steps[f];
    const l = { title: { text: m.label + (small ? "<br>" : "  ") + "(" + when + ")", font: { size: small ? 12 : 15 },
      x: small ? 0.01 : 0.5, xanchor: small ? "left" : "center" }, // left of the toolbar in a small plot
      width: small ? 380 : 760, height: small ? 370 : 600, margin: { l: 50, r: 10, t: small ? 46 : 36, b: 40 },
      uirevision: "keep", showlegend: false, hovermode: "closest", hoverlabel: { align: "left" } };
    const ax = [0, 1, 2].map((j) => ({ range: m.ranges[j], zeroline: false,
      title: { text: "PC" + (j + 1) + (S.three ? "" : " of the final frame") } }));
    if (S.three) l.scene = { xaxis: ax[0], yaxis: ax[1], zaxis: ax[2], aspectmode: "cube" };
    else { l.xaxis = ax[0]; l.yaxis = ax[1]; }
    return l;
  }
  function legend() {
    const items = S.colour === "highlight" ? HIGHLIGHT : S.colour === "bucket" ? BUCKETS : S.colour === "updated" ? UPDATED :
      PALETTE.slice(0, Math.min(PALETTE.length, 1 + Math.max(...D.members[0].classes))).map((c, k) => ["class " + k, c]);
    $("legend").innerHTML = items.map(([n, c]) => '<span><i style="background:' + c + '"></i>' + n + "</span>").join("") +
      "<span>size: log frequency</span>";
  }
  function drawMembers() {
    const step = D.steps[S.frame];
    return Promise.all(D.members.map((m, k) => {
      const f = frameOf(m, step);
      return Plotly.react("member-" + k, [trace(m, f)], layout(m, f), { displaylogo: false, responsive: false,
        modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d", "toggleSpikelines"] });
    }));
  }
  function cursor() {
    const x = D.steps[S.frame];
    return ["", "2", "3"].map((j) => ({ type: "line", xref: "x" + j, yref: "y" + j + " domain", x0: x, x1: x, y0: 0,
      y1: 1, line: { color: "#444", width: 1, dash: "dot" } }));
  }
  function drawCurves() {
    const panels = [["train/loss", "loss (nats; dashed: eval)"], ["emb/norm_growth", "norm growth"],
      ["emb/cos_mean", "mean cosine"]];
    const traces = [];
    D.members.forEach((m, k) => {
      const colour = PALETTE[k % PALETTE.length];
      panels.forEach(([key], j) => {
        const ax = j ? String(j + 1) : "";
        const c = m.curves[key];
        traces.push({ x: c[0], y: c[1], mode: "lines", name: m.label, legendgroup: m.label, showlegend: j === 0,
          line: { color: colour }, xaxis: "x" + ax, yaxis: "y" + ax });
        if (j === 0 && m.curves["eval/loss"][0].length) {
          const e = m.curves["eval/loss"];
          traces.push({ x: e[0], y: e[1], mode: "lines+markers", name: m.label + " eval", legendgroup: m.label,
            showlegend: false, line: { color: colour, dash: "dash" }, xaxis: "x", yaxis: "y" });
        }
      });
    });
    const single = D.members.length === 1; // one run: the curves stand in a column beside it
    const l = { grid: single ? { rows: 3, columns: 1, pattern: "independent" } : { rows: 1, columns: 3, pattern: "independent" },
      height: single ? 600 : 320, width: single ? 460 : undefined, margin: { l: 55, r: 10, t: 30, b: single ? 40 : 100 },
      shapes: cursor(), showlegend: !single, legend: { orientation: "h", y: -0.3, yanchor: "top" } };
    panels.forEach(([, title], j) => {
      const ax = j ? String(j + 1) : "";
      l["xaxis" + ax] = { title: { text: single && j < 2 ? "" : "step" }, matches: j ? "x" : undefined };
      l["yaxis" + ax] = { title: { text: title } };
    });
    Plotly.newPlot("curves", traces, l, { displaylogo: false });
    $("curves").on("plotly_click", (ev) => go(nearestFrame(ev.points[0].x)));
  }
  function nearestFrame(step) {
    let best = 0;
    D.steps.forEach((s, f) => { if (Math.abs(s - step) < Math.abs(D.steps[best] - step)) best = f; });
    return best;
  }
  function label() {
    const total = Math.max(...D.members.map((m) => m.total));
    $("step-label").textContent = "step " + D.steps[S.frame] + " / " + total + "  ·  frame " + (S.frame + 1) +
      " / " + D.steps.length;
    $("slider").value = S.frame;
    $("play").innerHTML = S.playing ? "&#x275A;&#x275A;" : "&#x25B6;";
  }
  function go(f) {
    S.frame = Math.max(0, Math.min(D.steps.length - 1, f));
    label();
    Plotly.relayout("curves", { shapes: cursor() });
    return drawMembers();
  }
  function tick() { // the next frame once this one is drawn, so a slow frame delays play rather than piling up
    if (!S.playing) return;
    if (S.frame >= D.steps.length - 1) { pause(); return; }
    const t0 = performance.now();
    go(S.frame + 1).then(() => {
      if (S.playing) S.timer = setTimeout(tick, Math.max(0, BASE_MS / S.speed - (performance.now() - t0)));
    });
  }
  function play() {
    if (S.frame >= D.steps.length - 1) S.frame = 0;
    S.playing = true;
    label();
    tick();
  }
  function pause() { S.playing = false; clearTimeout(S.timer); label(); }

  // build the page
  if (D.members.length === 1) $("main").className = "single";
  const box = $("members");
  D.members.forEach((m, k) => {
    const div = document.createElement("div");
    div.id = "member-" + k;
    div.className = "member";
    div.dataset.name = m.name;
    box.appendChild(div);
  });
  $("colour").innerHTML = modes.map(([v, n]) => '<option value="' + v + '">' + n + "</option>").join("");
  $("slider").max = D.steps.length - 1;
  $("first").onclick = () => { pause(); go(0); };
  $("back").onclick = () => { pause(); go(S.frame - 1); };
  $("forward").onclick = () => { pause(); go(S.frame + 1); };
  $("play").onclick = () => (S.playing ? pause() : play());
  $("speed").onchange = (e) => { S.speed = parseFloat(e.target.value); };
  $("slider").oninput = (e) => { pause(); go(parseInt(e.target.value, 10)); };
  $("colour").onchange = (e) => { S.colour = e.target.value; legend(); drawMembers(); };
  $("three").onchange = (e) => { S.three = e.target.checked; D.members.forEach((m, k) => Plotly.purge("member-" + k)); drawMembers(); };
  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
    const keys = { " ": () => $("play").onclick(), ArrowLeft: () => $("back").onclick(),
      ArrowRight: () => $("forward").onclick(), Home: () => $("first").onclick() };
    if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
  });
  const hidden = D.members.filter((m) => m.hidden > 0).map((m) => m.label + ": " + m.hidden);
  $("notes").textContent = (D.eligible > D.members.length ? "Showing " + D.members.length + " of " + D.eligible +
    " members (python -m experiments.view DIR --members=... chooses). " : "") +
    (hidden.length ? "Rows not finite in some frame (float16 overflow or divergence), hidden there: " + hidden.join(", ") + ". " : "") +
    "Projection: PCA of each member's final frame, the same axes at every frame. Rows: " +
    D.members[0].rows_note + ". " + (marked ? D.members.map((m) => m.highlight.note).filter((n, k, a) => a.indexOf(n) === k).join("; ") +
    " (hover one for its benchmark partners and their cosine at this frame). " : "") + "Hover a point for its token, count, norm and nearest neighbours by cosine at this frame; " +
    "click a curve to jump to that step; keys: space, arrows, Home.";
  legend();
  drawCurves();
  label();
  window.embjaxViewer = { state: S, data: D, go: go, ready: null };
  drawMembers().then(() => { window.embjaxViewer.ready = performance.now(); }); // ms from navigation: first frame drawn
})();
