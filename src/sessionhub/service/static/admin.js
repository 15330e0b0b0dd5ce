"use strict";
// The admin page: plain JavaScript with no build step and no library. It must run from the
// service alone, offline, and what it draws (a few figures, a table and one chart of sixty
// points) is small enough that a charting library would be most of the page's weight.
// Every value from the server is put in with textContent, never as HTML: user agents and user
// ids are whatever clients sent.

const REFRESH_MS = 2000;
const SVG = "http://www.w3.org/2000/svg";
let timer = null;
let shownUser = null;

const $ = (id) => document.getElementById(id);

function setText(id, value) {
  $(id).textContent = value;
}

async function api(method, path, body) {
  const options = { method, headers: {}, credentials: "same-origin" };
  if (body !== undefined) {
    options.headers["content-type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  let json = null;
  try {
    json = await response.json();
  } catch (error) {
    json = null;
  }
  return { status: response.status, json };
}

function errorText(result) {
  const error = result.json && result.json.error;
  return error ? error.message : `HTTP ${result.status}`;
}

function showLogin(message) {
  clearInterval(timer);
  timer = null;
  $("dashboard").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  setText("login-error", message || "");
  setText("status-pill", "logged out");
  $("status-pill").className = "pill";
  $("key").focus();
}

function showDashboard() {
  $("login").hidden = true;
  $("dashboard").hidden = false;
  $("logout").hidden = false;
  if (timer === null) {
    timer = setInterval(refresh, REFRESH_MS);
  }
}

async function refresh() {
  let result;
  try {
    result = await api("GET", "/api/admin/overview");
  } catch (error) {
    setText("updated", "the service does not answer");
    return;
  }
  if (result.status === 401 || result.status === 403) {
    showLogin();
    return;
  }
  if (!result.json || !result.json.success) {
    setText("updated", `failed: ${errorText(result)}`);
    return;
  }
  showDashboard();
  render(result.json.data);
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "–";
}

function render(d) {
  const health = d.health;
  const healthy = health.status === "healthy";
  setText("status-pill", `${health.status} · ${health.mode}`);
  $("status-pill").className = `pill ${healthy ? "ok" : "bad"}`;
  setText("redis-status", health.status);
  $("redis-status").className = `big ${healthy ? "ok" : "bad"}`;
  const latency = health.latency_ms === null ? "" : `, ${health.latency_ms} ms`;
  setText("redis-mode", `mode: ${health.mode}${latency}`);
  setText("redis-since", d.degraded_since ? `degraded since ${when(d.degraded_since)}` : "");
  setText("redis-error", health.last_error ? `last error: ${health.last_error}` : "");

  const stats = d.stats;
  setText("sessions-total", String(stats.total_sessions));
  const inRedis = stats.redis_sessions === null ? "unknown" : stats.redis_sessions;
  setText("sessions-by-store", `Redis: ${inRedis} · memory only: ${stats.memory_sessions}`);

  setText("online-users", String(d.online.online_users));
  setText("online-window", `active within ${d.online.window_seconds} s`);

  setText("memory-store", String(d.memory_store.sessions));
  setText("memory-store-max", `of at most ${d.memory_store.max_sessions} (mirror and outage copies)`);

  const memory = d.redis_memory;
  setText("redis-memory", memory ? bytes(memory.used_bytes) : "–");
  setText(
    "redis-memory-detail",
    memory
      ? `peak ${bytes(memory.peak_bytes)} · limit ${memory.max_bytes ? bytes(memory.max_bytes) : "none"}`
      : "Redis does not answer",
  );

  drawChart(d.activity);
  setText("updated", new Date(d.generated_at).toLocaleTimeString());
}

function svg(name, attributes, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) {
    node.setAttribute(key, String(value));
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

// Logins as bars against the left scale, sessions as a line against the right one: the two
// counts differ by orders of magnitude, so each gets its own scale, labelled with its maximum.
function drawChart(points) {
  const chart = $("chart");
  chart.replaceChildren();
  const width = 1000;
  const height = 180;
  const left = 36;
  const right = 44;
  const top = 10;
  const bottom = 24;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const maxLogins = Math.max(1, ...points.map((p) => p.logins));
  const counted = points.filter((p) => p.sessions !== null).map((p) => p.sessions);
  const maxSessions = Math.max(1, ...counted);
  const step = plotW / points.length;

  chart.append(svg("line", { class: "axis", x1: left, y1: top + plotH, x2: left + plotW, y2: top + plotH }));
  chart.append(svg("text", { x: 2, y: top + 10 }, String(maxLogins)));
  chart.append(svg("text", { x: 2, y: top + plotH }, "0"));
  chart.append(svg("text", { x: left + plotW + 4, y: top + 10 }, String(maxSessions)));
  chart.append(svg("text", { x: left, y: height - 6 }, "60 min ago"));
  chart.append(svg("text", { x: left + plotW - 24, y: height - 6 }, "now"));

  points.forEach((p, i) => {
    if (p.logins > 0) {
      const h = (p.logins / maxLogins) * plotH;
      const bar = svg("rect", { class: "bar", x: left + i * step + 1, y: top + plotH - h, width: Math.max(1, step - 2), height: h });
      bar.append(svg("title", {}, `${when(p.minute)}: ${p.logins} logins`));
      chart.append(bar);
    }
  });

  const coords = [];
  points.forEach((p, i) => {
    if (p.sessions !== null) {
      const x = left + i * step + step / 2;
      const y = top + plotH - (p.sessions / maxSessions) * plotH;
      coords.push(`${x.toFixed(1)},${y.toFixed(1)}`);
    }
  });
  if (coords.length > 0) {
    chart.append(svg("polyline", { class: "line", points: coords.join(" ") }));
  }
  // A dot per sampled minute: a line of one point (the first minute after a start) draws nothing.
  for (const xy of coords) {
    const [cx, cy] = xy.split(",");
    chart.append(svg("circle", { class: "dot", cx, cy, r: 3 }));
  }
}

function userPath(userId) {
  return `/api/admin/users/${encodeURIComponent(userId)}/sessions`;
}

async function loadUser(userId) {
  shownUser = userId;
  const result = await api("GET", userPath(userId));
  const table = $("user-sessions");
  const body = table.querySelector("tbody");
  body.replaceChildren();
  if (!result.json || !result.json.success) {
    table.hidden = true;
    $("revoke-all").hidden = true;
    setText("user-message", `failed: ${errorText(result)}`);
    return;
  }
  const sessions = result.json.data.sessions;
  setText("user-message", sessions.length ? `${sessions.length} live session(s) of ${userId}` : `${userId} has no live sessions`);
  table.hidden = sessions.length === 0;
  $("revoke-all").hidden = sessions.length === 0;
  for (const s of sessions) {
    const row = document.createElement("tr");
    for (const value of [s.user_agent || "(unknown device)", s.ip || "–", when(s.last_seen_at), when(s.created_at)]) {
      const cell = document.createElement("td");
      cell.textContent = value;
      row.append(cell);
    }
    const cell = document.createElement("td");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "danger revoke";
    button.textContent = "Revoke";
    button.addEventListener("click", () => revoke(userId, s.id));
    cell.append(button);
    row.append(cell);
    body.append(row);
  }
}

async function revoke(userId, handle) {
  const path = handle === undefined ? userPath(userId) : `${userPath(userId)}/${encodeURIComponent(handle)}`;
  const result = await api("DELETE", path);
  if (!result.json || !result.json.success) {
    setText("user-message", `revoke failed: ${errorText(result)}`);
    return;
  }
  await loadUser(userId);
  await refresh();
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const result = await api("POST", "/api/admin/login", { key: $("key").value });
  $("key").value = "";
  if (result.json && result.json.success) {
    setText("login-error", "");
    await refresh();
  } else {
    setText("login-error", errorText(result));
  }
});

$("logout").addEventListener("click", async () => {
  await api("POST", "/api/admin/logout");
  showLogin("Logged out.");
});

$("user-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const userId = $("user-id").value.trim();
  if (userId) {
    await loadUser(userId);
  }
});

$("revoke-all").addEventListener("click", async () => {
  if (shownUser !== null && window.confirm(`Revoke every session of ${shownUser}?`)) {
    await revoke(shownUser);
  }
});

refresh();
