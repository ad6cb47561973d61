// anbo station console: renders /api/v1/status snapshots pushed by Server-Sent Events.
"use strict";
(function () {
  const T = JSON.parse(document.getElementById("messages").textContent);
  const STALE_AFTER_MS = 5000;
  let history = {}; // target -> name -> [[t, v], ...]
  let step = 5, maxPoints = 180, lastUpdate = 0;

  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  };
  const fmtDur = (s) => {
    s = Math.max(0, Math.floor(s));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
    return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
  };
  const fmtTime = (t) => new Date(t * 1000).toLocaleTimeString();
  const fmtVal = (name, v) => {
    if (v === null || v === undefined) return "–";
    if (typeof v === "string") return v;
    if (name === "lock") return v ? "✓" : "✗";
    if (name.startsWith("ber")) return v.toExponential(1);
    const unit = name.endsWith("_dbuv") ? " dBµV" : name.endsWith("_dbfs") ? " dBFS" : name.endsWith("_lufs") ? " LUFS"
      : name.endsWith("_percent") ? " %" : name.endsWith("_db") ? " dB" : name.endsWith("_w") ? " W"
      : name.endsWith("_celsius") ? " °C" : "";
    return (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(1)) + unit;
  };

  function sparkline(points) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 100 24");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("class", "spark");
    const vals = points.filter((p) => p[1] !== null);
    if (vals.length < 2) return svg;
    const t0 = points[0][0], t1 = points[points.length - 1][0] || t0 + 1;
    let lo = Math.min(...vals.map((p) => p[1])), hi = Math.max(...vals.map((p) => p[1]));
    if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
    let d = "", pen = false;
    for (const [t, v] of points) {
      if (v === null) { pen = false; continue; }
      const x = ((t - t0) / Math.max(1, t1 - t0)) * 100, y = 22 - ((v - lo) / (hi - lo)) * 20;
      d += (pen ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1);
      pen = true;
    }
    const path = document.createElementNS(ns, "path");
    path.setAttribute("d", d);
    svg.appendChild(path);
    return svg;
  }

  function record(s, now) {
    const h = (history[s.name] = history[s.name] || {});
    for (const [k, v] of Object.entries(s.values)) {
      if (!(k in h) && !(document.body.dataset.hist || "").includes(k)) continue;
      const arr = (h[k] = h[k] || []);
      if (arr.length && now - arr[arr.length - 1][0] < step) continue;
      arr.push([now, typeof v === "number" ? v : null]);
      while (arr.length > maxPoints) arr.shift();
    }
  }

  function renderTiles(snap) {
    const box = document.getElementById("tiles");
    box.replaceChildren();
    for (const s of snap.services) {
      record(s, snap.generated_at);
      const tile = el("div", "tile state-" + s.state);
      tile.id = "tile-" + s.name;
      tile.dataset.state = s.state;
      const head = el("div", "tile-head");
      head.append(el("span", "svc", s.service || s.name));
      const where = s.frequency_mhz ? s.frequency_mhz.toFixed(1) + " MHz" : s.channel || "";
      head.append(el("span", "where", [T["kind_" + s.kind] || s.kind, where].filter(Boolean).join(" · ")));
      tile.append(head);
      const st = el("div", "state");
      st.append(el("b", null, T["state_" + s.state] || s.state));
      st.append(el("span", "since", " " + T["for"] + " " + fmtDur(snap.generated_at - s.since)));
      tile.append(st);
      const vals = el("div", "values");
      for (const [k, v] of Object.entries(s.values)) {
        const cell = el("div", "val");
        cell.append(el("span", "vk", T["v_" + k] || k), el("span", "vv", fmtVal(k, v)));
        vals.append(cell);
      }
      tile.append(vals);
      const h = history[s.name] || {};
      for (const [k, pts] of Object.entries(h)) {
        const sp = el("div", "sparkrow");
        sp.append(el("span", "vk", T["v_" + k] || k), sparkline(pts));
        tile.append(sp);
      }
      if (s.alerts.length) tile.append(el("div", "tile-alerts", s.alerts.join(", ")));
      box.append(tile);
    }
  }

  function renderAlerts(snap) {
    const body = document.querySelector("#alerts tbody");
    body.replaceChildren();
    const zh = document.documentElement.lang.startsWith("zh");
    for (const a of snap.alerts) {
      const tr = el("tr", "sev-" + a.severity + (a.suppressed ? " suppressed" : ""));
      tr.dataset.alertname = a.alertname;
      tr.dataset.target = a.target;
      tr.append(el("td", null, T["sev_" + a.severity] || a.severity));
      tr.append(el("td", "mono", a.alertname + (a.state === "pending" ? " (pending)" : "")));
      tr.append(el("td", null, a.service || a.target));
      tr.append(el("td", null, (zh && a.summary_zh) || a.summary));
      tr.append(el("td", null, fmtTime(a.since) + " (" + fmtDur(snap.generated_at - a.since) + ")"));
      tr.append(el("td", null, a.suppressed ? T["reason_" + a.suppressed] || a.suppressed : ""));
      const td = el("td");
      if (a.runbook_url) {
        const link = el("a", "runbook", T.runbook);
        link.href = a.runbook_url + (zh ? "?lang=zh" : "");
        td.append(link);
      }
      tr.append(td);
      body.append(tr);
    }
    document.getElementById("no-alerts").hidden = snap.alerts.length > 0;
  }

  function renderEb(snap) {
    const box = document.getElementById("eb");
    box.replaceChildren();
    if (!snap.eb || !snap.eb.regions) { box.append(el("p", "muted", T.no_eb)); return; }
    const tbl = el("table");
    const hr = el("tr");
    for (const k of ["region", "online", "faulty", "offline"]) hr.append(el("th", null, T[k]));
    tbl.append(hr);
    for (const r of snap.eb.regions) {
      const tr = el("tr");
      const ratio = r.online_ratio === null ? "–" : (r.online_ratio * 100).toFixed(1) + " %";
      tr.append(el("td", null, r.region), el("td", null, r.online + "/" + r.total + " (" + ratio + ")"));
      // the first few faulty endpoints by name, the offline ones counted (all: /api/v1/eb/status)
      const more = r.faulty_count - r.faulty.length;
      const faulty = r.faulty.map((e) => e.name || e.id).join(", ") + (more > 0 ? " … (+" + more + ")" : "");
      tr.append(el("td", r.faulty_count ? "bad" : null, faulty || "0"));
      tr.append(el("td", r.offline ? "warn" : null, String(r.offline)));
      tbl.append(tr);
    }
    box.append(tbl);
  }

  function renderOutages(snap) {
    const box = document.getElementById("outage-list");
    const note = document.getElementById("outages-pending");
    box.replaceChildren();
    if (snap.recent_outages === null || snap.recent_outages === undefined) {
      note.textContent = T.ledger_none; note.hidden = false; return;
    }
    if (!snap.recent_outages.length) { note.textContent = T.no_outages; note.hidden = false; return; }
    note.hidden = true;
    const tbl = el("table");
    const hr = el("tr");
    for (const k of ["class", "target", "start", "duration", "cause"]) hr.append(el("th", null, T[k]));
    tbl.append(hr);
    for (const o of snap.recent_outages) {
      const tr = el("tr", "class-" + o["class"] + (o.end === null ? " ongoing" : ""));
      tr.dataset.id = o.id;
      const end = o.end === null ? snap.generated_at : o.end;
      tr.append(el("td", null, T["class_" + o["class"]] || o["class"]));
      tr.append(el("td", null, o.service || o.target));
      tr.append(el("td", null, new Date(o.start * 1000).toLocaleString()));
      tr.append(el("td", null, fmtDur(end - o.start) + (o.end === null ? " (" + T.ongoing + ")" : "")));
      tr.append(el("td", "mono", o.causes.join(", ")));
      tbl.append(tr);
    }
    box.append(tbl);
  }

  function renderMigrations(snap) {
    const box = document.getElementById("migrations");
    box.replaceChildren();
    if (!snap.migrations.length) { box.append(el("p", "muted", T.no_migrations)); return; }
    const tbl = el("table");
    const hr = el("tr");
    for (const k of ["move", "phase"]) hr.append(el("th", null, T[k]));
    tbl.append(hr);
    const phases = ["planned", "simulcast", "cutover", "done"];
    for (const m of snap.migrations) {
      const tr = el("tr");
      tr.append(el("td", null, (m.service || m.name) + ": " + (m.old || "") + " → " + (m.new || "")));
      tr.append(el("td", null, phases[m.phase] || String(m.phase)));
      tbl.append(tr);
    }
    box.append(tbl);
  }

  function render(snap) {
    lastUpdate = Date.now();
    document.getElementById("stale").hidden = true;
    document.body.classList.remove("is-stale");
    const h = snap.header;
    const b = document.getElementById("broker");
    b.textContent = h.broker.connected ? T.connected : T.disconnected;
    b.className = h.broker.connected ? "ok" : "bad";
    const am = document.getElementById("am");
    if (!h.alertmanager) { am.textContent = T.not_configured; am.className = "muted"; }
    else {
      const failing = h.alertmanager.some((d) => d.consecutive_failures > 0);
      am.textContent = failing ? T.failing : T.delivering;
      am.className = failing ? "bad" : "ok";
    }
    document.getElementById("live").textContent = T.live + " " + fmtTime(snap.generated_at);
    renderTiles(snap);
    renderAlerts(snap);
    renderOutages(snap);
    renderEb(snap);
    renderMigrations(snap);
  }

  function checkStale() {
    if (Date.now() - lastUpdate > STALE_AFTER_MS) {
      document.getElementById("stale").hidden = false;
      document.body.classList.add("is-stale");
    }
  }

  async function loadHistory() {
    try {
      const r = await fetch("api/v1/history");
      const j = await r.json();
      step = j.step_seconds;
      maxPoints = Math.ceil(j.span_seconds / j.step_seconds);
      history = j.series;
    } catch (e) { /* the event stream brings data anyway */ }
  }

  function connect() {
    const es = new EventSource("api/v1/events");
    es.addEventListener("status", (ev) => render(JSON.parse(ev.data)));
    es.onerror = () => {
      // EventSource retries by itself (retry: 1000); after a restart the history is reloaded.
      if (es.readyState === EventSource.CLOSED) setTimeout(connect, 1000);
    };
    es.onopen = () => { loadHistory(); };
  }

  document.body.dataset.hist = "rf_level_dbuv audio_rms_dbfs mer_db forward_power_w";
  setInterval(checkStale, 1000);
  loadHistory().then(connect);
})();
