// A stand-in for the admin listener for UI work without a Rust build: serves
// crates/admin/assets/ from disk (with the CSP the real server sends) and a fake /api/v5 after
// docs/admin-api.md, with 20,000 clients. Not a test of the server.
//
//   node interop/dashboard/mock-server.mjs [port]     (default 18099, 127.0.0.1 only)
//   login: admin / initial-pass (password_change_required), then whatever you set.
//   MOCK_RULES=none: no rules and no bridges (the Rules page's empty state).

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const ASSETS = path.resolve(here, '../../crates/admin/assets');
const PORT = +(process.argv[2] || 18099);
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
const TYPES = { '.html': 'text/html; charset=utf-8', '.css': 'text/css; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.svg': 'image/svg+xml' };

const start = Date.now();
let password = 'initial-pass';
let mustChange = true;
const tokens = new Set();
const clients = [];
for (let i = 0; i < 20000; i++) {
  const id = i % 7 === 0 ? `sensor-${String(i).padStart(5, '0')}` : `device/${(i * 2654435761 % 1e6).toString(36)}-${i}`;
  clients.push({
    clientid: id, username: i % 3 ? `user${i % 50}` : null, ip_address: `127.0.${(i >> 8) & 255}.${i & 255}`, port: 40000 + (i % 20000),
    connected: i % 11 !== 0, proto_name: 'MQTT', proto_ver: [4, 5, 5, 3][i % 4], keepalive: 60, clean_start: i % 2 === 0,
    expiry_interval: i % 2 ? 3600 : 0, connected_at: new Date(start - i * 1000).toISOString(), subscriptions_cnt: i % 4,
    mqueue_len: i % 13 === 0 ? i % 97 : 0, inflight_cnt: i % 17 === 0 ? 3 : 0, node: 'hermod@127.0.0.1', is_bridge: false,
  });
}
const subs = new Map();
clients.slice(0, 3000).forEach((c, i) => subs.set(c.clientid, Array.from({ length: c.subscriptions_cnt }, (_, k) => ({ clientid: c.clientid, topic: k === 2 ? `$share/g${i % 3}/fleet/+/state` : `fleet/${i % 40}/${['temp', 'hum', 'cmd'][k % 3]}`, qos: k % 3, nl: 0, rap: 0, rh: 0, node: 'hermod@127.0.0.1' }))));
const retained = [
  { topic: 'status/gateway-1', qos: 1, payload: Buffer.from('{"online":true,"fw":"2.4.1","since":"2025-11-30T10:00:00Z"}').toString('base64') },
  { topic: 'fleet/7/config', qos: 0, payload: Buffer.from('interval=10\nunit=C\n').toString('base64') },
  { topic: 'bin/blob', qos: 0, payload: Buffer.from([0, 1, 2, 0xff, 0xfe, 0x41, 0x42, 0x80, 0x10, 0x20, 0x30, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0]).toString('base64') },
];
const banned = [{ as: 'clientid', who: 'evil-bot', until: new Date(start + 86400e3).toISOString(), by: 'admin', reason: 'flooding' }];
const users = [{ username: 'admin', role: 'administrator', description: 'initial administrator' }];
const keys = [];
// Rules and bridges (GET /rules, /bridges): counters move on every read.
const ruleMetrics = (m) => {
  const acts = m.actions;
  const ok = acts.reduce((s, a) => s + a.succeeded, 0), bad = acts.reduce((s, a) => s + a.failed, 0);
  return { ...m, 'failed.exception': m.failed, 'failed.no_result': m.no_result, 'actions.total': ok + bad, 'actions.success': ok, 'actions.failed': bad };
};
const rules = process.env.MOCK_RULES === 'none' ? [] : [
  { name: 'collector', sql: 'SELECT id, clientid, topic, payload, timestamp FROM "dev/gw"', from: ['dev/gw'], m: { matched: 182344, passed: 182344, no_result: 0, failed: 0, acked: 182301, buffered: 43, dropped: 0, actions: [{ target: 'sqlite:local', succeeded: 182301, failed: 0, retried: 0, pending: 43 }] } },
  { name: 'hot-alerts', sql: 'SELECT clientid, payload.temp AS t FROM "sensors/+/temp", "sensors/+/hum" WHERE payload.temp > 80', from: ['sensors/+/temp', 'sensors/+/hum'], m: { matched: 90211, passed: 312, no_result: 89893, failed: 6, acked: 90205, buffered: 0, dropped: 0, actions: [{ target: 'republish', succeeded: 312, failed: 0, retried: 0, pending: 0 }, { target: 'http:ops-hook', succeeded: 297, failed: 3, retried: 41, pending: 12 }] } },
  { name: 'archive', sql: 'SELECT * FROM "fleet/#"', from: ['fleet/#'], m: { matched: 1204332, passed: 1204332, no_result: 0, failed: 0, acked: 1100000, buffered: 104332, dropped: 1750, actions: [{ target: 'postgres:warehouse', succeeded: 1100000, failed: 0, retried: 5310, pending: 2000 }] } },
  { name: 'connects', sql: 'SELECT clientid, peerhost, timestamp FROM "$events/client_connected"', from: ['$events/client_connected'], m: { matched: 0, passed: 0, no_result: 0, failed: 0, acked: 0, buffered: 0, dropped: 0, actions: [{ target: 'sqlite:local', succeeded: 0, failed: 0, retried: 0, pending: 0 }] } },
];
const bridges = process.env.MOCK_RULES === 'none' ? [] : [
  { name: 'cloud', server: 'central.example.net:8883', connected: true, topics: ['sensors/# out 1 local/ site1/', 'cmd/# in 1'], metrics: { messages_out: 53120, messages_in: 18, messages_dropped: 0, reconnects: 2, failed_connects: 5 } },
  { name: 'backup', server: '10.20.0.7:1883', connected: false, topics: ['fleet/# out 0'], metrics: { messages_out: 0, messages_in: 0, messages_dropped: 12, reconnects: 0, failed_connects: 318 } },
];
const ruleJson = (r) => ({ id: r.name, name: r.name, sql: r.sql, from: r.from, enable: true, description: '', actions: r.m.actions.map((a) => a.target), node: 'hermod@127.0.0.1', metrics: ruleMetrics(r.m) });
function tickRules() {
  for (const r of rules) {
    if (!r.m.matched) continue;
    const n = 1 + Math.floor(Math.random() * 20);
    r.m.matched += n; r.m.passed += r.m.no_result ? 1 : n; r.m.no_result += r.m.no_result ? n - 1 : 0; r.m.acked += n;
    for (const a of r.m.actions) a.succeeded += r.m.no_result ? 1 : n;
  }
  for (const b of bridges) if (b.connected) b.metrics.messages_out += Math.floor(Math.random() * 30);
}

const history = [];
for (let t = start - 3600e3; t < start; t += 10e3) {
  const k = (t - start + 3600e3) / 3600e3;
  history.push({ time_stamp: t, connections: Math.round(18000 + 2000 * k), sessions: 20000, subscriptions: Math.round(30000 + 3000 * k), topics: 120, retained: 3, received: Math.round(9000 + 3000 * Math.sin(k * 9)), sent: Math.round(12000 + 3000 * Math.sin(k * 9)), dropped: k > .8 ? 40 : 0 });
}

function send(res, status, body, headers = {}) {
  const data = body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': typeof body === 'string' ? 'text/plain' : 'application/json', ...headers });
  res.end(data);
}
function page(list, q) {
  const p = Math.max(1, +(q.get('page') || 1)), l = Math.min(10000, +(q.get('limit') || 100));
  const data = list.slice((p - 1) * l, p * l);
  return { data, meta: { count: list.length, limit: l, page: p, hasnext: p * l < list.length } };
}
async function body(req) {
  let s = '';
  for await (const c of req) s += c;
  return s ? JSON.parse(s) : {};
}

http.createServer(async (req, res) => {
  const u = new URL(req.url, 'http://x');
  const p = u.pathname, q = u.searchParams, m = req.method;
  if (!p.startsWith('/api/v5')) {
    const rel = p === '/' ? 'index.html' : p.startsWith('/assets/') ? p.slice(8) : null;
    const file = rel && path.resolve(ASSETS, rel);
    if (!file || !file.startsWith(ASSETS) || !fs.existsSync(file)) return send(res, 404, 'not found\n');
    res.writeHead(200, { 'Content-Type': TYPES[path.extname(file)] || 'text/plain', 'Content-Security-Policy': CSP, 'Cache-Control': 'no-cache' });
    return res.end(fs.readFileSync(file));
  }
  const r = p.slice(7);
  if (r === '/status') return q.get('format') === 'json' ? send(res, 200, { status: 'running', version: '0.1.0-mock', uptime: Math.round((Date.now() - start) / 1000) + 93784 }) : send(res, 200, 'hermod 0.1.0-mock is running');
  if (r === '/login' && m === 'POST') {
    const b = await body(req);
    if (b.username !== 'admin' || b.password !== password) return send(res, 401, { code: 'BAD_USERNAME_OR_PWD', message: 'bad username or password' });
    const t = Math.random().toString(36).slice(2);
    tokens.add(t);
    return send(res, 200, { token: t, role: 'administrator', version: '0.1.0-mock', password_change_required: mustChange });
  }
  const auth = (req.headers.authorization || '').replace(/^Bearer /, '');
  if (!tokens.has(auth)) return send(res, 401, { code: 'BAD_TOKEN', message: 'token missing or invalid' });
  let mm;
  if (r === '/logout') { tokens.delete(auth); return send(res, 204); }
  if (r === '/monitor_current') {
    const w = Math.sin(Date.now() / 20000);
    return send(res, 200, { connections: 20000, live_connections: 18181, sessions: 20000, subscriptions: 33012, topics: 123, retained_msg_count: retained.length, received_msg_rate: 950 + 300 * w, sent_msg_rate: 1300 + 300 * w, dropped_msg_rate: w > .8 ? 12 : 0 });
  }
  if (r === '/monitor') { const n = Math.min(history.length, Math.round(+(q.get('latest') || 3600) / 10)); return send(res, 200, history.slice(-n)); }
  if (r === '/clients' && m === 'GET') {
    let list = clients;
    if (q.get('like_clientid')) list = list.filter((c) => c.clientid.includes(q.get('like_clientid')));
    if (q.get('clientid')) list = list.filter((c) => c.clientid === q.get('clientid'));
    if (q.get('username')) list = list.filter((c) => c.username === q.get('username'));
    if (q.get('conn_state')) list = list.filter((c) => c.connected === (q.get('conn_state') === 'connected'));
    if (q.get('proto_ver')) list = list.filter((c) => c.proto_ver === +q.get('proto_ver'));
    return send(res, 200, page(list, q));
  }
  if ((mm = /^\/clients\/([^/]+)(\/.*)?$/.exec(r))) {
    const id = decodeURIComponent(mm[1]);
    const i = clients.findIndex((c) => c.clientid === id);
    if (i < 0) return send(res, 404, { code: 'CLIENTID_NOT_FOUND', message: 'no such client' });
    if (!mm[2] && m === 'GET') return send(res, 200, clients[i]);
    if (!mm[2] && m === 'DELETE') { clients.splice(i, 1); return send(res, 204); }
    if (mm[2] === '/subscriptions') return send(res, 200, subs.get(id) || []);
    if (mm[2] === '/subscribe') { const b = await body(req); const l = subs.get(id) || []; l.push({ clientid: id, topic: b.topic, qos: b.qos, nl: b.nl, rap: b.rap, rh: b.rh, node: 'hermod@127.0.0.1' }); subs.set(id, l); clients[i].subscriptions_cnt = l.length; return send(res, 200, { clientid: id, topic: b.topic, qos: b.qos, node: 'hermod@127.0.0.1' }); }
    if (mm[2] === '/unsubscribe') { const b = await body(req); subs.set(id, (subs.get(id) || []).filter((s) => s.topic !== b.topic)); return send(res, 204); }
  }
  if (r === '/subscriptions') { let l = [...subs.values()].flat(); if (q.get('clientid')) l = l.filter((s) => s.clientid === q.get('clientid')); if (q.get('topic')) l = l.filter((s) => s.topic === q.get('topic')); return send(res, 200, page(l, q)); }
  if (r === '/topics') { let l = [...new Set([...subs.values()].flat().map((s) => s.topic))].sort().map((t) => ({ topic: t, node: 'hermod@127.0.0.1' })); if (q.get('topic')) l = l.filter((s) => s.topic === q.get('topic')); return send(res, 200, page(l, q)); }
  if (r === '/mqtt/retainer/messages') return send(res, 200, page(retained.map((x) => ({ ...x, payload_size: Buffer.from(x.payload, 'base64').length })), q));
  if ((mm = /^\/mqtt\/retainer\/message\/(.+)$/.exec(r))) {
    const t = decodeURIComponent(mm[1]); const i = retained.findIndex((x) => x.topic === t);
    if (i < 0) return send(res, 404, { code: 'NOT_FOUND', message: 'no retained message' });
    if (m === 'DELETE') { retained.splice(i, 1); return send(res, 204); }
    return send(res, 200, { ...retained[i], payload_size: Buffer.from(retained[i].payload, 'base64').length });
  }
  if (r === '/rules') { tickRules(); return send(res, 200, page(rules.map(ruleJson), q)); }
  if ((mm = /^\/rules\/([^/]+)$/.exec(r))) { const x = rules.find((y) => y.name === decodeURIComponent(mm[1])); return x ? send(res, 200, ruleJson(x)) : send(res, 404, { code: 'NOT_FOUND', message: 'no rule named ' + decodeURIComponent(mm[1]) }); }
  if (r === '/bridges') return send(res, 200, bridges.map((b) => ({ id: 'mqtt:' + b.name, type: 'mqtt', name: b.name, enable: true, status: b.connected ? 'connected' : 'disconnected', ...b, node: 'hermod@127.0.0.1' })));
  if (r === '/banned' && m === 'GET') return send(res, 200, page(banned, q));
  if (r === '/banned' && m === 'POST') { const b = await body(req); const e = { until: null, reason: '', ...b, by: 'admin' }; banned.push(e); return send(res, 200, e); }
  if ((mm = /^\/banned\/([^/]+)\/(.+)$/.exec(r)) && m === 'DELETE') { const i = banned.findIndex((b) => b.as === decodeURIComponent(mm[1]) && b.who === decodeURIComponent(mm[2])); if (i < 0) return send(res, 404, { code: 'NOT_FOUND' }); banned.splice(i, 1); return send(res, 204); }
  if (r === '/users' && m === 'GET') return send(res, 200, users);
  if (r === '/users' && m === 'POST') { const b = await body(req); if (users.some((u) => u.username === b.username)) return send(res, 409, { code: 'ALREADY_EXISTS', message: 'user exists' }); users.push({ username: b.username, role: b.role, description: b.description }); return send(res, 200, users.at(-1)); }
  if ((mm = /^\/users\/([^/]+)\/change_pwd$/.exec(r))) { const b = await body(req); if (b.old_pwd !== password) return send(res, 400, { code: 'BAD_REQUEST', message: 'old password is wrong' }); password = b.new_pwd; mustChange = false; return send(res, 204); }
  if ((mm = /^\/users\/([^/]+)$/.exec(r)) && m === 'DELETE') { const i = users.findIndex((u) => u.username === decodeURIComponent(mm[1])); users.splice(i, 1); return send(res, 204); }
  if (r === '/api_key' && m === 'GET') return send(res, 200, keys);
  if (r === '/api_key' && m === 'POST') { const b = await body(req); const k = { name: b.name, api_key: 'k' + Math.random().toString(16).slice(2, 14), role: b.role, enable: true, expired_at: b.expired_at || 'infinity', desc: b.desc }; keys.push(k); return send(res, 200, { ...k, api_secret: 'S' + Math.random().toString(36).slice(2) + Math.random().toString(36).slice(2) }); }
  if ((mm = /^\/api_key\/([^/]+)$/.exec(r))) { const i = keys.findIndex((k) => k.name === decodeURIComponent(mm[1])); if (i < 0) return send(res, 404, { code: 'NOT_FOUND' }); if (m === 'DELETE') { keys.splice(i, 1); return send(res, 204); } const b = await body(req); Object.assign(keys[i], b); return send(res, 200, keys[i]); }
  return send(res, 404, { code: 'NOT_FOUND', message: `${m} ${p}` });
}).listen(PORT, '127.0.0.1', () => console.log(`mock admin API on http://127.0.0.1:${PORT}/`));
