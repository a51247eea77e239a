// The page of `siamese serve`: search by upload or by item, the latent map and pair labelling.
// Plain browser JavaScript, no build step and no external resources; the API is docs/serve.md.
"use strict";

(() => {
  const K = 9;
  const TOKEN_KEY = "siamese-serve-token";
  const UNLABELLED = "unlabelled";
  const PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
    "#393b79", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d",
    "#9edae5", "#637939",
  ];
  const GREY = "#a3a9b1";
  const METHOD_NAMES = { tsne: "t-SNE", "t-sne": "t-SNE", pca: "PCA", umap: "UMAP", mds: "MDS", isomap: "Isomap" };

  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name === "style") Object.assign(node.style, value); // CSSOM: allowed by the page's CSP, unlike style=""
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  };

  const state = {
    info: null,
    images: true, // false when the index has no item images (vectors)
    threshold: null,
  };

  // ---------------------------------------------------------------- errors

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.name = "ApiError";
      this.status = status;
    }
  }

  function showError(message) {
    $("error-text").textContent = message;
    $("error").hidden = false;
  }

  function clearError() {
    $("error-text").textContent = "";
    $("error").hidden = true;
  }

  function report(err, what) {
    const message = err && err.message ? err.message : String(err);
    const prefix = err instanceof ApiError && err.status ? `${what} failed (${err.status})` : `${what} failed`;
    showError(`${prefix}: ${message}`);
    if (!(err instanceof ApiError)) console.error(err);
  }

  // ---------------------------------------------------------------- token and requests

  let tokenPrompt = null; // {promise, resolve} while the token form is shown

  function storedToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || "";
    } catch (_) {
      return "";
    }
  }

  function askToken(refused) {
    if (!tokenPrompt) {
      let resolve;
      const promise = new Promise((r) => { resolve = r; });
      tokenPrompt = { promise, resolve };
      $("token-hint").textContent = refused ? "The server refused that token; check it and try again." : "";
      $("token-form").hidden = false;
      $("token").focus();
    }
    return tokenPrompt.promise;
  }

  function submitToken(event) {
    event.preventDefault();
    const value = $("token").value.trim();
    if (!value) return;
    try {
      sessionStorage.setItem(TOKEN_KEY, value);
    } catch (_) {
      showError("This browser does not allow session storage; the token is kept until the page is reloaded.");
      memoryToken = value;
    }
    $("token").value = "";
    $("token-form").hidden = true;
    if (tokenPrompt) {
      const { resolve } = tokenPrompt;
      tokenPrompt = null;
      resolve();
    }
  }

  let memoryToken = "";
  const currentToken = () => storedToken() || memoryToken;

  // fetch with the token; asks for the token on 401 and retries; throws ApiError with the server's message
  async function request(path, options = {}) {
    for (;;) {
      const token = currentToken();
      const headers = new Headers(options.headers || {});
      if (token) headers.set("Authorization", `Bearer ${token}`);
      let response;
      try {
        response = await fetch(path, { ...options, headers });
      } catch (err) {
        throw new ApiError(0, `network error on ${path} (${err.message}); is siamese serve still running?`);
      }
      if (response.status === 401) {
        if (currentToken() !== token) continue; // a token arrived while this request was under way
        await askToken(Boolean(token));
        continue;
      }
      if (!response.ok) {
        let message = `${response.status} ${response.statusText}`.trim();
        try {
          const body = await response.json();
          if (body && body.error) message = body.error;
          else if (body && body.detail) {
            message = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
          }
        } catch (_) {
          // not JSON: keep the status line
        }
        throw new ApiError(response.status, message);
      }
      return response;
    }
  }

  const getJSON = async (path) => (await request(path)).json();
  const postJSON = async (path, body) => (await request(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  })).json();

  // ---------------------------------------------------------------- item images
  // as blob URLs: an <img src> cannot send the Authorization header

  function releaseImage(img) {
    if (img._objectUrl) {
      URL.revokeObjectURL(img._objectUrl);
      img._objectUrl = null;
    }
  }

  function releaseImages(container) {
    for (const img of container.querySelectorAll("img")) releaseImage(img);
  }

  function setBlobImage(img, blob) {
    releaseImage(img);
    img._objectUrl = URL.createObjectURL(blob);
    img.src = img._objectUrl;
  }

  async function loadItemImage(img, id) {
    const wanted = String(id);
    img.dataset.itemId = wanted;
    try {
      const blob = await (await request(`/items/${encodeURIComponent(id)}/image`)).blob();
      if (img.dataset.itemId !== wanted) return; // replaced meanwhile
      setBlobImage(img, blob);
    } catch (err) {
      img.classList.add("broken");
      report(err, `loading the image of item ${id}`);
    }
  }

  // a clickable thumbnail of an indexed item: clicking searches by its key
  function itemThumb(item, size = "") {
    const title = `Search by ${item.key}`;
    if (!state.images) {
      return el("button", { type: "button", class: `thumb thumb-text ${size}`, title,
        onclick: () => searchByItem(item) }, el("span", { text: item.key }));
    }
    const img = el("img", { alt: item.key, width: 96, height: 96, decoding: "async" });
    loadItemImage(img, item.id);
    return el("button", { type: "button", class: `thumb ${size}`, title, onclick: () => searchByItem(item) }, img);
  }

  function labelBadge(label) {
    const text = label === null || label === undefined ? UNLABELLED : String(label);
    return el("span", { class: `label${label === null || label === undefined ? " is-unlabelled" : ""}` },
      el("span", { class: "swatch", style: { backgroundColor: colourOf(label) } }),
      el("span", { class: "label-text", text }));
  }

  const formatDistance = (d) => (typeof d === "number" && Number.isFinite(d) ? d.toPrecision(4) : String(d));

  // ---------------------------------------------------------------- header

  function renderInfo(info) {
    const parts = [];
    const add = (value, name, title) => parts.push(el("span", { class: "fact", title: title || null },
      el("strong", { text: value }), name ? ` ${name}` : ""));
    add(Number(info.count).toLocaleString("en-US"), "items");
    add(String(info.dim), "dim");
    if (info.kind) add(String(info.kind), "index", "the index's faiss structure");
    if (info.metric) {
      add(String(info.metric), "", "the distance the index uses");
      parts[parts.length - 1].prepend("metric ");
    }
    add(Number(info.labelled || 0).toLocaleString("en-US"), "labelled", "items of the index with a label");
    const classes = Array.isArray(info.classes) ? info.classes.length : info.classes;
    if (typeof classes === "number") add(String(classes), classes === 1 ? "class" : "classes");
    if (info.model_fingerprint) {
      add(String(info.model_fingerprint).slice(0, 12), "", `model fingerprint ${info.model_fingerprint}`);
      parts[parts.length - 1].prepend("model ");
      parts[parts.length - 1].querySelector("strong").classList.add("mono");
    }
    const threshold = thresholdOf(info.calibration);
    state.threshold = threshold;
    if (threshold === null) {
      parts.push(el("span", { class: "fact muted", text: "not calibrated" }));
    } else {
      add(formatDistance(threshold), "", "calibrated same/different threshold");
      parts[parts.length - 1].prepend("threshold ");
    }
    const box = $("info");
    box.replaceChildren();
    parts.forEach((part, i) => {
      if (i) box.append(el("span", { class: "sep", "aria-hidden": "true", text: "·" }));
      box.append(part);
    });
    if (info.version) box.title = `siamese ${info.version}`;
  }

  function thresholdOf(calibration) {
    if (calibration === null || calibration === undefined || calibration === false) return null;
    if (typeof calibration === "number") return calibration;
    if (typeof calibration === "object" && typeof calibration.threshold === "number") return calibration.threshold;
    return null;
  }

  // ---------------------------------------------------------------- search

  let searchSeq = 0;
  let queryUrl = null;

  function showQueryFile(file) {
    const holder = $("query").querySelector(".query-img");
    releaseImages(holder);
    if (queryUrl) URL.revokeObjectURL(queryUrl);
    queryUrl = URL.createObjectURL(file);
    const img = el("img", { alt: `uploaded ${file.name || "image"}` });
    img.addEventListener("load", () => img.classList.toggle("smooth", img.naturalWidth > 96 || img.naturalHeight > 96));
    img.addEventListener("error",
      () => holder.replaceChildren(el("span", { class: "placeholder", text: "no preview" })));
    img.src = queryUrl;
    holder.replaceChildren(img);
    $("query").classList.remove("empty");
    $("query").querySelector("figcaption").replaceChildren(
      el("span", { class: "key", text: file.name || "pasted image" }),
      el("span", { class: "muted", text: "uploaded" }));
  }

  function showQueryItem(item) {
    const holder = $("query").querySelector(".query-img");
    releaseImages(holder);
    if (queryUrl) {
      URL.revokeObjectURL(queryUrl);
      queryUrl = null;
    }
    if (state.images) {
      const img = el("img", { alt: item.key });
      loadItemImage(img, item.id);
      holder.replaceChildren(img);
    } else {
      holder.replaceChildren(el("span", { class: "key", text: item.key }));
    }
    $("query").classList.remove("empty");
    $("query").querySelector("figcaption").replaceChildren(
      el("span", { class: "key", text: item.key, title: item.key }), labelBadge(item.label));
  }

  async function runSearch(options, describe) {
    const seq = ++searchSeq;
    $("results-status").textContent = "searching…";
    $("results").setAttribute("aria-busy", "true");
    try {
      const data = await (await request("/search", options)).json();
      if (seq !== searchSeq) return;
      renderResults(data.results || [], describe);
    } catch (err) {
      if (seq !== searchSeq) return;
      $("results-status").textContent = "";
      releaseImages($("results"));
      $("results").replaceChildren(el("p", { class: "placeholder", text: "The search failed (see the error above)." }));
      map.neighbours = new Set();
      drawMap();
      report(err, "search");
    } finally {
      if (seq === searchSeq) $("results").removeAttribute("aria-busy");
    }
  }

  function searchFile(file) {
    if (!file) return;
    if (file.type && !file.type.startsWith("image/")) {
      showError(`${file.name} is not an image (${file.type}); drop or choose an image file.`);
      return;
    }
    if (!state.images) {
      showError("This index holds vectors, not images: uploads cannot be searched. Click a point on the map instead.");
      return;
    }
    showQueryFile(file);
    map.selected = null;
    drawMap();
    const form = new FormData();
    form.append("image", file, file.name || "upload.png");
    form.append("k", String(K));
    runSearch({ method: "POST", body: form }, `the upload ${file.name || ""}`.trim());
  }

  function searchByItem(item) {
    showQueryItem(item);
    map.selected = item.key;
    drawMap();
    runSearch({
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ key: item.key, k: K }),
    }, item.key);
  }

  function renderResults(results, describe) {
    const box = $("results");
    releaseImages(box);
    box.replaceChildren();
    $("results-status").textContent = `${results.length} of ${describe}`;
    if (!results.length) box.append(el("p", { class: "placeholder", text: "No neighbours found." }));
    results.forEach((r, i) => {
      const same = state.threshold !== null && typeof r.distance === "number" && r.distance <= state.threshold;
      box.append(el("figure", { class: "result", "data-key": r.key, "data-id": r.id },
        el("span", { class: "rank", text: String(i + 1), "aria-hidden": "true" }),
        itemThumb(r),
        el("figcaption", {},
          el("span", { class: "key", text: r.key, title: r.key }),
          el("span", { class: "meta" },
            el("span", {
              class: `distance${same ? " within" : ""}`,
              title: same ? "within the calibrated threshold: likely the same" : "distance to the query",
              text: formatDistance(r.distance),
            }),
            labelBadge(r.label)))));
    });
    map.neighbours = new Set(results.map((r) => r.key));
    drawMap();
  }

  // ---------------------------------------------------------------- map

  const map = {
    points: [],      // {id, key, label, x, y, px, py}
    selected: null,  // key
    neighbours: new Set(),
    hover: null,     // point
    colours: new Map(),
    radius: 3,
    size: [0, 0, 0],
  };

  function colourOf(label) {
    if (label === null || label === undefined) return GREY;
    const name = String(label);
    if (!map.colours.has(name)) {
      const i = map.colours.size;
      map.colours.set(name, i < PALETTE.length ? PALETTE[i] : `hsl(${(i * 137.508) % 360}, 62%, 48%)`);
    }
    return map.colours.get(name);
  }

  function sortLabels(labels) {
    const numeric = labels.every((l) => typeof l === "number" || /^-?\d+(\.\d+)?$/.test(String(l)));
    return labels.sort((a, b) => (numeric ? Number(a) - Number(b) : String(a).localeCompare(String(b))));
  }

  function prepareColours(classes, points) {
    const seen = new Set();
    const labels = [];
    const add = (l) => {
      if (l === null || l === undefined || seen.has(String(l))) return;
      seen.add(String(l));
      labels.push(l);
    };
    if (Array.isArray(classes)) sortLabels([...classes]).forEach(add);
    const fromPoints = [];
    for (const p of points) if (p.label !== null && p.label !== undefined && !seen.has(String(p.label))) {
      seen.add(String(p.label));
      fromPoints.push(p.label);
    }
    if (!Array.isArray(classes)) sortLabels(fromPoints);
    [...labels, ...fromPoints].forEach((l) => colourOf(l));
  }

  async function loadMap() {
    try {
      const data = await getJSON("/map");
      const points = data.points || [];
      prepareColours(state.info && state.info.classes, points);
      map.points = points.map((p) => ({ ...p, px: 0, py: 0 }));
      const n = points.length;
      map.radius = n > 5000 ? 1.6 : n > 2000 ? 2.2 : n > 500 ? 3 : 4;
      const method = METHOD_NAMES[String(data.method).toLowerCase()] || data.method || "map";
      const total = typeof data.total === "number" ? data.total : n;
      $("map-status").textContent = n < total
        ? `${n.toLocaleString("en-US")} of ${total.toLocaleString("en-US")} items, ${method}`
        : `${n.toLocaleString("en-US")} items, ${method}`;
      renderLegend();
      map.size = [0, 0, 0];
      drawMap();
      $("map").dataset.ready = "true";
    } catch (err) {
      $("map-status").textContent = "unavailable";
      report(err, "loading the map");
    }
  }

  function renderLegend() {
    const counts = new Map();
    let unlabelled = 0;
    for (const p of map.points) {
      if (p.label === null || p.label === undefined) unlabelled += 1;
      else counts.set(String(p.label), (counts.get(String(p.label)) || 0) + 1);
    }
    const items = [];
    const classes = state.info && Array.isArray(state.info.classes) ? sortLabels(state.info.classes.map(String)) : null;
    const names = classes ? [...classes, ...[...counts.keys()].filter((n) => !classes.includes(n))]
      : sortLabels([...counts.keys()]);
    for (const name of names) {
      if (!counts.has(name)) continue;
      items.push(el("li", { title: `${counts.get(name)} points` },
        el("span", { class: "swatch", style: { backgroundColor: colourOf(name) } }), name));
    }
    if (unlabelled) items.push(el("li", { title: `${unlabelled} points` },
      el("span", { class: "swatch", style: { backgroundColor: GREY } }), UNLABELLED));
    $("legend").replaceChildren(...items);
  }

  function drawMap() {
    const canvas = $("map");
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    if (!w || !h) return;
    const dpr = window.devicePixelRatio || 1;
    if (map.size[0] !== w || map.size[1] !== h || map.size[2] !== dpr) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
      map.size = [w, h, dpr];
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    if (!map.points.length) return;
    const pad = 12;
    const r = map.radius;
    for (const p of map.points) {
      p.px = pad + p.x * (w - 2 * pad);
      p.py = h - pad - p.y * (h - 2 * pad); // y up, like a plot
    }
    const dot = (p, radius, fill) => {
      ctx.beginPath();
      ctx.arc(p.px, p.py, radius, 0, 2 * Math.PI);
      ctx.fillStyle = fill;
      ctx.fill();
    };
    ctx.globalAlpha = 0.55;
    for (const p of map.points) if (p.label === null || p.label === undefined) dot(p, r * 0.85, GREY);
    ctx.globalAlpha = 0.85;
    for (const p of map.points) if (p.label !== null && p.label !== undefined) dot(p, r, colourOf(p.label));
    ctx.globalAlpha = 1;
    const ring = (p, radius, colour, width) => {
      ctx.beginPath();
      ctx.arc(p.px, p.py, radius, 0, 2 * Math.PI);
      ctx.lineWidth = width;
      ctx.strokeStyle = colour;
      ctx.stroke();
    };
    const ink = getComputedStyle(document.documentElement).getPropertyValue("--ink").trim() || "#111";
    const paper = getComputedStyle(document.documentElement).getPropertyValue("--panel").trim() || "#fff";
    for (const p of map.points) if (map.neighbours.has(p.key) && p.key !== map.selected) {
      ring(p, r + 3, paper, 3);
      ring(p, r + 3, ink, 1.5);
    }
    const selected = map.selected !== null ? map.points.find((p) => p.key === map.selected) : null;
    if (selected) {
      dot(selected, r + 1, colourOf(selected.label));
      ring(selected, r + 6, paper, 4);
      ring(selected, r + 6, ink, 2.5);
    }
    if (map.hover) ring(map.hover, r + 4, ink, 1);
  }

  function nearestPoint(event) {
    const rect = $("map").getBoundingClientRect();
    const x = event.clientX - rect.left;
    const y = event.clientY - rect.top;
    const reach = Math.max(8, map.radius + 5) + (event.pointerType === "touch" ? 8 : 0);
    let best = null;
    let bestD = reach * reach;
    for (const p of map.points) {
      const d = (p.px - x) ** 2 + (p.py - y) ** 2;
      if (d <= bestD) {
        best = p;
        bestD = d;
      }
    }
    return { point: best, x, y };
  }

  function onMapMove(event) {
    const { point, x, y } = nearestPoint(event);
    const tip = $("map-tip");
    if (point !== map.hover) {
      map.hover = point;
      drawMap();
    }
    $("map").style.cursor = point ? "pointer" : "default";
    if (!point) {
      tip.hidden = true;
      return;
    }
    tip.replaceChildren(el("span", { class: "key", text: point.key }), labelBadge(point.label));
    tip.hidden = false;
    const wrap = $("map").clientWidth;
    tip.style.left = `${Math.min(x + 12, wrap - tip.offsetWidth - 4)}px`;
    tip.style.top = `${Math.max(y - tip.offsetHeight - 10, 4)}px`;
  }

  function onMapLeave() {
    $("map-tip").hidden = true;
    if (map.hover) {
      map.hover = null;
      drawMap();
    }
  }

  function onMapClick(event) {
    const { point } = nearestPoint(event);
    if (point) searchByItem(point);
  }

  // ---------------------------------------------------------------- pairs

  const pairs = { enabled: false, current: null, busy: false };

  function setLabelledCount(n) {
    if (typeof n === "number") $("labelled-count").textContent = String(n);
  }

  function updatePairButtons() {
    const usable = pairs.enabled && pairs.current !== null && !pairs.busy;
    for (const id of ["same", "different", "skip"]) $(id).disabled = !usable;
  }

  function pairStatus(text, kind = "") {
    const box = $("pairs-status");
    box.className = `pairs-status ${kind}`.trim();
    if (typeof text === "string") box.textContent = text;
    else box.replaceChildren(...text);
    box.hidden = !box.textContent;
  }

  function clearPair() {
    for (const id of ["pair-a", "pair-b"]) {
      releaseImages($(id));
      $(id).replaceChildren();
    }
    $("pair-distance").textContent = "";
    $("pair-reason").textContent = "";
    $("pairs").classList.add("no-pair");
  }

  function renderPairItem(id, item) {
    const box = $(id);
    releaseImages(box);
    box.replaceChildren(itemThumb(item, "large"),
      el("figcaption", {}, el("span", { class: "key", text: item.key, title: item.key }), labelBadge(item.label)));
  }

  function renderPair(pair) {
    renderPairItem("pair-a", pair.a);
    renderPairItem("pair-b", pair.b);
    $("pairs").classList.remove("no-pair");
    const distance = el("span", {}, "distance ", el("strong", { text: formatDistance(pair.distance) }));
    const parts = [distance];
    if (state.threshold !== null) {
      parts.push(el("span", { class: "muted", text: ` (threshold ${formatDistance(state.threshold)})` }));
    }
    $("pair-distance").replaceChildren(...parts);
    $("pair-reason").textContent = pair.reason || "";
  }

  async function nextPair() {
    if (!pairs.enabled) return;
    pairs.busy = true;
    updatePairButtons();
    try {
      const data = await getJSON("/pairs/next");
      pairs.current = data;
      renderPair(data);
      setLabelledCount(data.labelled);
      pairStatus("Are these two the same?");
    } catch (err) {
      pairs.current = null;
      clearPair();
      if (err instanceof ApiError && err.status === 404) {
        pairStatus([
          el("strong", { text: "No more pairs to propose. " }),
          document.createTextNode("Every pair the model is unsure of was labelled or shown. "),
          el("button", { type: "button", class: "linkish", onclick: nextPair, text: "Ask again" }),
        ], "done");
      } else {
        pairStatus([
          document.createTextNode("Could not fetch a pair (see the error above). "),
          el("button", { type: "button", class: "linkish", onclick: nextPair, text: "Try again" }),
        ], "warn");
        report(err, "fetching the next pair");
      }
    } finally {
      pairs.busy = false;
      updatePairButtons();
    }
  }

  async function answer(label) {
    if (!pairs.current || pairs.busy) return;
    const { a, b } = pairs.current;
    pairs.busy = true;
    updatePairButtons();
    try {
      const data = await postJSON("/pairs", { a: a.key, b: b.key, label });
      setLabelledCount(data.labelled);
    } catch (err) {
      pairs.busy = false;
      updatePairButtons();
      report(err, `labelling ${a.key} / ${b.key}`);
      return;
    }
    pairs.busy = false;
    await nextPair();
  }

  function skip() {
    if (!pairs.current || pairs.busy) return;
    nextPair();
  }

  function setupPairs(info) {
    const p = info.pairs || {};
    pairs.enabled = Boolean(p.enabled);
    setLabelledCount(typeof p.labelled === "number" ? p.labelled : 0);
    if (!pairs.enabled) {
      clearPair();
      $("pairs").classList.add("read-only");
      pairStatus([
        el("strong", { text: "This server is read-only. " }),
        document.createTextNode("To label pairs, start siamese serve with "),
        el("code", { text: "--pairs-out PAIRS.csv" }),
        document.createTextNode("; labels are appended to that file for "),
        el("code", { text: "siamese finetune --pairs" }),
        document.createTextNode("."),
      ], "warn");
      updatePairButtons();
      return;
    }
    if (p.path) $("pairs-title").title = `labels go to ${p.path}`;
    nextPair();
  }

  function flash(id) {
    const button = $(id);
    button.classList.add("pressed");
    setTimeout(() => button.classList.remove("pressed"), 160);
  }

  function onKey(event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    const target = event.target;
    const typing = "input, textarea, select, [contenteditable=''], [contenteditable='true']";
    if (target && target.closest && target.closest(typing)) return;
    const actions = { s: ["same", () => answer(1)], d: ["different", () => answer(0)], k: ["skip", skip] };
    const action = actions[event.key.toLowerCase()];
    if (!action) return;
    const [id, run] = action;
    if ($(id).disabled) return;
    event.preventDefault();
    flash(id);
    run();
  }

  // ---------------------------------------------------------------- drop zone

  function setupDrop() {
    const drop = $("drop");
    const upload = $("upload");
    drop.addEventListener("click", (event) => {
      if (event.target === upload || event.target.closest("label")) return; // the label opens the dialog itself
      upload.click();
    });
    drop.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        upload.click();
      }
    });
    upload.addEventListener("change", () => {
      const file = upload.files && upload.files[0];
      if (file) searchFile(file);
      upload.value = ""; // choosing the same file again searches again
    });
    let depth = 0;
    drop.addEventListener("dragenter", (event) => {
      event.preventDefault();
      depth += 1;
      drop.classList.add("over");
    });
    drop.addEventListener("dragover", (event) => {
      event.preventDefault();
      if (event.dataTransfer) event.dataTransfer.dropEffect = "copy";
    });
    drop.addEventListener("dragleave", () => {
      depth = Math.max(0, depth - 1);
      if (!depth) drop.classList.remove("over");
    });
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      depth = 0;
      drop.classList.remove("over");
      const files = event.dataTransfer && event.dataTransfer.files;
      if (files && files.length) searchFile(files[0]);
      else showError("Nothing to search: drop an image file (not a link or text).");
    });
    // a file dropped beside the zone must not make the browser leave the page
    window.addEventListener("dragover", (event) => event.preventDefault());
    window.addEventListener("drop", (event) => event.preventDefault());
    document.addEventListener("paste", (event) => {
      const target = event.target;
      if (target && target.closest && target.closest("input, textarea")) return;
      const files = event.clipboardData && event.clipboardData.files;
      if (files && files.length) {
        event.preventDefault();
        searchFile(files[0]);
      }
    });
  }

  // ---------------------------------------------------------------- start

  async function start() {
    $("error-close").addEventListener("click", clearError);
    $("token-form").addEventListener("submit", submitToken);
    $("same").addEventListener("click", () => answer(1));
    $("different").addEventListener("click", () => answer(0));
    $("skip").addEventListener("click", skip);
    document.addEventListener("keydown", onKey);
    setupDrop();
    const canvas = $("map");
    canvas.addEventListener("pointermove", onMapMove);
    canvas.addEventListener("pointerleave", onMapLeave);
    canvas.addEventListener("click", onMapClick);
    if (window.ResizeObserver) new ResizeObserver(() => drawMap()).observe(canvas);
    else window.addEventListener("resize", drawMap);
    // a move to a screen with another pixel ratio
    const watchDpr = () => {
      const query = window.matchMedia(`(resolution: ${window.devicePixelRatio || 1}dppx)`);
      const onChange = () => {
        drawMap();
        watchDpr();
      };
      if (query.addEventListener) query.addEventListener("change", onChange, { once: true });
    };
    watchDpr();

    try {
      state.info = await getJSON("/info");
    } catch (err) {
      $("info").textContent = "Could not read /info from the server.";
      pairStatus("Unknown whether this server accepts labels: /info failed.", "warn");
      report(err, "loading /info");
      loadMap();
      return;
    }
    state.images = state.info.images !== false;
    if (!state.images) {
      $("drop").classList.add("disabled");
      $("drop").setAttribute("aria-disabled", "true");
      $("upload").disabled = true;
      $("drop-help").textContent = state.info.images_problem
        ? `No item images: ${state.info.images_problem}. Search by clicking the map instead.`
        : "This index holds vectors, not images: search by clicking the map instead.";
    }
    if (Array.isArray(state.info.classes)) prepareColours(state.info.classes, []);
    renderInfo(state.info);
    setupPairs(state.info);
    loadMap();
  }

  // read by tests and handy in the console: the map's points in CSS pixels of the canvas
  window.siameseServe = {
    mapPoints: () => map.points.map((p) => ({ id: p.id, key: p.key, label: p.label, x: p.px, y: p.py })),
  };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
