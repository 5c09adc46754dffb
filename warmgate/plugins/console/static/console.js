// The warmgate console: reads the gateway's public API (/functions, /pricing, /usage,
// /hardware/*) and /console/api/*, and draws a form per pipeline from its spec. Plain JavaScript,
// no build step, nothing fetched from anywhere but the gateway.
"use strict";
(() => {
  const KEY = "warmgate.apiKey"; // sessionStorage only: the key is gone when the tab closes
  const state = { gateway: null, forms: [], functions: [], prices: new Map(), usdPerWei: null, busy: 0,
    rows: new Map(), trails: new Map() };

  // ---- small helpers ------------------------------------------------------------------------
  const $ = (sel, root = document) => root.querySelector(sel);

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = value;
      else if (name === "class") node.className = value;
      else if (value === true) node.setAttribute(name, "");
      else node.setAttribute(name, value);
    }
    for (const child of children.flat()) {
      if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  const apiKey = () => sessionStorage.getItem(KEY) || "";

  function authHeaders(extra = {}) {
    const headers = new Headers(extra);
    if (apiKey()) headers.set("Authorization", `Bearer ${apiKey()}`);
    return headers;
  }

  async function getJSON(path) {
    const response = await fetch(path, { headers: authHeaders(), cache: "no-store" });
    const body = await response.json().catch(() => null);
    return { ok: response.ok, status: response.status, body };
  }

  function errorText(status, body) {
    const detail = body && body.detail;
    if (Array.isArray(detail)) return detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("\n");
    if (detail && detail.msg) return detail.msg;
    return `HTTP ${status}`;
  }

  function groupDigits(value) { // wei amounts are decimal strings, beyond a double's exact range
    const text = String(value);
    const [whole, rest] = text.split("/");
    const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return rest === undefined ? grouped : `${grouped}/${rest}`;
  }

  function fmtBytes(bytes) {
    if (bytes === null || bytes === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let value = bytes, i = 0;
    while (value >= 1024 && i < units.length - 1) { value /= 1024; i++; }
    return `${value.toFixed(i ? 1 : 0)} ${units[i]}`;
  }

  function fmtAgo(unixSeconds) {
    if (!unixSeconds) return "never";
    const seconds = Math.max(0, Date.now() / 1000 - unixSeconds);
    if (seconds < 60) return `${Math.round(seconds)} s ago`;
    if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
    return `${(seconds / 3600).toFixed(1)} h ago`;
  }

  function fmtUsd(usd) {
    if (usd === null || usd === undefined) return "–";
    return usd >= 0.01 ? `$${usd.toFixed(4)}` : `$${usd.toPrecision(3)}`;
  }

  function weiNumber(text) { // "10/3" or "42"
    const [a, b] = String(text).split("/");
    return Number(a) / (b === undefined ? 1 : Number(b));
  }

  // ---- API key ------------------------------------------------------------------------------
  function showKeyState() {
    const form = $("#key-form");
    form.hidden = !(state.gateway && state.gateway.auth);
    $("#key-state").textContent = apiKey()
      ? "key kept for this browser tab only"
      : "API keys are on: enter a key to run pipelines and read usage";
  }

  function setupKeyForm() {
    $("#key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("#key-input").value.trim();
      if (value) sessionStorage.setItem(KEY, value);
      $("#key-input").value = "";
      showKeyState();
      refreshUsage();
    });
    $("#key-forget").addEventListener("click", () => {
      sessionStorage.removeItem(KEY);
      showKeyState();
      refreshUsage();
    });
  }

  // ---- functions ----------------------------------------------------------------------------
  function functionRow(fn) {
    let row = state.rows.get(fn.name);
    if (!row) {
      row = el("tr", { "data-function": fn.name });
      for (let i = 0; i < 11; i++) row.append(el("td"));
      [5, 6, 7, 9, 10].forEach((i) => row.cells[i].classList.add("num"));
      row.cells[2].classList.add("mono");
      $("#functions-table tbody").append(row);
      state.rows.set(fn.name, row);
    }
    return row;
  }

  function noteState(fn) {
    const trail = state.trails.get(fn.name) || [];
    if (trail[trail.length - 1] !== fn.state) trail.push(fn.state);
    state.trails.set(fn.name, trail.slice(-5));
    return trail;
  }

  function renderFunctions(functions) {
    const seen = new Set();
    for (const fn of functions) {
      seen.add(fn.name);
      const row = functionRow(fn);
      row.dataset.state = fn.state;
      row.dataset.loads = fn.loads;
      const trail = noteState(fn);
      const cells = row.cells;
      cells[0].textContent = fn.name;
      cells[1].textContent = fn.pipeline;
      cells[2].textContent = fn.model_id + (fn.demo ? " (demo)" : "");
      cells[3].replaceChildren(fn.executor, ...(fn.runners || []).map(runnerLine));
      const badge = el("span", { class: `badge state-${fn.state}`, text: fn.state });
      const extra = [];
      if (trail.length > 1) extra.push(el("span", { class: "trail", text: trail.join(" → ") }));
      if (fn.state === "error" && fn.last_error) extra.push(el("span", { class: "error-text", text: fn.last_error }));
      if (fn.warm) extra.push(el("span", { class: "trail", text: "kept warm" }));
      cells[4].replaceChildren(badge, ...extra);
      cells[5].textContent = fn.loads;
      cells[6].textContent = fn.requests;
      cells[7].textContent = `${fn.in_flight} / ${fn.queued}`;
      cells[8].textContent = fmtAgo(fn.last_used_at);
      cells[9].textContent = fn.load_seconds === null ? "–" : `${fn.load_seconds.toFixed(2)} s`;
      cells[10].textContent = fmtBytes(fn.memory_bytes);
    }
    for (const [name, row] of state.rows) {
      if (!seen.has(name)) { row.remove(); state.rows.delete(name); }
    }
  }

  // One runner of a routed function: where, its health, warm or cold, load, failures, cooldown.
  function runnerLine(runner) {
    const parts = [runner.state, runner.warm ? "warm" : "cold", `${runner.in_flight} in flight`,
      `${runner.requests} req`];
    if (runner.failures) parts.push(`${runner.failures} failed`);
    if (runner.price) parts.push(`${runner.price.price_per_unit} ${runner.price.currency}/unit`);
    const line = el("div", { class: "runner small", "data-runner": runner.url, "data-state": runner.state },
      el("span", { class: "mono", text: runner.url }), ` · ${parts.join(" · ")}`);
    if (runner.cooldown_until) {
      const left = Math.max(0, Math.round(runner.cooldown_until - Date.now() / 1000));
      line.append(el("span", { class: "error-text", text: ` cooling down ${left} s` }));
    }
    if (runner.last_error && runner.state !== "OK" && runner.state !== "IDLE") {
      line.append(el("span", { class: "error-text", text: ` ${runner.last_error}` }));
    }
    return line;
  }

  async function pollFunctions() {
    let delay = 1000;
    try {
      const [functions, health] = await Promise.all([getJSON("/functions"), getJSON("/health")]);
      if (functions.ok) {
        state.functions = functions.body.functions;
        renderFunctions(state.functions);
        updateModelLists();
        if (state.functions.some((f) => f.state === "loading" || f.state === "unloading")) delay = 250;
      }
      if (health.ok) {
        const badge = $("#health");
        badge.textContent = `health ${health.body.status}`;
        badge.className = `badge state-${health.body.status}`;
      }
      $("#functions-updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    } catch (error) {
      $("#functions-updated").textContent = `gateway unreachable (${error.message}); retrying`;
    }
    if (state.busy) delay = 250; // a request from this page may be loading a model: watch closely
    setTimeout(pollFunctions, delay);
  }

  // ---- live video sessions ------------------------------------------------------------------
  async function refreshLive() {
    const tbody = $("#live-table tbody");
    const result = await getJSON("/live/sessions").catch(() => null);
    if (!result || !result.ok) {
      const why = result ? errorText(result.status, result.body) : "no answer from /live/sessions";
      tbody.replaceChildren(el("tr", {}, el("td", { colspan: 8, class: "muted", text: why })));
      return;
    }
    const sessions = result.body.sessions;
    if (!sessions.length) {
      tbody.replaceChildren(el("tr", {}, el("td", { colspan: 8, class: "muted", text: "none yet" })));
      return;
    }
    tbody.replaceChildren(...sessions.map((s) => {
      const state = [el("span", { class: `badge state-${s.state}`, text: s.state })];
      if (s.last_error) state.push(el("span", { class: "error-text", text: s.last_error }));
      return el("tr", { "data-session": s.id, "data-state": s.state },
        el("td", { class: "mono", text: s.id }), el("td", { text: s.pipeline }),
        el("td", { text: `${s.width}×${s.height}` }), el("td", {}, ...state),
        el("td", { class: "num", text: `${s.frames_in} / ${s.frames_out} / ${s.frames_dropped}` }),
        el("td", { class: "num", text: `${s.fps_in} / ${s.fps_out}` }),
        el("td", { class: "num", text: s.latency_ms === null ? "–" : `${s.latency_ms} ms` }),
        el("td", { class: "num", text: groupDigits(s.wei) }));
    }));
  }

  // ---- prices and usage ---------------------------------------------------------------------
  async function refreshPrices() {
    const tbody = $("#prices-table tbody");
    const result = await getJSON("/pricing").catch(() => null);
    if (!result || !result.ok) {
      tbody.replaceChildren(el("tr", {}, el("td", { colspan: 5, class: "muted",
        text: result ? errorText(result.status, result.body) : "no answer from /pricing" })));
      return;
    }
    state.prices = new Map(result.body.functions.map((p) => [p.name, p]));
    const rows = result.body.functions.map((p) => {
      let configured = "free (no price set)";
      if (p.price_per_unit !== null) {
        const per = p.pixels_per_unit && p.pixels_per_unit > 1 ? `${groupDigits(p.pixels_per_unit)} ` : "";
        configured = `${groupDigits(p.price_per_unit)} ${p.currency} per ${per}${p.unit}`;
      }
      if (p.usd_per_unit !== null && p.wei_per_unit !== null && state.usdPerWei === null) {
        state.usdPerWei = p.usd_per_unit / weiNumber(p.wei_per_unit);
      }
      return el("tr", { "data-function": p.name }, el("td", { text: p.name }), el("td", { text: p.unit }),
        el("td", { text: configured }),
        el("td", { class: "num", text: p.wei_per_unit === null ? "–" : groupDigits(p.wei_per_unit) }),
        el("td", { class: "num", text: fmtUsd(p.usd_per_unit) }));
    });
    tbody.replaceChildren(...rows);
  }

  async function refreshUsage() {
    const box = $("#usage");
    if (state.gateway && !state.gateway.ledger) {
      box.replaceChildren(el("p", { class: "muted", text: "The usage ledger is off (pricing.ledger: off)." }));
      return;
    }
    if (state.gateway && state.gateway.auth && !apiKey()) {
      box.replaceChildren(el("p", { class: "muted", text: "Enter an API key above to see usage." }));
      return;
    }
    const result = await getJSON("/usage").catch(() => null);
    if (!result || !result.ok) {
      box.replaceChildren(el("p", { class: "failure",
        text: result ? errorText(result.status, result.body) : "no answer from /usage" }));
      return;
    }
    const { usage, balance } = result.body;
    const parts = [];
    if (balance) {
      const available = balance.available_wei === null ? "no budget limit" : `${groupDigits(balance.available_wei)} wei available`;
      parts.push(el("p", { id: "balance" }, `Key ${balance.key} (${balance.name}): `, el("b", { text: available }),
        ` · spent ${groupDigits(balance.spent_wei)} wei · held by requests in flight ${groupDigits(balance.held_wei)} wei`));
    }
    if (!usage.length) {
      parts.push(el("p", { class: "muted", text: "No priced requests recorded yet." }));
    } else {
      let requests = 0, failed = 0, wei = 0n, tokens = 0;
      const rows = usage.map((u) => {
        requests += u.requests; failed += u.failed; wei += BigInt(u.wei);
        tokens += u.prompt_tokens + u.completion_tokens;
        return el("tr", {}, el("td", { class: "mono", text: u.key || "–" }), el("td", { text: u.function }),
          el("td", { class: "num", text: u.requests }), el("td", { class: "num", text: u.failed }),
          el("td", { class: "num", text: groupDigits(u.units) }), el("td", { class: "num", text: groupDigits(u.wei) }),
          el("td", { class: "num", text: u.prompt_tokens + u.completion_tokens }));
      });
      const usd = state.usdPerWei === null ? "" : ` (≈ ${fmtUsd(Number(wei) * state.usdPerWei)})`;
      rows.push(el("tr", { class: "total" }, el("td", { text: "total" }), el("td"),
        el("td", { class: "num", text: requests }), el("td", { class: "num", text: failed }), el("td"),
        el("td", { class: "num", text: groupDigits(wei.toString()) + usd }), el("td", { class: "num", text: tokens })));
      parts.push(el("table", { id: "usage-table" },
        el("thead", {}, el("tr", {}, ...["key", "function", "requests", "failed", "units", "wei", "tokens"]
          .map((h, i) => el("th", { class: i > 1 ? "num" : null, text: h })))),
        el("tbody", {}, rows)));
    }
    box.replaceChildren(...parts);
  }

  // ---- hardware -----------------------------------------------------------------------------
  async function refreshHardware() {
    const box = $("#hardware-body");
    try {
      const [info, stats, gateway] = await Promise.all([getJSON("/hardware/info"), getJSON("/hardware/stats"),
        getJSON("/console/api/gateway")]);
      const parts = [];
      const gpus = info.ok ? Object.entries(info.body.gpu_info) : [];
      const usage = stats.ok ? stats.body.gpu_stats : {};
      if (gpus.length) {
        parts.push(el("table", { id: "gpu-table" },
          el("thead", {}, el("tr", {}, ...["GPU", "name", "compute capability", "memory used / total",
            "compute", "memory bandwidth"].map((h) => el("th", { text: h })))),
          el("tbody", {}, gpus.map(([id, gpu]) => {
            const s = usage[id] || gpu;
            return el("tr", {}, el("td", { text: id }), el("td", { text: gpu.name }),
              el("td", { text: `${gpu.major}.${gpu.minor}` }),
              el("td", { text: `${fmtBytes(s.memory_total - s.memory_free)} / ${fmtBytes(s.memory_total)}` }),
              el("td", { text: s.utilization_compute === undefined ? "–" : `${s.utilization_compute}%` }),
              el("td", { text: s.utilization_memory === undefined ? "–" : `${s.utilization_memory}%` }));
          }))));
      } else {
        parts.push(el("p", { id: "no-gpu" }, el("b", { text: "No GPU: " }), "models run on the CPU."));
      }
      if (gateway.ok) {
        state.gateway = gateway.body;
        const host = gateway.body.host;
        const memory = host.memory_total === null ? "unknown"
          : `${fmtBytes(host.memory_total - host.memory_available)} used of ${fmtBytes(host.memory_total)}`;
        parts.push(el("table", { id: "host-table" }, el("tbody", {},
          el("tr", {}, el("th", { text: "CPU" }), el("td", { text: `${host.cpu_model} × ${host.cpu_count}` })),
          el("tr", {}, el("th", { text: "load (1, 5, 15 min)" }),
            el("td", { text: host.load_average ? host.load_average.join(", ") : "–" })),
          el("tr", {}, el("th", { text: "memory" }), el("td", { text: memory })),
          el("tr", {}, el("th", { text: "gateway peak RSS" }), el("td", { text: fmtBytes(host.process_max_rss) })),
          el("tr", {}, el("th", { text: "platform" }), el("td", { text: `${host.platform}, Python ${host.python}` })))));
      }
      box.replaceChildren(...parts);
    } catch (error) {
      box.replaceChildren(el("p", { class: "failure", text: `hardware: ${error.message}` }));
    }
  }

  // ---- forms --------------------------------------------------------------------------------
  const LONG_TEXT = /prompt|text|description|messages/;

  function fieldInput(form, field) {
    const common = { name: field.name, "data-kind": field.kind, required: field.required && field.kind !== "boolean" };
    if (field.kind === "file") {
      const accept = /image/.test(field.name) ? "image/*" : /audio/.test(field.name) ? "audio/*"
        : /video/.test(field.name) ? "video/*" : null;
      return el("input", { ...common, type: "file", accept });
    }
    if (field.kind === "boolean") return el("input", { ...common, type: "checkbox", checked: field.default === true });
    if (field.kind === "choice") {
      const select = el("select", common, field.nullable ? el("option", { value: "", text: "(none)" }) : null,
        field.choices.map((choice, i) => el("option", { value: i, text: String(choice),
          selected: JSON.stringify(choice) === JSON.stringify(field.default) })));
      return select;
    }
    if (field.kind === "integer" || field.kind === "number") {
      const bound = (inclusive, exclusive, step) => inclusive ?? (exclusive === undefined ? null
        : field.kind === "integer" ? exclusive + step : null);
      return el("input", { ...common, type: "number", value: field.default ?? "",
        step: field.multiple_of ?? (field.kind === "integer" ? 1 : "any"),
        min: bound(field.minimum, field.exclusive_minimum, 1), max: bound(field.maximum, field.exclusive_maximum, -1) });
    }
    if (field.kind === "json") {
      return el("textarea", { ...common, placeholder: "JSON" },
        field.default === null || field.default === undefined ? "" : JSON.stringify(field.default));
    }
    if (field.name === form.model_field) {
      return el("input", { ...common, type: "text", list: `models-${form.pipeline}`, value: field.default ?? "",
        placeholder: "blank: the pipeline's first function" });
    }
    if (LONG_TEXT.test(field.name)) return el("textarea", { ...common, rows: 2 }, field.default ?? "");
    return el("input", { ...common, type: "text", value: field.default ?? "", minlength: field.min_length,
      maxlength: field.max_length, pattern: field.pattern });
  }

  function fieldLabel(field, input) {
    const name = el("span", { class: "name", text: field.name }, field.required ? el("span", { class: "req", text: " *" }) : null);
    const help = [field.kind, field.nullable ? "optional" : null, field.description].filter(Boolean).join(" · ");
    if (input.type === "checkbox") return el("label", {}, input, " ", name, el("span", { class: "help", text: help }));
    return el("label", {}, name, input, el("span", { class: "help", text: help }));
  }

  function readField(field, input) { // the value to send, or undefined to leave it to the server's default
    if (field.kind === "file") return input.files[0];
    if (field.kind === "boolean") return input.checked;
    if (field.kind === "choice") return input.value === "" ? undefined : field.choices[Number(input.value)];
    const text = input.value;
    if (text.trim() === "" && !field.required) return undefined;
    if (field.kind === "integer") return Number.parseInt(text, 10);
    if (field.kind === "number") return Number.parseFloat(text);
    if (field.kind === "json") {
      try { return JSON.parse(text); } catch (error) { throw new Error(`${field.name}: not valid JSON (${error.message})`); }
    }
    return text;
  }

  function requestBody(form, inputs, overrides = {}) {
    if (form.encoding === "multipart") {
      const data = new FormData();
      for (const field of form.fields) {
        if (field.name in overrides) { data.append(field.name, String(overrides[field.name])); continue; }
        const value = readField(field, inputs[field.name]);
        if (value === undefined) continue;
        data.append(field.name, value instanceof File ? value : typeof value === "object" ? JSON.stringify(value) : String(value));
      }
      return { body: data, headers: {} };
    }
    const data = {};
    for (const field of form.fields) {
      if (!inputs[field.name]) continue;
      const value = readField(field, inputs[field.name]);
      if (value !== undefined) data[field.name] = value;
    }
    return { body: JSON.stringify({ ...data, ...overrides }), headers: { "Content-Type": "application/json" } };
  }

  function updateModelLists() {
    for (const form of state.forms) {
      const list = document.getElementById(`models-${form.pipeline}`);
      if (!list) continue;
      const models = state.functions.filter((f) => f.pipeline === form.pipeline).map((f) => f.model_id);
      if (list.dataset.models === models.join("\n")) continue;
      list.dataset.models = models.join("\n");
      list.replaceChildren(...models.map((m) => el("option", { value: m })));
    }
  }

  // ---- calling a pipeline -------------------------------------------------------------------
  function callMeta(response, started, note = "") {
    const h = (name) => response.headers.get(name);
    const parts = [el("span", {}, "HTTP ", el("b", { text: response.status }))];
    const price = h("x-warmgate-price");
    if (price !== null) {
      const usd = state.usdPerWei === null ? "" : ` (≈ ${fmtUsd(Number(price) * state.usdPerWei)})`;
      parts.push(el("span", { class: "price" }, " · price ", el("b", { text: `${groupDigits(price)} wei` }),
        ` for ${groupDigits(h("x-warmgate-units") || "?")} units${usd}`));
    } else {
      parts.push(" · not priced");
    }
    const overhead = h("x-warmgate-overhead-ms");
    if (overhead !== null) {
      parts.push(el("span", { class: "overhead" }, " · gateway overhead ", el("b", { text: `${Number(overhead).toFixed(1)} ms` }),
        " (X-Warmgate-Overhead-Ms: the gateway's own time, no queue, load or model)"));
    }
    parts.push(el("span", { class: "round-trip" }, " · round trip ",
      el("b", { text: `${Math.round(performance.now() - started)} ms` }), ` (measured in this browser${note})`));
    const id = h("x-request-id");
    if (id) parts.push(el("span", { class: "mono" }, ` · ${id}`));
    return el("div", { class: "meta" }, parts);
  }

  async function send(form, body) {
    state.busy++;
    try {
      return await fetch(form.path, { method: "POST", headers: authHeaders(body.headers), body: body.body });
    } finally {
      state.busy--;
    }
  }

  async function readEvents(response, onData) { // server-sent events: calls onData(json, eventName)
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
        let event = "message";
        const data = [];
        for (const line of block.split(/\r?\n/)) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (!data.length) continue;
        const text = data.join("\n");
        if (text === "[DONE]") return;
        let parsed = text;
        try { parsed = JSON.parse(text); } catch (error) { /* not JSON: hand the text over as it is */ }
        onData(parsed, event);
      }
    }
  }

  async function runForm(form, inputs, output, button) {
    const meta = output.querySelector(".call-meta");
    const result = output.querySelector(".result");
    let body;
    try { body = requestBody(form, inputs); } catch (error) {
      meta.replaceChildren(el("div", { class: "failure", text: error.message }));
      return;
    }
    button.disabled = true;
    result.replaceChildren(el("p", { class: "muted", text: "running… (a cold function loads its model first)" }));
    meta.replaceChildren();
    const started = performance.now();
    try {
      const response = await send(form, body);
      const type = response.headers.get("content-type") || "";
      if (type.includes("text/event-stream")) {
        const pre = el("pre", { class: "stream-text" });
        result.replaceChildren(pre);
        meta.replaceChildren(callMeta(response, started, ", to the first byte"));
        await readEvents(response, (data) => { pre.append(typeof data === "string" ? data : JSON.stringify(data)); pre.append("\n"); });
        return;
      }
      const data = await response.json().catch(() => null);
      meta.replaceChildren(callMeta(response, started));
      if (!response.ok) {
        result.replaceChildren(el("p", { class: "failure", text: errorText(response.status, data) }));
        if (response.status === 401) $("#key-input").focus();
        return;
      }
      renderResult(result, data, form, output);
    } catch (error) {
      result.replaceChildren(el("p", { class: "failure", text: `request failed: ${error.message}` }));
    } finally {
      button.disabled = false;
    }
  }

  // ---- rendering results --------------------------------------------------------------------
  function media(url, caption) {
    let node;
    if (url.startsWith("data:video/")) node = el("video", { src: url, controls: true, loop: true, autoplay: true, muted: true });
    else if (url.startsWith("data:audio/")) node = el("audio", { src: url, controls: true });
    else if (url.startsWith("data:image/")) node = el("img", { src: url, alt: caption || "result" });
    else node = el("a", { href: url, download: "result", text: `download ${url.slice(5, url.search(/[;,]/))}` });
    return el("figure", {}, node, caption ? el("figcaption", { text: caption }) : null);
  }

  function mediaItem(item) {
    const notes = [];
    if (item.seed !== undefined) notes.push(`seed ${item.seed}`);
    if (item.nsfw !== undefined) notes.push(item.nsfw ? "nsfw: flagged" : "nsfw: no");
    return media(item.url, notes.join(" · "));
  }

  function shortJSON(value) { // data: URLs cut short so the JSON stays readable
    return JSON.stringify(value, (key, v) => (typeof v === "string" && v.length > 200 ? `${v.slice(0, 80)}… (${v.length} chars)` : v), 2);
  }

  function findDataUrls(value, out = []) {
    if (typeof value === "string" && value.startsWith("data:")) out.push(value);
    else if (Array.isArray(value)) value.forEach((v) => findDataUrls(v, out));
    else if (value && typeof value === "object") Object.values(value).forEach((v) => findDataUrls(v, out));
    return out;
  }

  function renderResult(container, data, form, output) {
    const parts = [];
    const shown = new Set();
    if (data && Array.isArray(data.images)) {
      data.images.forEach((item) => { if (item && item.url) { parts.push(mediaItem(item)); shown.add(item.url); } });
    }
    if (data && Array.isArray(data.frames)) {
      data.frames.flat().forEach((item) => { if (item && item.url) { parts.push(mediaItem(item)); shown.add(item.url); } });
    }
    if (data && data.audio && typeof data.audio.url === "string") { parts.push(media(data.audio.url)); shown.add(data.audio.url); }
    if (data && typeof data.text === "string") parts.push(el("p", { class: "text-result", text: data.text || "(empty text)" }));
    if (data && Array.isArray(data.chunks) && data.chunks.length) {
      parts.push(el("table", { class: "transcript" }, el("tbody", {}, data.chunks.map((chunk) => {
        const [start, end] = chunk.timestamp || [];
        const time = (t) => (t === null || t === undefined ? "…" : `${Number(t).toFixed(2)} s`);
        return el("tr", {}, el("td", { text: `${time(start)} – ${time(end)}` }), el("td", { text: chunk.text }));
      }))));
    }
    if (data && typeof data.masks === "string" && form.widget === "points") {
      const summary = output.points ? output.points.showMasks(data.masks, data.scores) : null;
      if (summary) parts.push(el("p", { class: "mask-summary", text: summary }));
    }
    findDataUrls(data).filter((url) => !shown.has(url)).forEach((url) => parts.push(media(url)));
    parts.push(el("details", { open: parts.length === 0 }, el("summary", { text: "response JSON" }),
      el("pre", { text: shortJSON(data) })));
    container.replaceChildren(...parts);
  }

  // ---- segment anything: click points on the picture, see the mask over it ------------------
  function pointsWidget(form, inputs) {
    const fileField = form.fields.find((f) => f.kind === "file");
    const picture = el("canvas", { class: "picture", width: 320, height: 180 });
    const overlay = el("canvas", { class: "overlay", width: 320, height: 180 });
    const stage = el("div", { class: "points-stage", title: "click: foreground point · shift-click or right-click: background" },
      picture, overlay);
    const help = el("p", { class: "muted small", text: "Choose an image, then click on it: a click adds a foreground point, shift-click or right-click a background one." });
    const clear = el("button", { type: "button", text: "Clear points" });
    const widget = { element: el("div", { class: "points" }, help, stage, el("div", {}, clear)), points: [], mask: null };

    function draw() {
      const ctx = overlay.getContext("2d");
      ctx.clearRect(0, 0, overlay.width, overlay.height);
      if (widget.mask) ctx.putImageData(widget.mask, 0, 0);
      const radius = Math.max(4, overlay.width / 100);
      for (const p of widget.points) {
        ctx.beginPath();
        ctx.arc(p.x, p.y, radius, 0, 2 * Math.PI);
        ctx.fillStyle = p.label ? "#22c55e" : "#ef4444";
        ctx.fill();
        ctx.lineWidth = 2;
        ctx.strokeStyle = "#fff";
        ctx.stroke();
      }
      inputs.point_coords.value = widget.points.length ? JSON.stringify(widget.points.map((p) => [p.x, p.y])) : "";
      inputs.point_labels.value = widget.points.length ? JSON.stringify(widget.points.map((p) => p.label)) : "";
    }

    function addPoint(event, label) {
      const box = picture.getBoundingClientRect(); // border box; the picture starts inside the border
      const at = (offset, shown, size) => Math.min(size - 1, Math.max(0, Math.floor(offset * size / shown)));
      const x = at(event.clientX - box.left - picture.clientLeft, picture.clientWidth, picture.width);
      const y = at(event.clientY - box.top - picture.clientTop, picture.clientHeight, picture.height);
      widget.points.push({ x, y, label });
      draw();
    }

    inputs[fileField.name].addEventListener("change", async () => {
      const file = inputs[fileField.name].files[0];
      if (!file) return;
      const bitmap = await createImageBitmap(file);
      for (const canvas of [picture, overlay]) { canvas.width = bitmap.width; canvas.height = bitmap.height; }
      picture.getContext("2d").drawImage(bitmap, 0, 0);
      widget.points = [];
      widget.mask = null;
      draw();
    });
    stage.addEventListener("click", (event) => addPoint(event, event.shiftKey ? 0 : 1));
    stage.addEventListener("contextmenu", (event) => { event.preventDefault(); addPoint(event, 0); });
    clear.addEventListener("click", () => { widget.points = []; widget.mask = null; draw(); });

    widget.showMasks = (masksText, scoresText) => { // the runner's arrays: Python list text
      const masks = JSON.parse(masksText.replace(/True/g, "1").replace(/False/g, "0"));
      const scores = scoresText ? JSON.parse(scoresText) : [];
      const best = masks[0]; // sorted by score, best first
      if (!best || !best.length) return "no mask returned";
      const height = best.length, width = best[0].length;
      const image = new ImageData(width, height);
      let covered = 0;
      for (let y = 0; y < height; y++) {
        for (let x = 0; x < width; x++) {
          if (best[y][x] > 0) {
            const i = (y * width + x) * 4;
            image.data.set([37, 99, 235, 128], i);
            covered++;
          }
        }
      }
      if (width === overlay.width && height === overlay.height) widget.mask = image;
      draw();
      const score = scores.length ? `, score ${Number(scores[0]).toFixed(3)}` : "";
      return `best of ${masks.length} mask(s): ${covered} of ${width * height} pixels${score}`;
    };
    return widget;
  }

  // ---- chat: tokens appear as they stream --------------------------------------------------------
  function prettyJSON(text) { // the text formatted when it is one JSON object or array, else null
    const trimmed = (text || "").trim();
    if (!/^[[{]/.test(trimmed)) return null;
    try { return JSON.stringify(JSON.parse(trimmed), null, 2); } catch { return null; }
  }

  function toolCallsView(calls) { // each call as its name and its arguments, formatted when they are JSON
    return el("div", { class: "tool-calls" }, calls.map((call) => el("div", { class: "tool-call" },
      el("span", { class: "tool-name", text: call.function.name || "" }),
      el("pre", { class: "tool-arguments", text: prettyJSON(call.function.arguments) || call.function.arguments || "" }))));
  }

  function addToolCallPieces(calls, pieces) { // OpenAI's streamed pieces: id and name first, then argument fragments
    for (const piece of pieces || []) {
      const call = calls[piece.index] || (calls[piece.index] = { id: piece.id, type: "function", function: { name: "", arguments: "" } });
      if (piece.id) call.id = piece.id;
      if (piece.function && piece.function.name) call.function.name = piece.function.name;
      if (piece.function && piece.function.arguments) call.function.arguments += piece.function.arguments;
    }
  }

  function dataURL(file) { // the file as a data: URL, the form OpenAI's image_url parts take
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(new Error(`image: cannot read ${file.name}`));
      reader.readAsDataURL(file);
    });
  }

  function chatWidget(form, inputs, output) {
    const log = el("div", { class: "chat-log", "aria-live": "polite" });
    const text = el("textarea", { class: "chat-text", placeholder: "Message", rows: 2 });
    const sendButton = el("button", { class: "primary", type: "button", text: "Send" });
    const clear = el("button", { type: "button", text: "New chat" });
    const meta = el("div", { class: "call-meta" });
    const tools = el("textarea", { class: "chat-tools", rows: 3, placeholder:
      'Tools: a JSON array, e.g. [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]' });
    const jsonOutput = el("input", { type: "checkbox", class: "chat-json" });
    const image = el("input", { type: "file", accept: "image/*", class: "chat-image" });
    const openaiOptions = el("details", { class: "chat-openai" },
      el("summary", { text: "Tools, JSON output and images (sent as OpenAI chat to /v1/chat/completions)" }), tools,
      el("label", {}, jsonOutput, " JSON output (response_format json_object)"),
      el("label", {}, " Image for the next message (a vision-language model, e.g. warmgate-demo/tiny-vision-chat): ", image));
    const messages = [];
    output.append(log, el("div", { class: "chat-input" }, text, sendButton, clear), openaiOptions, meta);
    clear.addEventListener("click", () => { messages.length = 0; log.replaceChildren(); meta.replaceChildren(); });
    text.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); sendButton.click(); }
    });

    sendButton.addEventListener("click", async () => {
      const content = text.value.trim();
      if (!content) return;
      let body, target = form, picture = null, pushed = false;
      const streams = form.fields.some((f) => f.name === "stream");
      try {
        if (image.files.length) picture = await dataURL(image.files[0]);
        // an image goes as OpenAI content parts: text, then the picture as a data: URL
        messages.push({ role: "user", content: picture ? [{ type: "text", text: content },
          { type: "image_url", image_url: { url: picture } }] : content });
        pushed = true;
        const extra = {};
        if (tools.value.trim()) {
          try { extra.tools = JSON.parse(tools.value); } catch (error) { throw new Error(`tools: not JSON: ${error.message}`); }
        }
        if (jsonOutput.checked) extra.response_format = { type: "json_object" };
        // /llm has neither tools, JSON output nor images: a conversation that uses one goes to OpenAI chat
        if (Object.keys(extra).length || messages.some((m) => Array.isArray(m.content))) target = { ...form, path: "/v1/chat/completions" };
        body = requestBody(form, inputs, { messages, ...(streams ? { stream: true } : {}), ...extra });
      } catch (error) {
        if (pushed) messages.pop(); // an image that could not be read left the conversation as it was
        meta.replaceChildren(el("div", { class: "failure", text: error.message }));
        return;
      }
      text.value = "";
      image.value = "";
      log.append(el("div", { class: "msg user", text: content },
        picture ? el("img", { class: "chat-picture", src: picture, alt: "sent image" }) : null));
      const reply = el("div", { class: "msg assistant", "data-chunks": 0 });
      log.append(reply);
      sendButton.disabled = true;
      const started = performance.now();
      let firstToken = null, usage = null, answer = "";
      const calls = [];
      const showCalls = () => {
        reply.querySelector(".tool-calls")?.remove();
        reply.append(toolCallsView(calls.filter(Boolean)));
      };
      try {
        const response = await send(target, body);
        const type = response.headers.get("content-type") || "";
        if (!response.ok) {
          const data = await response.json().catch(() => null);
          reply.classList.add("failure");
          reply.textContent = errorText(response.status, data);
          messages.pop();
          meta.replaceChildren(callMeta(response, started));
          return;
        }
        if (type.includes("text/event-stream")) {
          await readEvents(response, (chunk, event) => {
            if (event === "error" || (chunk && (chunk.error || (chunk.detail && chunk.detail.msg)))) {
              reply.append(el("span", { class: "failure", text: `\n${errorText(500, chunk.detail ? chunk : { detail: chunk.error })}` }));
              return;
            }
            const choice = chunk && chunk.choices && chunk.choices[0];
            const delta = choice ? (choice.delta && choice.delta.content) || (choice.message && choice.message.content) || "" : "";
            if (choice && choice.delta && choice.delta.tool_calls) {
              if (firstToken === null) firstToken = performance.now() - started;
              addToolCallPieces(calls, choice.delta.tool_calls);
              showCalls();
            }
            if (delta) {
              if (firstToken === null) firstToken = performance.now() - started;
              answer += delta;
              reply.append(delta);
              reply.dataset.chunks = Number(reply.dataset.chunks) + 1;
              log.scrollTop = log.scrollHeight;
            }
            if (chunk && chunk.usage && chunk.usage.completion_tokens) usage = chunk.usage;
          });
        } else {
          const data = await response.json();
          answer = data.choices[0].message.content || "";
          reply.textContent = answer;
          calls.push(...(data.choices[0].message.tool_calls || []));
          if (calls.length) showCalls();
          usage = data.usage;
        }
        const formatted = prettyJSON(answer);
        if (formatted !== null) { // JSON output shown formatted; the conversation keeps the text as sent
          reply.querySelectorAll(":scope > :not(.tool-calls)").forEach((node) => node.remove());
          for (const node of [...reply.childNodes]) if (node.nodeType === Node.TEXT_NODE) node.remove();
          reply.prepend(el("pre", { class: "json", text: formatted }));
        }
        const toolCalls = calls.filter(Boolean);
        messages.push({ role: "assistant", content: answer, ...(toolCalls.length ? { tool_calls: toolCalls } : {}) });
        reply.dataset.done = "true";
        const notes = [];
        if (firstToken !== null) notes.push(`first token after ${Math.round(firstToken)} ms`);
        if (usage) notes.push(`${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion tokens`);
        meta.replaceChildren(callMeta(response, started, ", to the last token"),
          notes.length ? el("div", { class: "meta", text: notes.join(" · ") }) : null);
      } catch (error) {
        reply.append(el("span", { class: "failure", text: `request failed: ${error.message}` }));
      } finally {
        sendButton.disabled = false;
      }
    });
  }

  function buildForm(form) {
    const panel = el("div", { class: "pipeline-form", "data-pipeline": form.pipeline, hidden: true, role: "tabpanel" });
    const fields = el("form", { class: "fields", "data-pipeline": form.pipeline });
    const output = el("div", { class: "output" });
    const where = `POST ${form.path} · ${form.encoding} · billed per ${form.price_unit} · plugin ${form.plugin || "?"}`;
    fields.append(el("p", {}, el("b", { text: form.summary })), el("p", { class: "muted small", text: where }));
    if (form.description) fields.append(el("p", { class: "muted small", text: form.description }));
    fields.append(el("datalist", { id: `models-${form.pipeline}` }));
    const inputs = {};
    for (const field of form.fields) {
      if (form.widget === "chat" && (field.name === "messages" || field.name === "stream")) continue;
      inputs[field.name] = fieldInput(form, field);
      fields.append(fieldLabel(field, inputs[field.name]));
    }
    if (form.widget === "chat") {
      chatWidget(form, inputs, output);
    } else {
      if (form.widget === "points") {
        output.points = pointsWidget(form, inputs);
        output.append(output.points.element);
      }
      const run = el("button", { class: "primary", type: "submit", text: "Run" });
      fields.append(run);
      output.append(el("div", { class: "call-meta" }), el("div", { class: "result" }));
      fields.addEventListener("submit", (event) => { event.preventDefault(); runForm(form, inputs, output, run); });
    }
    panel.append(fields, output);
    return panel;
  }

  function selectForm(pipeline) {
    for (const tab of document.querySelectorAll("#pipeline-tabs button")) {
      tab.setAttribute("aria-selected", String(tab.dataset.pipeline === pipeline));
    }
    for (const panel of document.querySelectorAll(".pipeline-form")) panel.hidden = panel.dataset.pipeline !== pipeline;
  }

  async function loadForms() {
    const result = await getJSON("/console/api/forms");
    if (!result.ok) {
      $("#forms").replaceChildren(el("p", { class: "failure", text: errorText(result.status, result.body) }));
      return;
    }
    state.forms = result.body.forms;
    const tabs = state.forms.map((form) => {
      const tab = el("button", { type: "button", role: "tab", "data-pipeline": form.pipeline, text: form.pipeline });
      tab.addEventListener("click", () => selectForm(form.pipeline));
      return tab;
    });
    $("#pipeline-tabs").replaceChildren(...tabs);
    $("#forms").replaceChildren(...state.forms.map(buildForm));
    if (!state.forms.length) $("#forms").append(el("p", { class: "muted", text: "No pipelines are installed." }));
    else selectForm(state.forms[0].pipeline);
    updateModelLists();
  }

  async function start() {
    setupKeyForm();
    const gateway = await getJSON("/console/api/gateway").catch(() => null);
    if (gateway && gateway.ok) {
      state.gateway = gateway.body;
      $("#version").textContent = `v${gateway.body.version}`;
    }
    showKeyState();
    await loadForms();
    pollFunctions();
    const every = (fn, ms) => { fn(); setInterval(fn, ms); };
    every(async () => { await refreshPrices(); await refreshUsage(); }, 5000);
    every(refreshHardware, 5000);
    every(refreshLive, 2000);
    document.body.dataset.ready = "true";
  }

  document.addEventListener("DOMContentLoaded", start);
})();
