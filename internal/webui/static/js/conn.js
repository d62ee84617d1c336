// Conn: one device's MQTT connection speaking the Tern protocol (PROTOCOL
// §3–§9) over MQTT over WebSocket on this page's origin. It keeps the
// stream cursor `us` in localStorage, syncs from it after every
// (re)connect and hands events to the page strictly in stream order.
import mqtt from "../vendor/mqtt/mqtt.esm.js";

const RPC_TIMEOUT = 15000;

export class Conn extends EventTarget {
  constructor(sess) {
    super();
    this.uid = sess.uid;
    this.did = sess.did;
    this.token = sess.token;
    this.up = `im/up/${this.uid}/${this.did}/`;
    this.down = `im/u/${this.uid}/d/${this.did}/`;
    this.curKey = `tern.us.${this.uid}.${this.did}`;
    this.cursor = Number(localStorage.getItem(this.curKey) || 0);
    this.pending = new Map(); // rid → {resolve, reject, timer}
    this.rid = 0;
    this.syncing = false;
    this.held = []; // live events that arrived during a sync
    this.presTopics = new Set();
  }

  emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  start() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    this.client = mqtt.connect(`${proto}//${location.host}/mqtt`, {
      clientId: `${this.uid}.${this.did}`,
      username: this.uid,
      password: this.token,
      protocolVersion: 5,
      clean: true,
      keepalive: 30,
      reconnectPeriod: 1000,
      connectTimeout: 10000,
      resubscribe: false, // subscriptions are made again on every connect
      will: { topic: this.up + "pres", payload: '{"s":"off"}', qos: 1, retain: false },
    });
    this.client.on("connect", () => this.onConnect());
    this.client.on("reconnect", () => this.emit("state", "reconnecting"));
    this.client.on("offline", () => this.emit("state", "reconnecting"));
    this.client.on("close", () => { this.failAll("connection lost"); this.emit("state", "reconnecting"); });
    this.client.on("error", (err) => {
      // Refused CONNECT (bad or revoked token): the session is over.
      if (err && (err.code === 134 || err.code === 135 || err.code === 4 || err.code === 5)) {
        this.emit("denied", err.message);
      }
    });
    this.client.on("message", (topic, payload) => this.onMessage(topic, payload));
  }

  stop() {
    if (this.client) this.client.end(true);
  }

  async onConnect() {
    this.emit("state", "syncing");
    try {
      await this.client.subscribeAsync(this.down + "#", { qos: 1 });
      if (this.presTopics.size) await this.client.subscribeAsync([...this.presTopics], { qos: 1 });
      const h = await this.call("hello", { enc: "json", feat: { typing: true, calls: false, files: true } });
      this.limits = h.limits;
      // A new browser starts at the head of the stream: the conversation
      // list and history give the past; replaying it all would only
      // delay the first view.
      if (this.cursor === 0 && h.us_head > 0) this.setCursor(h.us_head);
      await this.sync();
      this.emit("state", "online");
      this.emit("ready");
    } catch (e) {
      this.emit("state", "reconnecting");
      this.emit("problem", String(e.message || e));
    }
  }

  // sync reads the stream from the cursor until `more` is false, holding
  // live events meanwhile, then applies the held ones after the cursor.
  async sync() {
    if (this.syncing) return;
    this.syncing = true;
    try {
      for (;;) {
        const r = await this.call("sync", { since: this.cursor, max: 500 });
        if (r.reset) {
          this.setCursor(r.next);
          this.emit("reset", r);
          break;
        }
        for (const ev of r.ev || []) this.apply(ev);
        if (r.next > this.cursor) this.setCursor(r.next);
        if (!r.more) break;
      }
    } finally {
      this.syncing = false;
    }
    const held = this.held.sort((a, b) => a.us - b.us);
    this.held = [];
    for (const ev of held) this.live(ev);
  }

  setCursor(us) {
    this.cursor = us;
    localStorage.setItem(this.curKey, String(us));
  }

  apply(ev) {
    if (ev.us && ev.us <= this.cursor) return; // seen already
    if (ev.us) this.setCursor(ev.us);
    this.emit("event", ev);
  }

  // live takes an event of …/in: the next one in the stream is applied,
  // one already applied is dropped, and a gap means something was missed:
  // sync fills it, in order.
  live(ev) {
    if (this.syncing) { this.held.push(ev); return; }
    if (!ev.us || ev.us === this.cursor + 1) { this.apply(ev); return; }
    if (ev.us <= this.cursor) return;
    this.held.push(ev);
    this.sync().catch((e) => this.emit("problem", String(e.message || e)));
  }

  onMessage(topic, payload) {
    let v;
    try { v = JSON.parse(new TextDecoder().decode(payload)); } catch { return; }
    if (topic.startsWith("im/p/")) {
      this.emit("presence", { uid: topic.slice(5), ...v });
      return;
    }
    if (topic.startsWith("im/g/") && topic.endsWith("/meta")) {
      this.emit("meta", { gid: topic.slice(5, -5), ...v });
      return;
    }
    if (!topic.startsWith(this.down)) return;
    const ch = topic.slice(this.down.length);
    if (ch === "in") this.live(v);
    else if (ch === "eph") {
      if (v.t === "pres") this.emit("presence", v);
      else if (v.t === "typ") this.emit("typing", v);
    } else if (ch === "rpc") {
      if (v.rid !== undefined && this.pending.has(v.rid)) {
        const p = this.pending.get(v.rid);
        this.pending.delete(v.rid);
        clearTimeout(p.timer);
        if (v.ok) p.resolve(v.r || {});
        else p.reject(Object.assign(new Error(v.err ? v.err.msg : "failed"), { code: v.err && v.err.code }));
      } else if (v.t === "err") {
        this.emit("refused", v); // a command refused: code, msg, cmid
      }
    }
  }

  call(op, a) {
    const rid = `r${++this.rid}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(rid);
        reject(Object.assign(new Error(`${op}: no answer`), { code: 504 }));
      }, RPC_TIMEOUT);
      this.pending.set(rid, { resolve, reject, timer });
      this.client.publish(this.up + "rpc", JSON.stringify({ rid, op, a: a || {} }), { qos: 1 }, (err) => {
        if (err && this.pending.has(rid)) {
          this.pending.delete(rid);
          clearTimeout(timer);
          reject(err);
        }
      });
    });
  }

  failAll(why) {
    for (const [rid, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(Object.assign(new Error(why), { code: 503 }));
      this.pending.delete(rid);
    }
  }

  // send publishes a msg command (send, edit, del, react); MQTT.js keeps
  // it while offline and the server deduplicates on cmid.
  send(cmd) {
    this.client.publish(this.up + "msg", JSON.stringify(cmd), { qos: 1 });
  }

  mark(cv, k, upto) {
    this.client.publish(this.up + "rcpt", JSON.stringify({ cv, k, upto }), { qos: 1 });
  }

  typing(cv, s) {
    if (this.client.connected) this.client.publish(this.up + "typ", JSON.stringify({ cv, s }), { qos: 0 });
  }

  // watch subscribes to a user's retained presence (allowed for contacts
  // and co-members) and keeps it across reconnects.
  watch(uid) { this.watchTopic(`im/p/${uid}`); }

  // watchTopic subscribes to a retained topic (presence, group meta) and
  // keeps it across reconnects.
  watchTopic(t) {
    if (this.presTopics.has(t)) return;
    this.presTopics.add(t);
    if (!this.client.connected) return;
    this.client.subscribe(t, { qos: 1 }, (err, granted) => {
      // Refused (not a contact yet): ask again next time.
      if (err || !granted || !granted.length || granted[0].qos >= 128) this.presTopics.delete(t);
    });
  }
}

let cmidN = 0;
export function cmid() {
  return `w${Date.now().toString(36)}${(++cmidN).toString(36)}`;
}
