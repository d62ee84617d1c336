// The Tern web client (PROTOCOL §18). Every server value is rendered as
// text (textContent; no HTML is ever parsed); the page's Content-Security-Policy
// forbids inline script.
import { Conn, cmid } from "./conn.js";
import { upload } from "./tus.js";
import { highlight } from "./text.js";

const $ = (id) => document.getElementById(id);
const SESSION = "tern.session";
const params = new URLSearchParams(location.search);
const kiosk = params.get("kiosk");

let conn = null;
let me = null;
let current = null; // open conversation
const convs = new Map(); // cv → {cv, seq, unread, last, read, peerRead, peerDlv}
const threads = new Map(); // cv → {items: Map id→item, first, complete, loading}
const presence = new Map(); // uid → record
const metas = new Map(); // gid → {name,…}
const typingBy = new Map(); // cv → Map uid → expiry ms
const outbox = new Map(); // cmid → {cv, b, att, ts}
const thumbs = new Map(); // fid → object URL or "" (unavailable)
const contacted = new Set();
const marksDue = new Map(); // `${cv} ${k}` → upto
let editing = null; // id of the message being edited
let lastTyp = 0;

function el(tag, props, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") e.textContent = v;
    else if (k === "cls") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of kids) if (c) e.append(c);
  return e;
}

function peerOf(cv) {
  if (!cv.startsWith("d:")) return null;
  const [, a, b] = cv.split(":");
  return a === me.uid ? b : a;
}

function dmCV(uid) {
  return uid < me.uid ? `d:${uid}:${me.uid}` : `d:${me.uid}:${uid}`;
}

function convName(cv) {
  const p = peerOf(cv);
  if (p) return p;
  const gid = cv.slice(2);
  const m = metas.get(gid);
  return m && m.name ? m.name : gid;
}

function clock(ts) {
  return new Date(ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function lastSeen(p) {
  if (!p) return "";
  if (p.s !== "off") return p.s === "on" ? "online" : p.s;
  if (!p.ls) return "offline";
  const d = new Date(p.ls);
  const same = d.toDateString() === new Date().toDateString();
  return `last seen ${same ? clock(p.ls) : d.toLocaleString()}`;
}

function showError(where, msg) {
  $(where).textContent = msg || "";
}

// ---- login ----

function session() {
  try { return JSON.parse(localStorage.getItem(SESSION)); } catch { return null; }
}

async function login(ev) {
  ev.preventDefault();
  showError("login-error", "");
  const uid = $("login-uid").value.trim();
  const body = { uid, password: $("login-password").value };
  const otp = $("login-otp").value.trim();
  if (otp) body.otp = otp;
  const did = localStorage.getItem(`tern.did.${uid}`);
  if (did) body.did = did;
  let res, r;
  try {
    res = await fetch("/v1/login", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    r = await res.json().catch(() => ({}));
  } catch {
    showError("login-error", "Cannot reach the server.");
    return;
  }
  if (!res.ok) {
    if (res.status === 401 && /otp/i.test(r.msg || "")) {
      $("otp-row").hidden = false;
      $("login-otp").focus();
      showError("login-error", otp ? "Wrong one-time code." : "Enter your one-time code.");
      return;
    }
    showError("login-error", res.status === 401 ? "Wrong user or password." : r.msg || `Login failed (${res.status}).`);
    return;
  }
  localStorage.setItem(SESSION, JSON.stringify({ uid: r.uid, did: r.did, token: r.token }));
  localStorage.setItem(`tern.did.${r.uid}`, r.did);
  $("login-password").value = "";
  start(session());
}

function logout() {
  if (conn) conn.stop();
  localStorage.removeItem(SESSION);
  location.replace(location.pathname);
}

// ---- connection ----

function start(sess) {
  me = sess;
  $("login").hidden = true;
  $("app").hidden = false;
  $("me-name").textContent = me.uid;
  loadMarks();
  conn = new Conn(sess);
  conn.addEventListener("state", (e) => setState(e.detail));
  conn.addEventListener("ready", onReady);
  conn.addEventListener("event", (e) => onEvent(e.detail));
  conn.addEventListener("presence", (e) => onPresence(e.detail));
  conn.addEventListener("typing", (e) => onTyping(e.detail));
  conn.addEventListener("meta", (e) => { metas.set(e.detail.gid, e.detail); render(); });
  conn.addEventListener("reset", () => { threads.clear(); });
  conn.addEventListener("problem", (e) => showError(current ? "chat-error" : "side-error", e.detail));
  conn.addEventListener("refused", (e) => {
    const v = e.detail;
    if (v.cmid) outbox.delete(v.cmid);
    showError(current ? "chat-error" : "side-error", `Not sent (${v.code}): ${v.msg}`);
    render();
  });
  conn.addEventListener("denied", () => {
    localStorage.removeItem(SESSION);
    conn.stop();
    $("app").hidden = true;
    $("login").hidden = false;
    showError("login-error", "Your session has ended; log in again.");
  });
  setState("connecting");
  conn.start();
}

function setState(s) {
  const c = $("conn");
  document.body.dataset.conn = s;
  if (s === "online") { c.hidden = true; return; }
  c.hidden = false;
  c.textContent = s === "connecting" ? "connecting…" : s === "syncing" ? "syncing…" : "reconnecting…";
}

async function onReady() {
  try {
    const r = await conn.call("conv.list", {});
    for (const c of r.convs || []) {
      const old = convs.get(c.cv) || conv(c.cv);
      convs.set(c.cv, { ...old, ...c, unread: current === c.cv ? 0 : c.unread });
      watchConv(c.cv);
    }
    render();
    const peers = [...convs.keys()].map(peerOf).filter(Boolean);
    if (peers.length) {
      const p = await conn.call("presence.get", { uids: peers });
      for (const [uid, rec] of Object.entries(p.p || {})) onPresence({ uid, ...rec });
    }
    flushMarks();
    if (kiosk && current !== kiosk) openConv(kiosk);
    else if (current && !threads.has(current)) openConv(current);
  } catch (e) {
    showError("side-error", e.message);
  }
}

function watchConv(cv) {
  const p = peerOf(cv);
  if (p) conn.watch(p);
  else conn.watchTopic(`im/g/${cv.slice(2)}/meta`);
}

// ---- events ----

// Receipts of others arrive as mark events in the stream, once: they are
// kept with the cursor so a reload still shows ✓ and ✓✓.
function marksKey() { return `tern.marks.${me.uid}.${me.did}`; }
let savedMarks = {};
function loadMarks() {
  try { savedMarks = JSON.parse(localStorage.getItem(marksKey())) || {}; } catch { savedMarks = {}; }
}
function saveMarks(c) {
  savedMarks[c.cv] = [c.peerRead, c.peerDlv];
  localStorage.setItem(marksKey(), JSON.stringify(savedMarks));
}

function conv(cv) {
  let c = convs.get(cv);
  if (!c) {
    const [pr, pd] = savedMarks[cv] || [0, 0];
    c = { cv, seq: 0, unread: 0, read: 0, peerRead: pr, peerDlv: pd };
    convs.set(cv, c);
    watchConv(cv);
  }
  return c;
}

function onEvent(ev) {
  if (ev.t === "mark") {
    const c = conv(ev.cv);
    if (ev.from === me.uid) {
      if (ev.k === "read" && ev.upto > (c.read || 0)) {
        c.read = ev.upto;
        if (c.read >= c.seq) c.unread = 0;
      }
    } else {
      if (ev.k === "read") c.peerRead = Math.max(c.peerRead, ev.upto);
      c.peerDlv = Math.max(c.peerDlv, ev.upto);
      saveMarks(c);
    }
    render();
    return;
  }
  if (!ev.cv || !ev.seq) return;
  const c = conv(ev.cv);
  if (ev.seq > c.seq) {
    c.seq = ev.seq;
    c.last = ev;
  }
  if (ev.from === me.uid && ev.cmid) outbox.delete(ev.cmid);
  // A message ends its author's typing (the server may have dropped the
  // "paused" state: one typing state per 2 s is forwarded).
  if (ev.t === "msg" && typingBy.has(ev.cv)) typingBy.get(ev.cv).delete(ev.from);
  if (ev.t === "msg" && ev.from !== me.uid && ev.cv === current) {
    // The message list is redrawn whole; screen readers hear new
    // messages here instead.
    $("announce").textContent = `${ev.from}: ${ev.b || ""}`;
  }
  if (ev.t === "msg" && ev.from !== me.uid && ev.seq > (c.read || 0)) {
    if (current === ev.cv && !document.hidden && !kiosk) queueMark(ev.cv, "read", ev.seq);
    else {
      c.unread = (c.unread || 0) + 1;
      queueMark(ev.cv, "dlv", ev.seq);
    }
  }
  const th = threads.get(ev.cv);
  if (th) addItem(th, ev);
  render();
}

// queueMark sends a receipt soon, batched per conversation: on a timer,
// not a frame, so a page in a background tab still says "delivered".
let marksTimer = null;
function queueMark(cv, k, upto) {
  const key = `${cv} ${k}`;
  if ((marksDue.get(key) || 0) < upto) marksDue.set(key, upto);
  if (!marksTimer) marksTimer = setTimeout(() => { marksTimer = null; flushMarks(); }, 50);
}

function flushMarks() {
  if (!conn || !conn.client || !conn.client.connected) return; // kept: onReady flushes them
  for (const [key, upto] of marksDue) {
    const [cv, k] = key.split(" ");
    conn.mark(cv, k, upto);
    if (k === "read") conv(cv).read = Math.max(conv(cv).read || 0, upto);
  }
  marksDue.clear();
}

function addItem(th, ev) {
  if (ev.t === "msg" || ev.t === "member" || ev.t === "conv") {
    if (!th.items.has(ev.id)) th.items.set(ev.id, { ev, body: ev.b, deleted: false, reacts: new Map(), seq: ev.seq });
    return;
  }
  const it = th.items.get(ev.tgt);
  if (!it) { // target older than the loaded page: keep for when it arrives
    (th.early ||= []).push(ev);
    return;
  }
  applyChange(it, ev);
}

function applyChange(it, ev) {
  if (ev.t === "edit") {
    if (!it.editSeq || ev.seq > it.editSeq) { it.body = ev.b; it.editSeq = ev.seq; }
  } else if (ev.t === "del") {
    it.deleted = true;
  } else if (ev.t === "react") {
    const who = it.reacts.get(ev.k) || new Set();
    if (ev.rm) who.delete(ev.from); else who.add(ev.from);
    if (who.size) it.reacts.set(ev.k, who); else it.reacts.delete(ev.k);
  }
}

function onPresence(p) {
  const old = presence.get(p.uid);
  if (old && old.pv >= p.pv) return;
  presence.set(p.uid, { s: p.s, pv: p.pv, ls: p.ls, d: p.d, tx: p.tx });
  render();
}

function onTyping(t) {
  if (t.from === me.uid) return;
  let m = typingBy.get(t.cv);
  if (!m) typingBy.set(t.cv, (m = new Map()));
  if (t.s === "c") m.set(t.from, Date.now() + (t.ttl || 8) * 1000);
  else m.delete(t.from);
  renderTyping();
}

// ---- conversations ----

async function openConv(cv) {
  current = cv;
  editing = null;
  document.body.classList.remove("editing");
  $("app").classList.add("open");
  showError("chat-error", "");
  const c = conv(cv);
  c.unread = 0;
  const peer = peerOf(cv);
  if (peer && !contacted.has(peer) && !kiosk) {
    contacted.add(peer);
    // A DM peer becomes a contact, so each sees the other's presence.
    conn.call("contacts.add", { uid: peer }).then(() => {
      conn.watch(peer);
      return conn.call("presence.get", { uids: [peer] });
    }).then((r) => {
      for (const [uid, rec] of Object.entries(r.p || {})) onPresence({ uid, ...rec });
    }).catch((e) => showError("chat-error", e.message));
  }
  render();
  if (!threads.has(cv)) {
    const th = { items: new Map(), first: 0, complete: false, loading: false };
    threads.set(cv, th);
    await loadOlder(cv, true);
  }
  if (c.seq > (c.read || 0) && !kiosk) queueMark(cv, "read", c.seq); // a wall screen reads nothing
  render();
  if (!kiosk) $("composer").focus();
}

async function loadOlder(cv, first) {
  const th = threads.get(cv);
  if (!th || th.loading || (th.complete && !first)) return;
  th.loading = true;
  try {
    const a = { cv, max: 50 };
    if (!first && th.first) a.before = th.first;
    const r = await conn.call("history", a);
    const box = $("msgs");
    const fromBottom = box.scrollHeight - box.scrollTop;
    for (const ev of r.items || []) addItem(th, ev);
    for (const ev of th.early || []) { const it = th.items.get(ev.tgt); if (it) applyChange(it, ev); }
    if (r.first && (!th.first || r.first < th.first)) th.first = r.first;
    th.complete = !!r.complete;
    if (current === cv) {
      renderChat(); // now, so the older page goes above what is in view
      if (!first) box.scrollTop = box.scrollHeight - fromBottom;
    }
    render();
  } catch (e) {
    if (e.code === 404) th.complete = true; // nothing sent yet
    else showError("chat-error", e.message);
  } finally {
    th.loading = false;
  }
}

// ---- rendering ----

let renderQueued = false;
function render() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    renderList();
    renderChat();
    renderTyping();
  });
}

function dot(uid) {
  const p = presence.get(uid);
  const s = p ? p.s : "off";
  return el("span", { cls: "dot", "data-testid": "presence", "data-uid": uid, "data-s": s, title: lastSeen(p) || "unknown", role: "img", "aria-label": `${uid}: ${lastSeen(p) || "unknown"}` });
}

function summary(ev) {
  if (!ev) return "";
  if (ev.t === "msg") return `${ev.from === me.uid ? "You" : ev.from}: ${ev.att && ev.att.length ? `📎 ${ev.att.map((a) => a.n || "file").join(", ")} ` : ""}${ev.b || ""}`;
  if (ev.t === "edit") return `${ev.from}: ${ev.b || ""}`;
  if (ev.t === "del") return "message deleted";
  if (ev.t === "react") return `${ev.from} reacted ${ev.k}`;
  if (ev.t === "member") return `${ev.by || ""} ${ev.op} ${(ev.who || []).join(", ")}`;
  if (ev.t === "conv") return `${ev.by} renamed the group`;
  return "";
}

let listSig = "";
function renderList() {
  const list = $("conv-list");
  const rows = [...convs.values()].sort((a, b) => ((b.last && b.last.ts) || 0) - ((a.last && a.last.ts) || 0));
  // Redraw only what changed: a list redrawn under the pointer loses
  // clicks and focus.
  const sig = JSON.stringify([current, rows.map((c) => {
    const p = peerOf(c.cv);
    const pr = p && presence.get(p);
    return [c.cv, convName(c.cv), summary(c.last), c.unread, pr ? [pr.s, pr.ls] : 0];
  })]);
  if (sig === listSig) return;
  listSig = sig;
  const frag = document.createDocumentFragment();
  for (const c of rows) {
    const peer = peerOf(c.cv);
    const name = convName(c.cv);
    const li = el("li", {
      "data-testid": "conv-item", "data-cv": c.cv, tabindex: 0, role: "button",
      "aria-current": c.cv === current ? "true" : "false",
      "aria-label": `${name}${c.unread ? `, ${c.unread} unread` : ""}`,
      onclick: () => openConv(c.cv),
      onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); openConv(c.cv); } },
    },
    peer ? dot(peer) : el("span", { cls: "dot", text: "", "aria-hidden": "true" }),
    el("div", { cls: "cv-main" }, el("div", { cls: "cv-name", text: name }), el("div", { cls: "cv-last", "data-testid": "conv-last", text: summary(c.last) })),
    c.unread ? el("span", { cls: "unread", "data-testid": "unread", text: String(c.unread) }) : null);
    frag.append(li);
  }
  const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.cv : null;
  list.replaceChildren(frag);
  if (focused) { const f = list.querySelector(`[data-cv="${CSS.escape(focused)}"]`); if (f) f.focus(); }
}

const drawn = new Map(); // row key → {sig, node} of the open conversation

function receiptState(c, it) {
  if (it.ev.from !== me.uid) return "";
  return it.seq <= c.peerRead ? "read" : it.seq <= c.peerDlv ? "dlv" : "sent";
}

function receiptOf(c, it) {
  if (it.ev.from !== me.uid) return null;
  const state = receiptState(c, it);
  const text = state === "read" ? "✓✓" : state === "dlv" ? "✓" : "";
  return el("span", { cls: "receipt", "data-testid": "receipt", "data-state": state, title: state === "read" ? "read" : state === "dlv" ? "delivered" : "sent", text });
}

function attachments(ev) {
  if (!ev.att || !ev.att.length) return null;
  const box = el("div", { cls: "atts" });
  for (const a of ev.att) {
    box.append(el("span", { cls: "att-name", "data-testid": "att-name", text: `📎 ${a.n || "file"}${a.z ? ` (${size(a.z)})` : ""}` }));
    if ((a.ct || "").startsWith("image/")) {
      // w/hh (filled in by the server) reserve the picture's shape.
      const img = el("img", { "data-testid": "preview", "data-fid": a.fid, alt: a.n || "image", width: a.w || undefined, height: a.hh || undefined });
      img.addEventListener("load", keepBottom);
      const url = thumbs.get(a.fid);
      if (url) img.src = url;
      else if (url === "") { box.append(el("span", { text: " (preview not available)" })); continue; }
      else loadThumb(a.fid);
      box.append(img);
    }
  }
  return box;
}

function size(z) {
  return z < 1024 ? `${z} B` : z < 1 << 20 ? `${(z / 1024).toFixed(0)} KB` : `${(z / (1 << 20)).toFixed(1)} MB`;
}

// keepBottom follows an image that grew the list, when the reader was at
// the bottom before it loaded.
function keepBottom(e) {
  const box = $("msgs");
  if (box.scrollHeight - box.scrollTop - box.clientHeight < e.target.height + 60) box.scrollTop = box.scrollHeight;
}

async function loadThumb(fid) {
  if (thumbs.has(fid)) return;
  thumbs.set(fid, undefined);
  try {
    const r = await fetch(`/v1/files/${encodeURIComponent(fid)}?thumb=1`, { headers: { Authorization: `Bearer ${me.token}` } });
    thumbs.set(fid, r.ok ? URL.createObjectURL(await r.blob()) : "");
  } catch {
    thumbs.set(fid, "");
  }
  render();
}

function renderMsg(c, it) {
  const ev = it.ev;
  if (ev.t !== "msg") {
    return el("li", { cls: "msg sys", "data-testid": "event", text: summary(ev) });
  }
  const mine = ev.from === me.uid;
  const li = el("li", { cls: `msg${mine ? " mine" : ""}${it.deleted ? " deleted" : ""}`, "data-testid": "msg", "data-id": ev.id, "data-from": ev.from, "data-seq": ev.seq });
  if (!mine && !c.cv.startsWith("d:")) li.append(el("div", { cls: "who", text: ev.from }));
  li.append(el("div", { cls: "body", "data-testid": "msg-body", text: it.deleted ? "message deleted" : it.body || "" }));
  if (!it.deleted) {
    const att = attachments(ev);
    if (att) li.append(att);
    if (it.reacts.size) {
      const rs = el("div", { cls: "reacts" });
      for (const [k, who] of it.reacts) rs.append(el("span", { "data-testid": "reaction", title: [...who].join(", "), text: `${k} ${who.size}` }));
      li.append(rs);
    }
  }
  const meta = el("div", { cls: "meta" }, el("time", { datetime: new Date(ev.ts).toISOString(), text: clock(ev.ts) + (it.editSeq ? " (edited)" : "") }), receiptOf(c, it));
  if (!it.deleted && !kiosk) {
    const acts = el("span", { cls: "acts" },
      el("button", { type: "button", "data-testid": "react", "aria-label": "React with thumbs up", text: "👍", onclick: () => conn.send({ op: "react", id: ev.id, k: "👍", cmid: cmid() }) }),
      mine ? el("button", { type: "button", "data-testid": "edit", text: "Edit", onclick: () => startEdit(it) }) : null,
      mine ? el("button", { type: "button", "data-testid": "delete", text: it.confirmDel ? "Delete?" : "Delete", "aria-label": it.confirmDel ? "Press again to delete" : "Delete", onclick: () => askDelete(it) }) : null);
    meta.prepend(acts);
  }
  li.append(meta);
  return li;
}

function renderChat() {
  const box = $("msgs");
  if (!current) { box.replaceChildren(); return; }
  const c = conv(current);
  const peer = peerOf(current);
  $("chat-title").textContent = convName(current);
  $("chat-presence").replaceChildren(...(peer ? [dot(peer), document.createTextNode(" " + lastSeen(presence.get(peer)))] : []));
  $("add-member").hidden = !current.startsWith("g:");
  const th = threads.get(current);
  if (!th) return;
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  if (box.dataset.cv !== current) drawn.clear();
  const items = [...th.items.values()].sort((a, b) => a.seq - b.seq);
  const next = [];
  // Each row is redrawn only when what it shows changed: a long
  // conversation costs one comparison per message, not a new node.
  const row = (key, sig, make) => {
    const d = drawn.get(key);
    if (d && d.sig === sig) return next.push(d.node);
    const node = make();
    drawn.set(key, { sig, node });
    next.push(node);
  };
  if (!th.complete) row("more", "", () => el("li", { cls: "msg sys", text: "scroll up for older messages" }));
  for (const it of items) {
    const att = (it.ev.att || []).map((a) => thumbs.get(a.fid));
    const sig = JSON.stringify([it.body, it.deleted, it.editSeq, [...it.reacts].map(([k, w]) => [k, [...w]]), receiptState(c, it), it.confirmDel, att]);
    row(it.ev.id, sig, () => renderMsg(c, it));
  }
  for (const [id, o] of outbox) {
    if (o.cv !== current) continue;
    row("o" + id, o.b, () => el("li", { cls: "msg mine pending", "data-testid": "msg", "data-cmid": id, "data-from": me.uid },
      el("div", { cls: "body", "data-testid": "msg-body", text: o.b }),
      el("div", { cls: "meta" }, el("span", { "data-testid": "receipt", "data-state": "pending", title: "sending", text: "…" }))));
  }
  const now = box.children;
  if (now.length !== next.length || next.some((n, i) => now[i] !== n)) box.replaceChildren(...next);
  if (atBottom || !box.dataset.cv || box.dataset.cv !== current) box.scrollTop = box.scrollHeight;
  box.dataset.cv = current;
}

function renderTyping() {
  const out = $("typing");
  const m = current && typingBy.get(current);
  const now = Date.now();
  const who = m ? [...m].filter(([, exp]) => exp > now).map(([u]) => u) : [];
  out.textContent = who.length ? `${who.join(", ")} ${who.length > 1 ? "are" : "is"} typing…` : "";
}
setInterval(renderTyping, 1000);

// ---- actions ----

function startEdit(it) {
  editing = it.ev.id;
  document.body.classList.add("editing");
  $("composer").value = it.body || "";
  $("send").textContent = "Save";
  $("composer").focus();
}

// askDelete deletes on the second press within 4 s (no modal dialog).
function askDelete(it) {
  if (it.confirmDel) {
    it.confirmDel = false;
    conn.send({ op: "del", id: it.ev.id, cmid: cmid() });
  } else {
    it.confirmDel = true;
    setTimeout(() => { it.confirmDel = false; render(); }, 4000);
  }
  render();
}

function stopEdit() {
  editing = null;
  document.body.classList.remove("editing");
  $("send").textContent = "Send";
  $("composer").value = "";
}

function send(ev) {
  ev.preventDefault();
  const b = $("composer").value.trim();
  if (!current || !b) return;
  if (editing) {
    conn.send({ op: "edit", id: editing, b, cmid: cmid() });
    stopEdit();
    return;
  }
  const id = cmid();
  outbox.set(id, { cv: current, b });
  conn.send({ to: current, cmid: id, b });
  conn.typing(current, "p");
  lastTyp = 0;
  $("composer").value = "";
  render();
}

async function attach() {
  const input = $("attach");
  const file = input.files && input.files[0];
  input.value = "";
  if (!file || !current) return;
  const cv = current;
  $("upload").hidden = false;
  $("upload-label").textContent = `Uploading ${file.name}`;
  $("upload-progress").value = 0;
  try {
    const fid = await upload(file, me.token, (f) => { $("upload-progress").value = Math.round(f * 100); });
    const id = cmid();
    outbox.set(id, { cv, b: file.name });
    // The server fills in name, size, type, hash and image size.
    conn.send({ to: cv, cmid: id, att: [{ fid }] });
    render();
  } catch (e) {
    showError("chat-error", e.message);
  } finally {
    $("upload").hidden = true;
  }
}

async function newDM(ev) {
  ev.preventDefault();
  showError("side-error", "");
  const uid = $("new-dm-uid").value.trim();
  if (!uid || uid === me.uid) return;
  try {
    await conn.call("contacts.add", { uid });
  } catch (e) {
    showError("side-error", e.code === 404 ? `No user ${uid}.` : e.message);
    return;
  }
  contacted.add(uid);
  conn.watch(uid);
  $("new-dm-uid").value = "";
  conv(dmCV(uid));
  openConv(dmCV(uid));
}

async function newGroup(ev) {
  ev.preventDefault();
  showError("side-error", "");
  const name = $("new-group-name").value.trim();
  const members = $("new-group-members").value.split(/[\s,]+/).filter(Boolean);
  if (!name) return;
  try {
    const r = await conn.call("group.create", { name, members });
    $("new-group-name").value = "";
    $("new-group-members").value = "";
    metas.set(r.gid, { name });
    conv(r.cv);
    openConv(r.cv);
  } catch (e) {
    showError("side-error", e.message);
  }
}

async function addMember(ev) {
  ev.preventDefault();
  const uid = $("add-member-uid").value.trim();
  if (!uid || !current || !current.startsWith("g:")) return;
  try {
    await conn.call("group.add", { gid: current.slice(2), uids: [uid] });
    $("add-member-uid").value = "";
  } catch (e) {
    showError("chat-error", e.message);
  }
}

async function search(ev) {
  ev.preventDefault();
  const q = $("search").value.trim();
  const out = $("search-results");
  if (!q) { out.hidden = true; return; }
  out.hidden = false;
  out.replaceChildren(el("li", { text: "searching…" }));
  try {
    const r = await conn.call("search", { q, max: 20 });
    const items = r.items || [];
    out.replaceChildren(...(items.length ? items.map((it) => el("li", {
      "data-testid": "search-result", "data-cv": it.cv, "data-id": it.id, tabindex: 0, role: "button",
      onclick: () => openConv(it.cv),
      onkeydown: (e) => { if (e.key === "Enter") openConv(it.cv); },
    }, el("span", { cls: "cv-name", text: convName(it.cv) }),
    el("span", { cls: "cv-last", text: `${it.from}: ` }, ...(it.hl ? highlight(it.hl) : [document.createTextNode(it.b || "")])))) : [el("li", { text: "no results" })]));
  } catch (e) {
    out.replaceChildren(el("li", { "data-testid": "search-unavailable", text: e.code === 501 ? "Search is not available on this server." : e.message }));
  }
}

function typing() {
  if (!current || editing) return;
  const now = Date.now();
  if (now - lastTyp > 2500) {
    lastTyp = now;
    conn.typing(current, "c");
  }
}

function init() {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("compose").addEventListener("submit", send);
  $("composer").addEventListener("input", typing);
  $("composer").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) send(e);
    if (e.key === "Escape" && editing) stopEdit();
  });
  $("attach").addEventListener("change", attach);
  $("new-dm").addEventListener("submit", newDM);
  $("new-group").addEventListener("submit", newGroup);
  $("add-member").addEventListener("submit", addMember);
  $("search-form").addEventListener("submit", search);
  $("back").addEventListener("click", () => { $("app").classList.remove("open"); current = null; render(); });
  $("msgs").addEventListener("scroll", () => { if (current && $("msgs").scrollTop < 60) loadOlder(current, false); });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && current && !kiosk) {
      const c = conv(current);
      c.unread = 0;
      if (c.seq) queueMark(current, "read", c.seq);
      render();
    }
  });
  if (kiosk) document.body.classList.add("kiosk");
  const s = session();
  if (s && s.token) start(s);
  else {
    $("login").hidden = false;
    $("login-uid").focus();
  }
}

init();
