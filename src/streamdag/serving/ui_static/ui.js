// The streamdag web view: draws a pipeline's DAG as SVG from /ui/api/.../graph, polls
// /ui/api/.../stats for live figures and .../jobs for bulk jobs, finds requests and lists
// the latest errors.
// Plain browser JavaScript, no library; everything from the server goes into the page as
// text (textContent), never as markup.
(function () {
  "use strict";

  const SVG = "http://www.w3.org/2000/svg";
  const REFRESH_MS = 3000;
  const JOBS_SHOWN = 10; // the newest; `streamdag jobs` lists them all
  const W = 156;
  const HEIGHT = { step: 112, join: 112, topic: 70, outputs: 86, errors: 70 };
  const GAP_X = 40;
  const GAP_Y = 22;
  const PAD = 14;

  const $ = (id) => document.getElementById(id);
  const state = { pipeline: null, graph: null, figs: new Map(), timer: null, refreshes: 0 };
  // Tensor values may be patient text: they are asked for only when the server allows it
  // (serve --ui-show-values) and the viewer turns the switch on.
  const showValues = () => !$("values-switch").hidden && $("show-values").checked;

  // -- helpers -----------------------------------------------------------------------
  async function api(path) {
    const response = await fetch("api/" + path, { cache: "no-store" });
    let body = null;
    try {
      body = await response.json();
    } catch (e) {
      body = null;
    }
    if (!response.ok) {
      throw new Error((body && body.error) || response.status + " " + response.statusText);
    }
    return body;
  }

  function el(tag, attrs, text) {
    const node = tag.startsWith("svg:")
      ? document.createElementNS(SVG, tag.slice(4))
      : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== null && v !== undefined) node.setAttribute(k, String(v));
    }
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function clip(text, n) {
    text = String(text);
    return text.length > n ? text.slice(0, n - 1) + "…" : text;
  }

  // Topic names differ at their end: keep that.
  function clipStart(text, n) {
    text = String(text);
    return text.length > n ? "…" + text.slice(text.length - n + 1) : text;
  }

  function num(v) {
    return v < 10 ? v.toFixed(1) : String(Math.round(v));
  }

  function rate(v) {
    return v === null || v === undefined ? "– rec/s" : num(v) + " rec/s";
  }

  function ms(v) {
    if (v === null || v === undefined) return "–";
    return v >= 10000 ? (v / 1000).toFixed(1) + " s" : num(v) + " ms";
  }

  // "p50 12 · p99 40 ms": one unit for both, seconds once either reaches 10 s.
  function latency(p50, p99) {
    if (p50 === null || p50 === undefined) return "p50 – · p99 –";
    if (p99 >= 10000) return "p50 " + num(p50 / 1000) + " · p99 " + num(p99 / 1000) + " s";
    return "p50 " + num(p50) + " · p99 " + num(p99) + " ms";
  }

  function plural(n, word) {
    return n + " " + word + (n === 1 ? "" : "s");
  }

  function clock(iso) {
    const t = String(iso || "");
    return t.length >= 19 ? t.slice(11, 19) : t;
  }

  function seconds(windowMs) {
    return windowMs % 1000 === 0 ? windowMs / 1000 + " s" : windowMs + " ms";
  }

  function setStatus(text, bad) {
    const status = $("status");
    status.textContent = text;
    status.classList.toggle("bad", Boolean(bad));
  }

  // -- the graph ---------------------------------------------------------------------
  function heightOf(node) {
    return node.id === "outputs" ? HEIGHT.outputs : HEIGHT[node.kind] || HEIGHT.topic;
  }

  // Columns by layer; in each column, nodes sorted by where their inputs sit (barycentre),
  // which untangles fan-outs and joins; the errors topic goes under the outputs topic.
  function layout(graph) {
    const columns = [];
    for (const node of graph.nodes) {
      (columns[node.layer] = columns[node.layer] || []).push(node);
    }
    const preds = new Map();
    for (const e of graph.edges) {
      if (!preds.has(e.to)) preds.set(e.to, []);
      preds.get(e.to).push(e.from);
    }
    const place = new Map();
    columns.forEach((column, i) => {
      if (i > 0) {
        const centre = (node) => {
          const from = (preds.get(node.id) || []).filter((id) => place.has(id));
          if (!from.length) return node.kind === "errors" ? Infinity : 0;
          return from.reduce((s, id) => s + place.get(id), 0) / from.length;
        };
        const keys = new Map(column.map((n) => [n.id, centre(n)]));
        column.sort((a, b) => keys.get(a.id) - keys.get(b.id));
      }
      column.forEach((node, j) => place.set(node.id, j - (column.length - 1) / 2));
    });
    const heights = columns.map(
      (c) => c.reduce((s, n) => s + heightOf(n), 0) + GAP_Y * (c.length - 1)
    );
    const tallest = Math.max(...heights);
    const boxes = new Map();
    columns.forEach((column, i) => {
      let y = PAD + (tallest - heights[i]) / 2;
      for (const node of column) {
        boxes.set(node.id, { x: PAD + i * (W + GAP_X), y: y, w: W, h: heightOf(node) });
        y += heightOf(node) + GAP_Y;
      }
    });
    const width = PAD * 2 + columns.length * W + (columns.length - 1) * GAP_X;
    return { boxes: boxes, width: width, height: tallest + PAD * 2 };
  }

  function drawGraph(graph) {
    const svg = $("dag");
    svg.replaceChildren();
    state.figs = new Map();
    const { boxes, width, height } = layout(graph);
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    svg.setAttribute("data-pipeline", graph.pipeline);
    const defs = el("svg:defs");
    const marker = el("svg:marker", {
      id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerUnits: "userSpaceOnUse",
      markerWidth: 9, markerHeight: 9, orient: "auto-start-reverse",
    });
    marker.append(el("svg:path", { d: "M 0 0 L 10 5 L 0 10 z" }));
    defs.append(marker);
    svg.append(defs);

    const edges = el("svg:g", { class: "edges" });
    for (const e of graph.edges) edges.append(drawEdge(e, boxes.get(e.from), boxes.get(e.to)));
    svg.append(edges);
    const nodes = el("svg:g", { class: "nodes" });
    for (const node of graph.nodes) nodes.append(drawNode(node, boxes.get(node.id)));
    svg.append(nodes);
  }

  function drawEdge(edge, a, b) {
    const x1 = a.x + a.w, y1 = a.y + a.h / 2, x2 = b.x - 2, y2 = b.y + b.h / 2;
    const dx = Math.max(24, (x2 - x1) / 2);
    const g = el("svg:g", { "data-from": edge.from, "data-to": edge.to });
    const trigger = edge.when.length > 0;
    g.append(el("svg:path", {
      class: "edge" + (trigger ? " trigger" : ""),
      d: `M ${x1} ${y1} C ${x1 + dx} ${y1}, ${x2 - dx} ${y2}, ${x2} ${y2}`,
      "marker-end": "url(#arrow)",
    }));
    const carried = edge.tensors.join(", ");
    g.append(el("svg:title", {}, edge.from + " → " + edge.to + ": " + carried +
      (trigger ? " (when " + edge.when.join(", ") + ")" : "")));
    return g;
  }

  function drawNode(node, box) {
    const kind = node.kind;
    const classes = ["node", kind];
    if (kind === "step" && node.join) classes.push("is-join");
    const g = el("svg:g", { class: classes.join(" "), "data-id": node.id });
    const pill = kind === "topic" || kind === "errors";
    g.append(el("svg:rect", {
      x: box.x, y: box.y, width: box.w, height: box.h, rx: pill ? 18 : 7,
    }));
    const x = box.x + 10;
    const right = box.x + box.w - 10;
    const line = (dy, cls, text, attrs) =>
      g.appendChild(el("svg:text", Object.assign({ class: cls, x: x, y: box.y + dy }, attrs), text));
    const figs = {};
    const about = [(kind === "step" || kind === "join" ? "writes " : "topic ") + node.topic];
    if (node.group) {
      about.push("consumer group " + node.group);
      about.push("p50 / p99: from the request entering the pipeline to its result here");
    }
    g.append(el("svg:title", {}, about.join("\n")));
    if (kind === "step" || kind === "join") {
      line(18, "name", clip(node.label, 20));
      line(33, "sub", kind === "join"
        ? "assembles the answer"
        : clip(node.model + " · " + node.runtime, 26));
      if (node.join) {
        line(48, "tag", "⋈ " + node.join + " join · " + seconds(node.window_ms));
      } else if (node.when && node.when.length) {
        line(48, "tag trigger", clip("when " + node.when.join(", ").replace(/\.outputs\./g, "."), 26));
      }
      figs.rate = line(66, "fig fig-rate", rate(null));
      figs.lag = line(66, "fig fig-lag", "lag –", { x: right, "text-anchor": "end" });
      figs.latency = line(83, "fig fig-latency", latency(null, null));
      figs.errors = line(100, "fig fig-errors", "errors –");
      figs.workers = line(100, "fig fig-workers", "", { x: right, "text-anchor": "end" });
    } else {
      line(18, "name", node.label);
      line(33, "sub", clipStart(node.topic, 24));
      if (kind === "errors") {
        figs.errors = line(54, "fig fig-errors", "– errors");
      } else {
        figs.rate = line(54, "fig fig-rate", rate(null));
        if (node.id === "outputs") figs.latency = line(71, "fig fig-latency", latency(null, null));
      }
    }
    state.figs.set(node.id, figs);
    return g;
  }

  // -- live figures ------------------------------------------------------------------
  function showFigures(stats) {
    const set = (id, key, text, cls) => {
      const figs = state.figs.get(id);
      if (!figs || !figs[key]) return;
      figs[key].textContent = text;
      figs[key].classList.toggle("bad", cls === "bad");
      figs[key].classList.toggle("warn", cls === "warn");
    };
    for (const s of stats.steps) {
      set(s.step, "rate", rate(s.records_per_s));
      set(s.step, "lag", "lag " + (s.lag === null ? "–" : s.lag), s.lag > 0 ? "warn" : null);
      set(s.step, "latency", latency(s.p50_ms, s.p99_ms));
      set(s.step, "errors", "errors " + s.errors, s.errors > 0 ? "bad" : null);
    }
    set("inputs", "rate", rate(stats.inputs.records_per_s));
    set("outputs", "rate", rate(stats.outputs.records_per_s));
    set("outputs", "latency", latency(stats.outputs.p50_ms, stats.outputs.p99_ms));
    set("errors", "errors", plural(stats.errors, "error"), stats.errors > 0 ? "bad" : null);

    $("sum-in").textContent = rate(stats.inputs.records_per_s);
    $("sum-out").textContent = rate(stats.outputs.records_per_s);
    $("sum-latency").textContent = latency(stats.outputs.p50_ms, stats.outputs.p99_ms);
    $("sum-errors").textContent = String(stats.errors);
    $("sum-errors").classList.toggle("bad", stats.errors > 0);
    $("sum-window").textContent = stats.window_s === null
      ? "rates appear after the next refresh"
      : "rates over the last " + stats.window_s.toFixed(1) + " s";
    const readiness = stats.readiness || null;
    const workers = readiness ? readiness.workers : {};
    for (const s of stats.steps) {
      const n = workers[s.step];
      if (n !== undefined) {
        set(s.step, "workers", n === 0 ? "no worker" : plural(n, "worker"), n === 0 ? "bad" : null);
      }
    }
    $("sum-ready").textContent = readiness === null ? "–" : readiness.ready ? "yes" : "no";
    $("sum-ready").classList.toggle("bad", readiness !== null && !readiness.ready);
    $("sum-reason").textContent = readiness && !readiness.ready ? readiness.reason : "";
    $("sum-reason").hidden = !(readiness && !readiness.ready);
    showSteps(stats.steps, workers);
    showErrors(stats.latest_errors);
  }

  function showSteps(steps, workers) {
    const body = $("steps").tBodies[0];
    body.replaceChildren();
    for (const s of steps) {
      const tr = el("tr", { "data-step": s.step });
      tr.append(el("td", {}, s.step), el("td", { class: "muted" }, s.group));
      const n = workers[s.step];
      tr.append(el("td", { class: "num workers" + (n === 0 ? " bad" : "") },
        n === undefined ? "–" : String(n)));
      tr.append(el("td", { class: "num" }, s.records_per_s === null ? "–" : num(s.records_per_s)));
      tr.append(el("td", { class: "num" }, ms(s.p50_ms)), el("td", { class: "num" }, ms(s.p99_ms)));
      const parts = Object.entries(s.lag_by_partition).map(([tp, n]) => tp + ": " + n);
      tr.append(el("td", { class: "num" + (s.lag > 0 ? " warn" : ""), title: parts.join("\n") },
        s.lag === null ? "–" : s.lag));
      tr.append(el("td", { class: "num" + (s.errors > 0 ? " bad" : "") }, s.errors));
      body.append(tr);
    }
  }

  function showErrors(latest) {
    const body = $("errors").tBodies[0];
    body.replaceChildren();
    for (const r of latest) {
      const error = r.error || { step: r.step || "", code: "internal", message: "" };
      const tr = el("tr");
      tr.append(el("td", { title: r.time }, clock(r.time)));
      const code = el("td", { class: "bad" }, error.code);
      if (r.replayed) code.append(" ", el("span", { class: "badge replayed" }, "replayed"));
      tr.append(el("td", {}, error.step), code);
      const link = el("a", { class: "rid", title: "find this request" }, clip(r.request_id, 24));
      link.addEventListener("click", () => {
        $("request-id").value = r.request_id;
        search(r.request_id, $("since").value);
      });
      const cell = el("td");
      cell.append(link);
      tr.append(cell, el("td", { class: "msg" }, clip(error.message, 300)));
      body.append(tr);
    }
    $("no-errors").hidden = latest.length > 0;
  }

  // The counts of `streamdag jobs`, newest job first.
  function showJobs(jobs) {
    const body = $("jobs").tBodies[0];
    body.replaceChildren();
    for (const j of jobs.slice(0, JOBS_SHOWN)) {
      const tr = el("tr", { "data-job": j.job });
      const rows = j.total === null ? String(j.rows) : j.rows + "/" + j.total;
      const when = new Date(j.updated * 1000);
      tr.append(el("td", {}, j.job), el("td", { class: j.state === "open" ? "warn" : "" }, j.state));
      tr.append(el("td", { class: "num" }, rows), el("td", { class: "num" }, j.results));
      tr.append(el("td", { class: "num" + (j.failed > 0 ? " bad" : "") }, j.failed));
      tr.append(el("td", { class: "num" }, j.in_flight));
      tr.append(el("td", { title: when.toISOString() }, when.toLocaleTimeString()));
      body.append(tr);
    }
    $("jobs").hidden = jobs.length === 0;
    $("no-jobs").hidden = jobs.length > 0;
    const more = jobs.length - JOBS_SHOWN;
    $("more-jobs").hidden = more <= 0;
    $("more-jobs").textContent = more > 0 ? "and " + plural(more, "older job") : "";
  }

  async function refresh() {
    clearTimeout(state.timer);
    const pipeline = state.pipeline;
    try {
      if (!document.hidden) {
        const base = "pipelines/" + encodeURIComponent(pipeline);
        const [stats, jobs] = await Promise.all([api(base + "/stats"), api(base + "/jobs")]);
        if (pipeline !== state.pipeline) return;
        showFigures(stats);
        showJobs(jobs.jobs);
        state.refreshes += 1;
        document.body.dataset.refreshes = String(state.refreshes);
        setStatus("updated " + new Date(stats.at_ms).toLocaleTimeString());
      }
    } catch (err) {
      setStatus(err.message, true);
    }
    state.timer = setTimeout(refresh, REFRESH_MS);
  }

  // -- request search ----------------------------------------------------------------
  function hopLabel(hop) {
    if (hop.role === "step") return hop.step;
    return hop.role;
  }

  function hopKind(hop) {
    if (hop.error) return "error";
    if (hop.skipped) return "skipped";
    return hop.role === "inputs" ? "request" : "result";
  }

  function highlight(ids) {
    for (const g of document.querySelectorAll("#dag .node")) {
      g.classList.toggle("hit", ids.has(g.dataset.id));
    }
    for (const g of document.querySelectorAll("#dag [data-from]")) {
      const path = g.querySelector("path");
      path.classList.toggle("hit", ids.has(g.dataset.from) && ids.has(g.dataset.to));
    }
  }

  async function search(id, since) {
    const out = $("trace");
    out.replaceChildren(el("p", { class: "muted" }, "searching…"));
    const params = new URLSearchParams();
    if (since) params.set("since", since);
    if (showValues()) params.set("values", "1");
    const query = params.toString() ? "?" + params.toString() : "";
    const url = new URL(window.location.href);
    url.searchParams.set("request", id);
    if (showValues()) url.searchParams.set("values", "1");
    else url.searchParams.delete("values");
    window.history.replaceState(null, "", url);
    try {
      const trace = await api("pipelines/" + encodeURIComponent(state.pipeline) +
        "/requests/" + encodeURIComponent(id) + query);
      showTrace(trace);
    } catch (err) {
      highlight(new Set());
      out.replaceChildren(el("p", { class: "bad" }, err.message));
    }
  }

  function showTrace(trace) {
    const out = $("trace");
    out.replaceChildren(el("p", { class: "trace-head" },
      "request " + trace.request_id + ": " + trace.hops.length + " records over " +
      ms(trace.elapsed_ms) + " (partition " + trace.partition + ")"));
    const list = el("ol", { class: "hops" });
    const ids = new Set();
    for (const hop of trace.hops) {
      ids.add(hop.role === "step" ? hop.step : hop.role);
      if (hop.error && hop.error.step) ids.add(hop.error.step);
      const kind = hopKind(hop);
      const li = el("li", { "data-role": hop.role, "data-step": hop.step || "" });
      const head = el("div", { class: "hop-head" });
      head.append(
        el("span", { class: "muted" }, clock(hop.time) + " "),
        el("span", { class: "muted" },
          hop.since_previous_ms === null ? "" : "+" + hop.since_previous_ms + " ms "),
        el("b", {}, hopLabel(hop) + " "),
        el("span", { class: "badge " + kind }, kind),
        hop.replayed ? el("span", { class: "badge replayed" }, "replayed") : "",
        el("span", { class: "muted small" }, " " + hop.topic + "[" + hop.partition + "]@" + hop.offset)
      );
      li.append(head);
      if (hop.tensors && hop.tensors.length) {
        const text = hop.tensors.map((t) => t.name + " " + t.datatype + " [" + t.shape.join(",") +
          "] " + (t.head === undefined ? t.digest
            : "= " + t.head.join(", ") + (t.size > t.head.length ? ", …" : ""))).join("; ");
        li.append(el("div", { class: "tensors" }, clip(text, 400)));
      }
      if (hop.error) {
        li.append(el("div", { class: "bad small" },
          hop.error.code + " in " + hop.error.step + ": " + clip(hop.error.message, 300)));
      }
      list.append(li);
    }
    out.append(list);
    highlight(ids);
  }

  // -- start -------------------------------------------------------------------------
  async function choose(pipeline) {
    state.pipeline = pipeline;
    const url = new URL(window.location.href);
    url.searchParams.set("pipeline", pipeline);
    window.history.replaceState(null, "", url);
    const graph = await api("pipelines/" + encodeURIComponent(pipeline) + "/graph");
    state.graph = graph;
    $("meta").textContent = "version " + graph.version + " · " + graph.guarantee + " · " +
      graph.partitions + " partitions · " + graph.nodes.filter((n) => n.kind === "step").length +
      " steps";
    drawGraph(graph);
    await refresh();
  }

  async function start() {
    const params = new URLSearchParams(window.location.search);
    let pipelines;
    try {
      const settings = await api("settings");
      $("values-switch").hidden = !settings.show_values;
      // The address keeps the switch, as it keeps the search: a shared link shows the same.
      $("show-values").checked = settings.show_values && params.get("values") === "1";
      pipelines = await api("pipelines");
    } catch (err) {
      setStatus(err.message, true);
      return;
    }
    if (!pipelines.length) {
      setStatus("this server runs no pipeline");
      return;
    }
    const select = $("pipeline");
    for (const p of pipelines) select.append(el("option", { value: p.name }, p.name));
    const wanted = params.get("pipeline");
    select.value = pipelines.some((p) => p.name === wanted) ? wanted : pipelines[0].name;
    select.addEventListener("change", () => {
      $("trace").replaceChildren();
      choose(select.value).catch((err) => setStatus(err.message, true));
    });
    $("search").addEventListener("submit", (event) => {
      event.preventDefault();
      search($("request-id").value.trim(), $("since").value.trim());
    });
    $("show-values").addEventListener("change", () => {
      const id = $("request-id").value.trim();
      if (id && $("trace").childElementCount) search(id, $("since").value.trim());
    });
    try {
      await choose(select.value);
    } catch (err) {
      setStatus(err.message, true);
      return;
    }
    const request = params.get("request");
    if (request) {
      $("request-id").value = request;
      await search(request, params.get("since") || "");
    }
  }

  start();
})();
