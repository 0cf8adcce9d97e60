// MQTT.js 5.x against Hermod's ws and wss listeners (Node >= 18; `npm ci` in this folder).
//
// For MQTT 3.1.1 and 5.0, over ws and (with --wss-port) wss trusting --cafile: connect with a
// username/password, subscribe, publish QoS 1, receive it back; then a wrong password must be
// refused (CONNACK 5 on 3.1.1, 0x86 on 5.0); on 5.0, topic aliases from the broker resolved.
// Exits non-zero on any failure; every wait is bounded.
import fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import mqtt from 'mqtt';

const WAIT_MS = 5000;

function parseArgs(argv) {
  const out = { host: '127.0.0.1', path: '/mqtt' };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '').replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    out[key] = argv[i + 1];
  }
  for (const k of ['wsPort', 'username', 'password', 'topic']) {
    if (!out[k]) throw new Error(`missing --${k}`);
  }
  if (!['127.0.0.1', 'localhost', '::1'].includes(out.host)) throw new Error('refusing a non-loopback host');
  return out;
}

function withTimeout(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: timed out after ${WAIT_MS} ms`)), WAIT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function options(args, scheme, version, password) {
  const o = {
    clientId: `mqttjs-${scheme}-${randomBytes(4).toString('hex')}`,
    username: args.username,
    password,
    protocolVersion: version,
    reconnectPeriod: 0,
    connectTimeout: WAIT_MS,
    keepalive: 30,
  };
  if (scheme === 'wss') {
    o.ca = fs.readFileSync(args.cafile);
    o.rejectUnauthorized = true;
  }
  return o;
}

async function roundTrip(args, scheme, port, version) {
  const name = `${scheme} v${version === 5 ? '5' : '311'}`;
  const url = `${scheme}://${args.host}:${port}${args.path}`;
  const client = mqtt.connect(url, options(args, scheme, version, args.password));
  try {
    await withTimeout(new Promise((resolve, reject) => {
      client.once('connect', resolve);
      client.once('error', reject);
    }), `${name} connect`);
    const granted = await withTimeout(client.subscribeAsync(args.topic, { qos: 1 }), `${name} subscribe`);
    if (granted.length !== 1 || granted[0].qos !== 1) throw new Error(`${name}: SUBACK ${JSON.stringify(granted)}`);
    const payload = `mqtt.js ${name} ${randomBytes(6).toString('hex')}`;
    const received = new Promise((resolve) => {
      client.on('message', (topic, body, packet) => {
        if (body.toString() === payload) resolve({ topic, qos: packet.qos });
      });
    });
    await withTimeout(client.publishAsync(args.topic, payload, { qos: 1 }), `${name} publish`);
    const msg = await withTimeout(received, `${name} receive`);
    if (msg.topic !== args.topic || msg.qos !== 1) throw new Error(`${name}: got ${JSON.stringify(msg)}`);
    console.log(`PASS ${name}: connect, subscribe, publish QoS 1, receive`);
  } finally {
    await client.endAsync(true).catch(() => {});
  }
}

// MQTT 5 with a Topic Alias Maximum: Hermod sends a repeated topic as its alias alone, and
// MQTT.js must resolve it to the topic every time.
async function topicAliases(args, scheme, port, version) {
  if (version !== 5) return;
  const name = `${scheme} v5 topic aliases`;
  const url = `${scheme}://${args.host}:${port}${args.path}`;
  const o = options(args, scheme, version, args.password);
  o.properties = { topicAliasMaximum: 4 };
  const client = mqtt.connect(url, o);
  try {
    await withTimeout(new Promise((resolve, reject) => {
      client.once('connect', resolve);
      client.once('error', reject);
    }), `${name} connect`);
    await withTimeout(client.subscribeAsync(args.topic, { qos: 1 }), `${name} subscribe`);
    const tag = randomBytes(6).toString('hex');
    const seen = [];
    const all = new Promise((resolve) => {
      client.on('message', (topic, body, packet) => {
        if (!body.toString().startsWith(tag)) return;
        seen.push({ topic, alias: packet.properties?.topicAlias ?? null });
        if (seen.length === 3) resolve();
      });
    });
    for (let i = 0; i < 3; i += 1) {
      await withTimeout(client.publishAsync(args.topic, `${tag} ${i}`, { qos: 1 }), `${name} publish`);
    }
    await withTimeout(all, `${name} receive`);
    if (seen.some((m) => m.topic !== args.topic)) throw new Error(`${name}: got ${JSON.stringify(seen)}`);
    if (args.topic.length >= 8 && seen.every((m) => m.alias === null)) {
      throw new Error(`${name}: no alias used: ${JSON.stringify(seen)}`);
    }
    console.log(`PASS ${name}: 3 messages, topics resolved (${JSON.stringify(seen.map((m) => m.alias))})`);
  } finally {
    await client.endAsync(true).catch(() => {});
  }
}

async function wrongPassword(args, scheme, port, version) {
  const name = `${scheme} v${version === 5 ? '5' : '311'} wrong password`;
  const url = `${scheme}://${args.host}:${port}${args.path}`;
  const client = mqtt.connect(url, options(args, scheme, version, `${args.password}-wrong`));
  try {
    const err = await withTimeout(new Promise((resolve) => {
      client.once('connect', () => resolve(null));
      client.once('error', resolve);
    }), `${name} connect`);
    if (!err) throw new Error(`${name}: accepted`);
    const want = version === 5 ? 0x86 : 5;
    if (err.code !== want) throw new Error(`${name}: refused with ${err.code} (${err.message}), expected ${want}`);
    console.log(`PASS ${name}: refused with ${err.code}`);
  } finally {
    await client.endAsync(true).catch(() => {});
  }
}

const args = parseArgs(process.argv.slice(2));
const targets = [['ws', args.wsPort]];
if (args.wssPort) {
  if (!args.cafile) throw new Error('--wss-port needs --cafile');
  targets.push(['wss', args.wssPort]);
}
let failures = 0;
for (const [scheme, port] of targets) {
  for (const version of [4, 5]) {
    for (const check of [roundTrip, topicAliases, wrongPassword]) {
      try {
        await check(args, scheme, port, version);
      } catch (e) {
        failures += 1;
        console.log(`FAIL ${scheme} v${version === 5 ? "5" : "311"} ${check.name}: ${e.message}`);
      }
    }
  }
}
console.log(`mqtt.js websockets: ${failures} failure(s)`);
process.exit(failures ? 1 : 0);
