// wagate dashboard: a page over the gateway's own API (the same routes and
// keys as every other client). No framework and no build step: the gateway
// embeds this file as it is. Live updates come from GET /events, read with
// fetch() so the API key travels in a header, never in a URL.
"use strict";

const KEY_STORE = "wagate.apiKey";
const PAGE_SIZE = 50;
const RECENT_EVENTS = 100;

const $ = (sel) => document.querySelector(sel);

// ---- API ------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function authHeaders() {
  const key = sessionStorage.getItem(KEY_STORE);
  return key ? { "X-Api-Key": key } : {};
}

async function api(method, path, body) {
  const headers = authHeaders();
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (res.ok) {
    const type = res.headers.get("content-type") || "";
    return type.includes("application/json") ? res.json() : res;
  }
  let code = "http_" + res.status;
  let message = res.statusText;
  try {
    const err = (await res.json()).error;
    code = err.code;
    message = err.message;
  } catch (_) {
    // not the JSON error shape: keep the status line
  }
  if (res.status === 401) askForKey();
  throw new ApiError(res.status, code, message);
}

const sessionPath = (id) => "/sessions/" + encodeURIComponent(id);

// ---- notices and confirmation ----------------------------------------------

let noticeTimer = null;
function notice(text, isError) {
  const el = $("#notice");
  el.textContent = text;
  el.className = isError ? "error" : "";
  el.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => (el.hidden = true), isError ? 8000 : 3000);
}

function reportError(e) {
  notice(e instanceof ApiError ? `${e.code}: ${e.message}` : String(e), true);
}

function confirmAction(text) {
  const dialog = $("#confirm");
  $("#confirm-text").textContent = text;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) =>
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true }),
  );
}

function askForKey() {
  const dialog = $("#key-dialog");
  if (!dialog.open) {
    $("#key-input").value = "";
    dialog.showModal();
  }
}

// ---- live events (SSE over fetch) -------------------------------------------

// One subscription to GET /events: parses SSE frames, resumes with
// Last-Event-ID after a drop or an error, stops when closed.
class EventStream {
  constructor(query, onEvent, onMissed) {
    this.query = query;
    this.onEvent = onEvent;
    this.onMissed = onMissed || (() => {});
    this.lastId = null;
    this.closed = false;
    this.controller = null;
    this.run();
  }

  close() {
    this.closed = true;
    if (this.controller) this.controller.abort();
  }

  async run() {
    let delay = 500;
    while (!this.closed) {
      try {
        await this.readOnce();
        delay = 500;
      } catch (e) {
        if (this.closed) return;
        if (e instanceof ApiError && e.status === 401) {
          delay = 5000;
        }
      }
      if (this.closed) return;
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 10000);
    }
  }

  async readOnce() {
    const headers = authHeaders();
    if (this.lastId !== null) headers["Last-Event-ID"] = String(this.lastId);
    this.controller = new AbortController();
    const res = await fetch("/events" + this.query, { headers, signal: this.controller.signal });
    if (!res.ok) {
      if (res.status === 401) askForKey();
      // A scoped key may not follow every session: no live list, no retries.
      if (res.status === 403) this.closed = true;
      throw new ApiError(res.status, "http_" + res.status, res.statusText);
    }
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      let end;
      while ((end = buf.indexOf("\n\n")) >= 0) {
        this.frame(buf.slice(0, end));
        buf = buf.slice(end + 2);
      }
    }
  }

  frame(raw) {
    let id = null;
    let event = "message";
    const data = [];
    for (const line of raw.split("\n")) {
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "id") id = Number(value);
      else if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
    if (data.length === 0) return;
    if (id !== null) this.lastId = id;
    if (event === "missed") this.onMissed();
    if (event === "missed" || event === "dropped") return;
    try {
      this.onEvent(JSON.parse(data.join("\n")));
    } catch (_) {
      // a frame we cannot read: skip it, the stream goes on
    }
  }
}

// ---- health -----------------------------------------------------------------

function chip(sel, text, level) {
  const el = $(sel);
  el.textContent = text;
  el.dataset.level = level;
}

const health = { simulator: false };

// At most one health reading a second, however many events ask for it.
// `fn`, at most once per `ms`: calls in between fold into one, run `ms`
// after the first of them.
function throttle(fn, ms) {
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    setTimeout(() => {
      queued = false;
      fn();
    }, ms);
  };
}

const soonRefreshHealth = throttle(() => refreshHealth(), 1000);

async function refreshHealth() {
  try {
    const res = await fetch("/health");
    const h = await res.json();
    chip("#health-status", h.status, h.status === "OK" ? "ok" : "bad");
    const breaker = h.circuitBreaker.state;
    if (!h.laravel.forwarding) {
      chip("#health-breaker", "Laravel not set", "warn");
    } else if (breaker === "CLOSED") {
      chip("#health-breaker", `Laravel OK, ${h.laravel.heldBatches} held`, h.laravel.heldBatches ? "warn" : "ok");
    } else {
      chip("#health-breaker", `Laravel breaker ${breaker.toLowerCase()}, ${h.laravel.heldBatches} held`, "bad");
    }
    if (h.redis) {
      chip("#health-redis", h.redis.connected ? "Redis up" : "Redis down", h.redis.connected ? "ok" : "bad");
    } else {
      chip("#health-redis", "store " + h.store, "ok");
    }
    const q = h.queues.messageQueue;
    chip("#health-queue", `queue ${q.waiting} waiting`, q.waiting > 1000 ? "warn" : "ok");
    chip("#health-sessions", `${h.activeSessions} connected / ${h.sessions.total}`, "ok");
    health.simulator = h.connector === "simulator";
    if (detail.id) {
      show($("#sim-scan"), health.simulator && $("#detail-state").textContent === "qr");
    }
  } catch (e) {
    chip("#health-status", "unreachable", "bad");
  }
}

// ---- the sessions list -------------------------------------------------------

const list = {
  cursors: [null], // `after` of each page shown so far; the last is the current page's
  rows: new Map(), // session id -> <tr>
  next: null,
};

function stateBadge(el, state) {
  el.textContent = state;
  el.className = "state state-" + state;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleTimeString() : "—";
}

function renderRow(s) {
  let tr = list.rows.get(s.id);
  if (!tr) {
    tr = document.createElement("tr");
    tr.dataset.session = s.id;
    for (let i = 0; i < 4; i++) tr.appendChild(document.createElement("td"));
    const link = document.createElement("a");
    link.href = "#" + encodeURIComponent(s.id);
    tr.cells[0].appendChild(link);
    tr.cells[1].appendChild(document.createElement("span"));
    list.rows.set(s.id, tr);
  }
  tr.cells[0].firstChild.textContent = s.id;
  stateBadge(tr.cells[1].firstChild, s.state);
  tr.cells[2].textContent = s.jid || "";
  tr.cells[3].textContent = when(s.updatedAt);
  return tr;
}

async function loadPage() {
  const after = list.cursors[list.cursors.length - 1];
  const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (after) params.set("after", after);
  const state = $("#filter-state").value;
  if (state) params.set("state", state);
  try {
    const page = await api("GET", "/sessions?" + params);
    const body = $("#sessions");
    list.rows.clear();
    body.replaceChildren(...page.sessions.map(renderRow));
    list.next = page.next || null;
    $("#page-next").disabled = !list.next;
    $("#page-first").disabled = list.cursors.length === 1;
    const first = (list.cursors.length - 1) * PAGE_SIZE + 1;
    $("#page-info").textContent = page.sessions.length
      ? `${first}–${first + page.sessions.length - 1} of ${page.total}`
      : `none of ${page.total}`;
  } catch (e) {
    reportError(e);
  }
}

// A state change of a session not on this page: reload the page, at most
// every two seconds, so a busy gateway does not turn into a reload loop.
const queueRefresh = throttle(() => loadPage(), 2000);

function onListEvent(ev) {
  soonRefreshHealth();
  const tr = list.rows.get(ev.sessionId);
  const filter = $("#filter-state").value;
  if (tr && (!filter || filter === ev.data.state)) {
    stateBadge(tr.cells[1].firstChild, ev.data.state);
    tr.cells[3].textContent = when(new Date(ev.timestamp).toISOString());
  } else if (list.cursors.length === 1) {
    queueRefresh();
  }
}

// ---- one session ---------------------------------------------------------

const detail = {
  id: null,
  stream: null,
  qrUrl: null,
  qrLoading: false,
};

function show(el, visible) {
  el.hidden = !visible;
}

function renderDetail(s) {
  $("#detail-id").textContent = s.id;
  stateBadge($("#detail-state"), s.state);
  $("#detail-jid").textContent = s.jid || "—";
  $("#detail-reason").textContent = s.reason || "—";
  $("#detail-restarts").textContent = String(s.restarts);
  $("#detail-updated").textContent = when(s.updatedAt);
  const linking = ["starting", "qr", "pairing"].includes(s.state);
  show($("#pair-form"), linking);
  show($("#sim-scan"), health.simulator && s.state === "qr");
  show($("#pair-code"), Boolean(s.pairCode) && linking);
  $("#pair-code").textContent = s.pairCode ? "Pairing code: " + s.pairCode : "";
  if (s.qrAvailable && s.state === "qr") {
    $("#qr-expires").textContent = s.qrExpiresAt ? "Expires " + when(s.qrExpiresAt) + "." : "";
    loadQr();
  } else {
    show($("#qr-box"), false);
  }
}

async function loadQr() {
  if (detail.qrLoading || !detail.id) return;
  detail.qrLoading = true;
  const id = detail.id;
  try {
    const res = await api("GET", sessionPath(id) + "/qr?format=png");
    const blob = await res.blob();
    if (detail.id !== id) return;
    if (detail.qrUrl) URL.revokeObjectURL(detail.qrUrl);
    detail.qrUrl = URL.createObjectURL(blob);
    const img = $("#qr-img");
    img.src = detail.qrUrl;
    img.dataset.loaded = String(Number(img.dataset.loaded || 0) + 1);
    show($("#qr-box"), true);
  } catch (e) {
    // 404 qr_not_available: the code expired or was scanned meanwhile
    if (!(e instanceof ApiError && e.status === 404)) reportError(e);
  } finally {
    detail.qrLoading = false;
  }
}

async function loadDetail() {
  if (!detail.id) return;
  try {
    renderDetail(await api("GET", sessionPath(detail.id)));
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) {
      notice(`session ${detail.id} is gone`, true);
      closeDetail();
    } else {
      reportError(e);
    }
  }
}

function describe(ev) {
  const d = ev.data || {};
  switch (ev.type) {
    case "state":
      return d.state + (d.reason ? ` (${d.reason})` : "");
    case "qr":
      return "new QR code";
    case "message":
      return `from ${d.from || "?"}: ${d.text || d.type || ""}`;
    case "receipt":
      return `${d.messageId} ${d.status}`;
    case "send_result":
      return `${d.messageId} ${d.status}${d.error ? " — " + d.error : ""}`;
    default:
      return JSON.stringify(d);
  }
}

function onDetailEvent(ev) {
  if (ev.sessionId !== detail.id) return;
  const li = document.createElement("li");
  li.dataset.type = ev.type;
  const time = document.createElement("time");
  time.textContent = new Date(ev.timestamp).toLocaleTimeString();
  const kind = document.createElement("b");
  kind.textContent = ev.type;
  li.append(time, " ", kind, " ", describe(ev));
  const events = $("#events");
  events.prepend(li);
  while (events.children.length > RECENT_EVENTS) events.lastChild.remove();
  if (ev.type === "qr") loadQr();
  if (ev.type === "state") loadDetail();
}

function openDetail(id) {
  if (detail.stream) detail.stream.close();
  detail.id = id;
  $("#events").replaceChildren();
  show($("#qr-box"), false);
  show($("#detail"), true);
  if (location.hash !== "#" + encodeURIComponent(id)) {
    history.replaceState(null, "", "#" + encodeURIComponent(id));
  }
  loadDetail();
  // after=0: whatever the replay buffer still holds for this session, then live.
  detail.stream = new EventStream(
    "?session=" + encodeURIComponent(id) + "&after=0",
    onDetailEvent,
  );
}

function closeDetail() {
  if (detail.stream) detail.stream.close();
  detail.stream = null;
  detail.id = null;
  show($("#detail"), false);
  history.replaceState(null, "", location.pathname);
}

async function act(action) {
  const id = detail.id;
  if (!id) return;
  const dangerous = { delete: "Delete", logout: "Log out", stop: "Stop" };
  if (dangerous[action] && !(await confirmAction(`${dangerous[action]} session ${id}?`))) return;
  try {
    if (action === "delete") {
      await api("DELETE", sessionPath(id));
      notice(`deleted ${id}`);
      closeDetail();
    } else {
      await api("POST", sessionPath(id) + "/" + action);
      notice(`${action}: ${id}`);
      loadDetail();
    }
    loadPage();
  } catch (e) {
    reportError(e);
  }
}

// ---- wiring -------------------------------------------------------------------

function wire() {
  $("#create-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const id = $("#create-id").value.trim();
    try {
      await api("POST", "/sessions", { id });
      $("#create-id").value = "";
      notice(`created ${id}`);
      openDetail(id);
      loadPage();
    } catch (err) {
      reportError(err);
    }
  });
  $("#open-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const id = $("#open-id").value.trim();
    if (id) openDetail(id);
  });
  $("#filter-state").addEventListener("change", () => {
    list.cursors = [null];
    loadPage();
  });
  $("#page-next").addEventListener("click", () => {
    if (!list.next) return;
    list.cursors.push(list.next);
    loadPage();
  });
  $("#page-first").addEventListener("click", () => {
    list.cursors = [null];
    loadPage();
  });
  $("#sessions").addEventListener("click", (e) => {
    const tr = e.target.closest("tr");
    if (!tr) return;
    e.preventDefault();
    openDetail(tr.dataset.session);
  });
  document.querySelectorAll("#detail [data-action]").forEach((b) =>
    b.addEventListener("click", () => act(b.dataset.action)),
  );
  $("#pair-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const r = await api("POST", sessionPath(detail.id) + "/pairing-code", {
        phone: $("#pair-phone").value.trim(),
      });
      $("#pair-code").textContent = "Pairing code: " + r.code;
      show($("#pair-code"), true);
    } catch (err) {
      reportError(err);
    }
  });
  $("#send-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const r = await api("POST", sessionPath(detail.id) + "/messages", {
        to: $("#send-to").value.trim(),
        text: $("#send-text").value,
      });
      $("#send-text").value = "";
      notice(`queued ${r.messageId}`);
    } catch (err) {
      reportError(err);
    }
  });
  $("#key-change").addEventListener("click", askForKey);
  $("#key-form").addEventListener("submit", () => {
    const key = $("#key-input").value.trim();
    if (key) sessionStorage.setItem(KEY_STORE, key);
    else sessionStorage.removeItem(KEY_STORE);
    start();
  });
}

let listStream = null;
function start() {
  loadPage();
  if (listStream) listStream.close();
  listStream = new EventStream("?types=state", onListEvent, queueRefresh);
  const hash = decodeURIComponent(location.hash.slice(1));
  if (hash) openDetail(hash);
  else if (detail.id) openDetail(detail.id);
}

wire();
refreshHealth();
setInterval(refreshHealth, 5000);
start();
