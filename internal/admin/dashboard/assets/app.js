// candor dashboard: polls the admin API and redraws. Every value from the
// API reaches the page through textContent or setAttribute, never as HTML.
"use strict";

(function () {
  const POLL_MS = 1500;
  const SVG = "http://www.w3.org/2000/svg";

  // el builds an element: attrs are attributes (data-*, class...), children
  // are nodes or strings (text).
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    setAttrs(e, attrs);
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
    return e;
  }
  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    setAttrs(e, attrs);
    if (text !== undefined) e.textContent = String(text);
    return e;
  }
  function setAttrs(e, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== null && v !== undefined) e.setAttribute(k, String(v));
    }
  }
  function $(id) { return document.getElementById(id); }

  async function get(path) {
    const headers = { Accept: "application/json" };
    // With admin.token set, open the page as /dashboard#token=TOKEN: the
    // fragment never leaves the browser, and the token goes only on these
    // same-origin API calls.
    const token = new URLSearchParams(location.hash.slice(1)).get("token");
    if (token) headers.Authorization = "Bearer " + token;
    const res = await fetch(path, { cache: "no-store", headers });
    if (!res.ok) throw new Error(path + ": " + res.status);
    return res.json();
  }

  // A stable colour per cause id.
  const fixed = { total: "#3b6fd8", failures: "#c62828" };
  function color(id) {
    if (fixed[id]) return fixed[id];
    let h = 0;
    for (const ch of id) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
    return "hsl(" + (h % 360) + ", 65%, 45%)";
  }

  function clock(t) {
    const d = new Date(t);
    return isNaN(d) ? "" : d.toLocaleTimeString([], { hour12: false });
  }

  // ---- status ----------------------------------------------------------
  function drawStatus(st) {
    let s = "generation " + st.generation + " · loaded " + clock(st.loaded_at);
    if (st.last_error) s += " · last reload rejected: " + st.last_error;
    if (st.tunnels) s += " · " + st.tunnels + " tunnels";
    $("status").textContent = s;
  }

  // ---- upstreams -------------------------------------------------------
  function targetState(t) {
    if (t.drained) return "drained";
    if (t.ejected) return "ejected";
    if (!t.healthy) return "unhealthy";
    return "healthy";
  }

  function drawUpstreams(ups) {
    ups.sort((a, b) => a.name.localeCompare(b.name));
    const box = $("upstreams");
    const nodes = [];
    for (const u of ups) {
      const list = el("ul", { class: "targets" });
      for (const t of u.targets || []) {
        const state = targetState(t);
        let why = null;
        if (state === "ejected") {
          let w = "ejected" + (t.last_cause ? " after " + t.last_cause : "");
          if (t.ejected_until) w += " until " + clock(t.ejected_until);
          why = w;
        } else if (state === "unhealthy") {
          why = "failing health checks" + (t.last_cause ? ": " + t.last_cause : "");
        } else if (state === "drained") {
          why = "drained: takes no new requests";
        }
        const recent = Object.entries(t.recent_causes || {}).sort((a, b) => b[1] - a[1]);
        if (recent.length) {
          const r = "last 10 min: " + recent.map(([c, n]) => c + " ×" + n).join(", ");
          why = why ? why + " · " + r : r;
        }
        list.append(el("li", {
          class: "target", "data-upstream": u.name, "data-target": t.target, "data-state": state,
          "data-cause": t.last_cause || null,
        },
          el("span", { class: "badge" }, state),
          el("span", { class: "addr" }, t.target),
          el("span", { class: "inflight muted", title: "requests in flight" }, t.in_flight + " in flight"),
          why ? el("span", { class: "why" }, why) : null));
      }
      nodes.push(el("div", { class: "upstream", "data-upstream": u.name, "data-usable": u.usable },
        el("h3", {}, u.name, el("span", { class: "muted small" }, u.policy + " · " + u.usable + "/" + (u.targets || []).length + " usable")),
        list));
    }
    if (!nodes.length) nodes.push(el("p", { class: "muted" }, "No upstreams."));
    box.replaceChildren(...nodes);
  }

  // ---- rates -----------------------------------------------------------
  const W = 600, H = 180, L = 40, R = 8, T = 8, B = 22;

  function frame(box, max, buckets) {
    box.replaceChildren();
    const ih = H - T - B;
    const steps = ticks(max);
    for (let i = 0; i <= steps; i++) {
      const y = T + ih - (ih * i) / steps;
      box.append(svg("line", { class: "grid", x1: L, x2: W - R, y1: y, y2: y }));
      box.append(svg("text", { class: "axis", x: L - 4, y: y + 3, "text-anchor": "end" }, fmt((max * i) / steps)));
    }
    const n = buckets.length;
    for (let i = 0; i < n; i += 24) { // every 2 minutes
      const x = L + ((W - L - R) * i) / n;
      box.append(svg("text", { class: "axis", x: x, y: H - 6, "text-anchor": "start" }, clock(buckets[i].time)));
    }
  }
  function fmt(v) {
    if (v === 0) return "0";
    if (v >= 10) return Math.round(v).toString();
    return String(parseFloat(v.toPrecision(3)));
  }
  // niceMax rounds v up to 1, 2, 4 or 5 times a power of ten, so that
  // ticks(max) round grid steps divide it.
  function niceMax(v) {
    if (v <= 0) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 4, 5, 10]) if (m * p >= v * 0.9999) return m * p;
    return 10 * p;
  }
  function ticks(max) {
    const m = max / Math.pow(10, Math.floor(Math.log10(max)));
    return Math.abs(m - 5) < 1e-9 ? 5 : 4;
  }
  function legend(box, items) {
    box.replaceChildren(...items.map(([id, label]) => {
      const sw = el("span", { class: "swatch" });
      sw.style.background = color(id);
      return el("span", { class: "item", "data-series": id }, sw, label);
    }));
  }

  function drawRates(rates) {
    const bs = rates.buckets || [];
    const per = rates.interval_seconds || 5;
    const n = bs.length || 1;
    const iw = W - L - R, ih = H - T - B;
    const x = (i) => L + (iw * (i + 0.5)) / n;

    // Requests and failures per second, as lines.
    const req = $("chart-requests");
    const max1 = niceMax(Math.max(0, ...bs.map((b) => b.total / per)));
    frame(req, max1, bs);
    for (const key of ["total", "failures"]) {
      const pts = bs.map((b, i) => x(i).toFixed(1) + "," + (T + ih - (ih * (b[key] || 0)) / per / max1).toFixed(1));
      req.append(svg("polyline", { class: "series", "data-series": key, fill: "none", stroke: color(key), "stroke-width": 1.8, points: pts.join(" ") }));
    }
    const last = bs[bs.length - 1] || { total: 0, failures: 0 };
    legend($("legend-requests"), [
      ["total", "requests/s (now " + fmt(last.total / per) + ")"],
      ["failures", "gateway failures/s (now " + fmt(last.failures / per) + ")"],
    ]);

    // Failures per second by cause, as stacked bars.
    const byc = $("chart-causes");
    const totals = {};
    for (const b of bs) for (const [c, v] of Object.entries(b.by_cause || {})) totals[c] = (totals[c] || 0) + v;
    const causes = Object.keys(totals).sort((a, b) => totals[b] - totals[a] || a.localeCompare(b));
    const max2 = niceMax(Math.max(0, ...bs.map((b) => (b.failures || 0) / per)));
    frame(byc, max2, bs);
    const bw = Math.max(1, iw / n - 1);
    bs.forEach((b, i) => {
      let y = T + ih;
      for (const c of causes) {
        const v = ((b.by_cause || {})[c] || 0) / per;
        if (!v) continue;
        const h = (ih * v) / max2;
        y -= h;
        const r = svg("rect", { class: "bar", "data-cause": c, x: (L + (iw * i) / n).toFixed(1), y: y.toFixed(1), width: bw.toFixed(1), height: h.toFixed(1), fill: color(c) });
        r.append(svg("title", {}, clock(b.time) + " " + c + ": " + fmt(v) + "/s"));
        byc.append(r);
      }
    });
    if (!causes.length) {
      byc.append(svg("text", { class: "axis", x: L + iw / 2, y: T + ih / 2, "text-anchor": "middle" }, "no failures in the last 10 minutes"));
    }
    legend($("legend-causes"), causes.map((c) => [c, c + " (" + totals[c] + ")"]));
  }

  // ---- failures --------------------------------------------------------
  // Rows are kept by request id and time, so that an opened row stays
  // open across refreshes.
  const rows = new Map();

  function failureRow(f) {
    const where = [f.upstream, f.target].filter(Boolean).join(" → ");
    const body = el("div", { class: "body" },
      el("div", { class: "meta" },
        "request " + f.request_id + " · " + f.method + " " + f.path + " · phase " + f.phase +
        " · source " + f.source + (f.attempts ? " · attempts " + f.attempts : "") + " · " + new Date(f.time).toISOString()),
      f.detail ? el("h4", {}, "Detail") : null,
      f.detail ? el("p", { class: "detail" }, f.detail) : null,
      el("h4", {}, "What happened"),
      el("p", { class: "explanation" }, f.explanation),
      el("h4", {}, "What to do"),
      el("p", { class: "fix" }, f.fix));
    return el("details", {
      class: "failure", "data-cause": f.cause, "data-request-id": f.request_id,
      "data-target": f.target || null, "data-status": f.status,
    },
      el("summary", {},
        el("span", { class: "time" }, clock(f.time)),
        el("span", { class: "status" }, f.status),
        el("span", { class: "cause" }, f.cause),
        el("span", { class: "route" }, f.route ? "route " + f.route : ""),
        el("span", { class: "where muted" }, where)),
      body);
  }

  function drawFailures(list) {
    const box = $("failures");
    $("failures-count").textContent = list.length ? "(" + list.length + ")" : "";
    if (!list.length) {
      rows.clear();
      box.replaceChildren(el("p", { class: "muted empty" }, "No failures."));
      return;
    }
    const seen = new Set();
    const nodes = list.map((f) => {
      const key = f.request_id + "\u0000" + f.time + "\u0000" + f.cause;
      seen.add(key);
      let row = rows.get(key);
      if (!row) {
        row = failureRow(f);
        rows.set(key, row);
      }
      return row;
    });
    for (const k of rows.keys()) if (!seen.has(k)) rows.delete(k);
    box.replaceChildren(...nodes);
  }

  // ---- polling ---------------------------------------------------------
  async function tick() {
    const conn = $("conn");
    try {
      const [st, ups, rates, fails] = await Promise.all([get("/status"), get("/upstreams"), get("/rates"), get("/failures")]);
      drawStatus(st);
      drawUpstreams(ups || []);
      drawRates(rates || { buckets: [] });
      drawFailures(fails || []);
      conn.dataset.state = "live";
      conn.textContent = "live · " + clock(Date.now());
    } catch (e) {
      conn.dataset.state = "error";
      conn.textContent = "disconnected: " + e.message;
    } finally {
      setTimeout(tick, POLL_MS);
    }
  }
  tick();
})();
