// The convolution page: draws the padded input, the filters and the output, slides the
// window, and writes out the inner product. The first numbers come from cnnlab's conv2d
// (embedded as JSON); after a field changes the page recomputes the convolution itself.
(function () {
  "use strict";

  const data = JSON.parse(document.getElementById("cnnlab-data").textContent);
  const $ = (id) => document.getElementById(id);

  const LIMITS = {
    height: [1, 32], width: [1, 32], depth: [1, 4], filters: [1, 4],
    size: [1, 9], stride: [1, 8], padding: [0, 4],
  };

  const state = {
    input: data.input,            // C x H x W, before padding
    weight: data.weight,          // F x C x K x K
    bias: data.bias,              // F
    stride: data.config.stride,
    padding: data.config.padding,
    output: data.output,          // F x OH x OW
    fromPython: true,
    integers: data.integers !== false,
    seed: 1,
    pos: 0,
    timer: null,
  };

  // ------------------------------------------------------------------ arithmetic

  function fmt(v) {
    if (v === null || v === undefined) return "";
    if (Number.isInteger(v)) return String(v);
    return String(Number(v.toPrecision(4)));
  }

  // A sum as people write it: "1 + 4 - 1", never "1 + 4 + -1".
  function sumText(values) {
    return values.map((v, i) => {
      const t = fmt(v);
      if (i === 0) return t;
      return t.startsWith("-") ? `- ${t.slice(1)}` : `+ ${t}`;
    }).join(" ");
  }

  function dims() {
    const C = state.input.length, H = state.input[0].length, W = state.input[0][0].length;
    const F = state.weight.length, K = state.weight[0][0].length;
    return { C, H, W, F, K, S: state.stride, P: state.padding };
  }

  function outSize(n, k, s, p) {
    const span = n - k + 2 * p;
    return { exact: span / s + 1, value: Math.floor(span / s) + 1, dropped: span % s, span };
  }

  function padded() {
    const { H, W, P } = dims();
    return state.input.map((ch) => {
      const rows = [];
      for (let i = 0; i < H + 2 * P; i++) {
        const row = [];
        for (let j = 0; j < W + 2 * P; j++) {
          const r = i - P, c = j - P;
          row.push(r >= 0 && r < H && c >= 0 && c < W ? ch[r][c] : 0);
        }
        rows.push(row);
      }
      return rows;
    });
  }

  function convolve() {
    const { C, F, K, S } = dims();
    const xp = padded();
    const oh = outSize(state.input[0].length, K, S, state.padding).value;
    const ow = outSize(state.input[0][0].length, K, S, state.padding).value;
    const out = [];
    for (let f = 0; f < F; f++) {
      const map = [];
      for (let r = 0; r < oh; r++) {
        const row = [];
        for (let c = 0; c < ow; c++) {
          let s = 0;
          for (let ch = 0; ch < C; ch++)
            for (let i = 0; i < K; i++)
              for (let j = 0; j < K; j++) s += xp[ch][r * S + i][c * S + j] * state.weight[f][ch][i][j];
          row.push(roundish(s + state.bias[f]));
        }
        map.push(row);
      }
      out.push(map);
    }
    return out;
  }

  // Sums of two-decimal numbers pick up float noise (0.1 + 0.2); keep 6 significant digits.
  function roundish(v) { return Number(v.toPrecision(6)); }

  function positions() {
    const F = state.output.length, oh = state.output[0].length, ow = state.output[0][0].length;
    return { F, oh, ow, n: F * oh * ow };
  }

  function at(index) {
    const { oh, ow } = positions();
    const f = Math.floor(index / (oh * ow));
    const rest = index % (oh * ow);
    return { f, r: Math.floor(rest / ow), c: rest % ow };
  }

  // ------------------------------------------------------------------ random values

  function rng(seed) {  // mulberry32: small, seeded, good enough for a picture
    let a = seed >>> 0;
    return function () {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  function fill(shape, draw) {
    if (shape.length === 0) return draw();
    const out = [];
    for (let i = 0; i < shape[0]; i++) out.push(fill(shape.slice(1), draw));
    return out;
  }

  function randomValues(C, H, W, F, K) {
    const u = rng(state.seed++);
    const int = (lo, hi) => () => lo + Math.floor(u() * (hi - lo + 1));
    const real = (lo, hi) => () => Math.round((lo + u() * (hi - lo)) * 100) / 100;
    state.input = fill([C, H, W], state.integers ? int(0, 2) : real(0, 1));
    state.weight = fill([F, C, K, K], state.integers ? int(-1, 1) : real(-1, 1));
    state.bias = fill([F], state.integers ? int(0, 1) : real(-0.5, 0.5));
  }

  // ------------------------------------------------------------------ drawing

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function gridOf(matrix, cellClass, decorate) {
    const g = el("div", "grid");
    g.style.gridTemplateColumns = `repeat(${matrix[0].length}, var(--cell))`;
    matrix.forEach((row, i) => row.forEach((v, j) => {
      const c = el("div", "cell " + cellClass, fmt(v));
      if (decorate) decorate(c, i, j);
      g.appendChild(c);
    }));
    return g;
  }

  // Three bands, top to bottom: the padded input, the filters, the output.
  function band(title, note, parent, cls) {
    const b = el("div", "band " + cls);
    const h = el("h3", "", title + " ");
    h.appendChild(el("small", "", note));
    b.appendChild(h);
    const body = el("div", "band-body");
    b.appendChild(body);
    (parent || $("volumes")).appendChild(b);
    return body;
  }

  function slice(name, grid) {
    const s = el("div", "slice");
    s.appendChild(el("div", "name", name));
    s.appendChild(grid);
    return s;
  }

  function drawVolumes() {
    const { C, H, W, F, K, P } = dims();
    $("volumes").textContent = "";
    const xp = padded();

    const inputs = band("Input x", `${C}\u00d7${H}\u00d7${W}, zero-padded by ${P} to ${C}\u00d7${H + 2 * P}\u00d7${W + 2 * P}`, null, "band-input");
    xp.forEach((ch, k) => {
      inputs.appendChild(slice(`x[${k}, :, :]`, gridOf(ch, "in", (c, i, j) => {
        c.dataset.ch = k; c.dataset.r = i; c.dataset.c = j;
        if (i < P || j < P || i >= H + P || j >= W + P) c.classList.add("pad");
      })));
    });

    const filters = band("Filters w", `${F} of ${C}\u00d7${K}\u00d7${K}, each with a bias b`, null, "band-filters");
    state.weight.forEach((filter, f) => {
      const v = el("div", "volume filter");
      v.dataset.f = f;
      filter.forEach((ch, k) => v.appendChild(slice(`w${f}[${k}, :, :]`, gridOf(ch, "w"))));
      const b = el("div", "slice");
      b.appendChild(el("div", "name", `b${f}`));
      const g = gridOf([[state.bias[f]]], "w bias");
      b.appendChild(g);
      v.appendChild(b);
      filters.appendChild(v);
    });

    // The output and the inner product that made the highlighted number, side by side.
    const row = el("div", "band-row");
    $("volumes").appendChild(row);
    const { oh, ow } = positions();
    const outputs = band("Output", `${F}\u00d7${oh}\u00d7${ow}: one map per filter`, row, "band-output");
    state.output.forEach((map, f) => {
      outputs.appendChild(slice(`out[${f}, :, :]`, gridOf(map, "out", (c, i, j) => {
        c.dataset.f = f; c.dataset.r = i; c.dataset.c = j;
        c.addEventListener("click", () => { stop(); state.pos = (f * oh + i) * ow + j; highlight(); });
      })));
    });
    const product = band("Inner product", "", row, "band-product");
    product.parentNode.querySelector("small").id = "cell-name";
    product.id = "product";
    product.className = "product";
  }

  function drawFormula() {
    const { H, W, K, S, P, F } = dims();
    const lines = [];
    const rows = [["H", H], ["W", W]].map(([L, n]) => [L, n, outSize(n, K, S, P)]);
    const same = H === W;
    (same ? [rows[1]] : rows).forEach(([L, n, o]) => {
      const label = same ? "H = W" : L;
      let line = `${label}: (${L} \u2212 K + 2P)/S + 1 = (${n} \u2212 ${K} + 2\u00b7${P})/${S} + 1 = ${fmt(o.exact)}`;
      if (o.dropped) line += `, rounded down to ${o.value}`;
      lines.push(line);
      if (o.dropped) lines.push(`<span class="warn">the last ${o.dropped} padded ${same ? "rows and columns" : (L === "H" ? "rows" : "columns")} fit no window and are dropped</span>`);
    });
    const oh = rows[0][2].value, ow = rows[1][2].value;
    lines.push(`output: <b id="out-size">${F}x${oh}x${ow}</b>`);
    $("formula").innerHTML = lines.join("<br>");
  }

  function highlight() {
    const { C, K, S } = dims();
    const { n } = positions();
    const { f, r, c } = at(state.pos);
    const top = r * S, left = c * S;
    document.querySelectorAll(".cell.in").forEach((e) => {
      const i = +e.dataset.r, j = +e.dataset.c;
      e.classList.toggle("win", i >= top && i < top + K && j >= left && j < left + K);
    });
    document.querySelectorAll(".volume.filter").forEach((v) => v.classList.toggle("active-filter", +v.dataset.f === f));
    document.querySelectorAll(".cell.out").forEach((e) => {
      e.classList.toggle("active", +e.dataset.f === f && +e.dataset.r === r && +e.dataset.c === c);
    });
    $("position").textContent = `position ${state.pos + 1} / ${n}: out[${f}, ${r}, ${c}]`;
    $("cell-name").textContent = `window \u2219 filter w${f}, summed over channels, plus b${f} = out[${f}, ${r}, ${c}]`;
    drawProduct(f, r, c, C, K, top, left);
  }

  function drawProduct(f, r, c, C, K, top, left) {
    const xp = padded();
    const box = $("product");
    box.textContent = "";
    const sums = [];
    for (let ch = 0; ch < C; ch++) {
      const win = xp[ch].slice(top, top + K).map((row) => row.slice(left, left + K));
      const w = state.weight[f][ch];
      const terms = [];
      let s = 0;
      for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) {
        terms.push(`${fmt(win[i][j])}\u00d7${fmt(w[i][j])}`);
        s += win[i][j] * w[i][j];
      }
      s = roundish(s);
      sums.push(s);
      const row = el("div", "row");
      row.appendChild(el("span", "ch", `channel ${ch}`));
      row.appendChild(gridOf(win, "in"));
      row.appendChild(el("span", "", "\u2219"));
      row.appendChild(gridOf(w, "w"));
      row.appendChild(el("span", "terms", `= ${terms.join(" + ")} = ${fmt(s)}`));
      box.appendChild(row);
    }
    const total = roundish(sums.reduce((a, b) => a + b, 0));
    const value = state.output[f][r][c];
    const t = el("div", "row total", `channels: ${sumText(sums)} = ${fmt(total)};  plus bias b${f} = ${fmt(state.bias[f])}  \u2192  out[${f}, ${r}, ${c}] = ${fmt(value)}`);
    t.id = "product-total";
    box.appendChild(t);
  }

  // Cells as wide as the longest number on the page (reals need more room than digits).
  function fitCells() {
    let longest = 1;
    const visit = (v) => {
      if (Array.isArray(v)) v.forEach(visit);
      else longest = Math.max(longest, fmt(v).length);
    };
    [state.input, state.weight, state.bias, state.output].forEach(visit);
    const px = Math.max(28, Math.ceil(7.5 * longest) + 10);
    document.documentElement.style.setProperty("--cell", px + "px");
  }

  function render() {
    fitCells();
    drawFormula();
    drawVolumes();
    highlight();
    const { H, W, C, F, K, S, P } = dims();
    const values = { height: H, width: W, depth: C, filters: F, size: K, stride: S, padding: P };
    for (const [k, v] of Object.entries(values)) { $("f-" + k).value = v; $("f-" + k).classList.remove("bad"); }
    $("source").textContent = state.fromPython
      ? "Numbers computed by cnnlab's conv2d."
      : "Numbers recomputed in this page.";
  }

  // ------------------------------------------------------------------ controls

  function step(delta) {
    const { n } = positions();
    state.pos = (state.pos + delta + n) % n;
    highlight();
  }

  function delay() { return 1600 / +$("f-speed").value; }

  function play() {
    if (state.timer) { stop(); return; }
    $("btn-play").classList.add("on");
    $("btn-play").textContent = "\u275A\u275A Pause";
    const tick = () => { step(1); state.timer = setTimeout(tick, delay()); };
    state.timer = setTimeout(tick, delay());
  }

  function stop() {
    if (state.timer) clearTimeout(state.timer);
    state.timer = null;
    $("btn-play").classList.remove("on");
    $("btn-play").textContent = "\u25B6 Play";
  }

  function showError(msg) {
    $("error").hidden = !msg;
    $("error").textContent = msg || "";
  }

  function readFields() {
    const v = {};
    let bad = null;
    for (const [k, [lo, hi]] of Object.entries(LIMITS)) {
      const e = $("f-" + k);
      const n = Number(e.value);
      const ok = Number.isInteger(n) && n >= lo && n <= hi;
      e.classList.toggle("bad", !ok);
      if (!ok && !bad) bad = `${k} must be a whole number from ${lo} to ${hi}`;
      v[k] = n;
    }
    if (bad) return { error: bad };
    for (const [L, n] of [["height", v.height], ["width", v.width]]) {
      if (v.size > n + 2 * v.padding) {
        $("f-size").classList.add("bad");
        return { error: `a ${v.size}\u00d7${v.size} filter does not fit the padded ${L} ${n} + 2\u00b7${v.padding} = ${n + 2 * v.padding}` };
      }
    }
    return v;
  }

  function onFieldChange() {
    const v = readFields();
    if (v.error) { showError(v.error); return; }
    showError("");
    stop();
    const d = dims();
    const reshaped = v.height !== d.H || v.width !== d.W || v.depth !== d.C ||
      v.filters !== d.F || v.size !== d.K;
    if (reshaped) randomValues(v.depth, v.height, v.width, v.filters, v.size);
    state.stride = v.stride;
    state.padding = v.padding;
    state.output = convolve();
    state.fromPython = false;
    state.pos = 0;
    render();
  }

  Object.keys(LIMITS).forEach((k) => $("f-" + k).addEventListener("change", onFieldChange));
  $("btn-random").addEventListener("click", () => {
    const d = dims();
    stop();
    randomValues(d.C, d.H, d.W, d.F, d.K);
    state.output = convolve();
    state.fromPython = false;
    render();
  });
  $("btn-next").addEventListener("click", () => { stop(); step(1); });
  $("btn-prev").addEventListener("click", () => { stop(); step(-1); });
  $("btn-first").addEventListener("click", () => { stop(); state.pos = 0; highlight(); });
  $("btn-play").addEventListener("click", play);
  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "INPUT") return;
    if (e.key === "ArrowRight") { stop(); step(1); }
    else if (e.key === "ArrowLeft") { stop(); step(-1); }
    else if (e.key === " ") { e.preventDefault(); play(); }
  });

  const start = data.cell || { filter: 0, row: 0, col: 0 };
  const { oh, ow } = positions();
  state.pos = (start.filter * oh + start.row) * ow + start.col;
  render();
})();
