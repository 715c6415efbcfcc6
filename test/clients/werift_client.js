// werift (npm, 0.24.4) as a WHIP publisher or WHEP viewer of Ferry, for test/werift_test.go,
// which runs it with Node in a client namespace of the clients world (werift comes from
// NODE_PATH, installed outside the checkout).
//
//   node werift_client.js publish URL TOKEN ICE_JSON
//   node werift_client.js watch URL TOKEN ICE_JSON KINDS [restart]
//
// It prints result lines "NETNS key=value" (netnsReport's form) and runs until its standard
// input ends or says "quit". Both roles are relay-only (iceTransportPolicy "relay") and
// trickle their candidates by PATCH after a first POST without any. werift has no encoder,
// so a publisher sends the RTP it is fed here: every 20 ms a VP8 packet (a keyframe every
// 30th, the payload tagged "wf" with a counter) and an Opus frame of silence. A viewer
// counts the RTP packets of each kind, VP8 keyframes, and the counters of a werift
// publisher's packets in order; with "restart" it then restarts ICE by PATCH and reports
// once packets flow again. werift uses only the first TURN URL, over udp.
'use strict';

const { RTCPeerConnection, RTCRtpCodecParameters, MediaStreamTrack, RtpPacket, RtpHeader } = require('werift');
const readline = require('readline');

const report = (key, value) => console.log(`NETNS ${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, ms, cond) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

const [role, url, token, iceJSON, kinds, restartArg] = process.argv.slice(2);
const auth = { Authorization: `Bearer ${token}` };

function newPC() {
  return new RTCPeerConnection({
    iceServers: JSON.parse(iceJSON),
    iceTransportPolicy: 'relay',
    codecs: {
      video: [new RTCRtpCodecParameters({ mimeType: 'video/VP8', clockRate: 90000,
        rtcpFeedback: [{ type: 'nack' }, { type: 'nack', parameter: 'pli' }] })],
      audio: [new RTCRtpCodecParameters({ mimeType: 'audio/opus', clockRate: 48000, channels: 2 })],
    },
  });
}

// sdpfrag is an RFC 8840 fragment: the local ICE credentials, and candidates given to the
// first section.
function sdpfrag(pc, candidates, done) {
  const sdp = pc.localDescription.sdp;
  const lines = [`a=ice-ufrag:${sdp.match(/a=ice-ufrag:(.*)\r\n/)[1]}`, `a=ice-pwd:${sdp.match(/a=ice-pwd:(.*)\r\n/)[1]}`,
    'm=audio 9 RTP/AVP 0', `a=mid:${sdp.match(/a=mid:(.*)\r\n/)[1]}`];
  for (const c of candidates) lines.push(`a=${c.candidate}`);
  if (done) lines.push('a=end-of-candidates');
  return lines.join('\r\n') + '\r\n';
}

// trickler PATCHes local candidates as they come, in order, once the session is known.
function trickler(pc) {
  const t = { resource: null, paused: false, queue: [], done: false, sent: 0, chain: Promise.resolve() };
  t.flush = () => {
    if (!t.resource || t.paused || (!t.queue.length && !t.done)) return;
    const body = sdpfrag(pc, t.queue, t.done);
    t.sent += t.queue.length;
    t.queue = [];
    t.done = false;
    t.chain = t.chain.then(async () => {
      const r = await fetch(t.resource, { method: 'PATCH', body,
        headers: { ...auth, 'Content-Type': 'application/trickle-ice-sdpfrag' } });
      if (r.status !== 204) fail(new Error(`trickle PATCH: ${r.status}`));
    });
  };
  pc.onIceCandidate.subscribe((c) => {
    if (!c) t.done = true;
    else t.queue.push(c);
    t.flush();
  });
  return t;
}

async function negotiate(pc) {
  const trickle = trickler(pc);
  await pc.setLocalDescription(await pc.createOffer());
  const offer = pc.localDescription.sdp.split('\r\n').filter((l) => !l.startsWith('a=candidate:')).join('\r\n');
  const r = await fetch(url, { method: 'POST', body: offer, headers: { ...auth, 'Content-Type': 'application/sdp' } });
  if (r.status !== 201) throw new Error(`POST ${url}: ${r.status} ${await r.text()}`);
  const answer = await r.text();
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  trickle.resource = new URL(r.headers.get('Location'), url).href;
  trickle.flush();
  await until('a connection', 20000, () => {
    if (pc.connectionState === 'failed') throw new Error('the connection failed');
    return pc.connectionState === 'connected';
  });
  return { answer, trickle, stream: r.headers.get('Ferry-Stream') };
}

// pair is the selected ICE pair: the local candidate's type, the remote address, and the
// local address.
function pair(pc) {
  const p = pc.iceTransports[0].connection.nominated;
  return p ? `${p.localCandidate.type} ${p.remoteCandidate.host}:${p.remoteCandidate.port} from ${p.localCandidate.host}:${p.localCandidate.port}`
    : 'none';
}

async function publish(pc) {
  const video = new MediaStreamTrack({ kind: 'video' });
  const audio = new MediaStreamTrack({ kind: 'audio' });
  pc.addTransceiver(video, { direction: 'sendonly' });
  pc.addTransceiver(audio, { direction: 'sendonly' });
  const { stream } = await negotiate(pc);
  let n = 0;
  const timer = setInterval(() => {
    n++;
    const key = n % 30 === 1;
    const vp8 = Buffer.alloc(8);
    vp8[0] = 0x10; // start of partition 0
    vp8[1] = key ? 0x00 : 0x01; // the frame's P bit: 0 is a keyframe
    vp8.write('wf', 2);
    vp8.writeUInt32BE(n, 4);
    video.writeRtp(new RtpPacket(new RtpHeader({ sequenceNumber: n & 0xffff, timestamp: n * 1800, marker: true }), vp8));
    audio.writeRtp(new RtpPacket(new RtpHeader({ sequenceNumber: n & 0xffff, timestamp: n * 960, marker: true }),
      Buffer.from([0xf8, 0xff, 0xfe])));
  }, 20);
  report('pair', pair(pc));
  report('published', stream);
  return () => clearInterval(timer);
}

// vp8Keyframe reads a VP8 payload descriptor (RFC 7741 section 4.2) and the first byte of
// the frame after it: the start of a keyframe has its P bit clear.
function vp8Keyframe(p) {
  if (!(p[0] & 0x10) || (p[0] & 0x07) !== 0) return false; // not the start of partition 0
  let i = 1;
  if (p[0] & 0x80) { // X: an extension byte follows
    const ext = p[1];
    i = 2;
    if (ext & 0x80) i += (p[i] & 0x80) ? 2 : 1; // I: a 7 or 15 bit picture ID
    if (ext & 0x40) i++; // L: TL0PICIDX
    if (ext & 0x30) i++; // T or K: TID/Y/KEYIDX
  }
  return p.length > i && (p[i] & 0x01) === 0;
}

async function watch(pc) {
  const got = { video: 0, audio: 0, keyframes: 0, counted: 0, outOfOrder: 0 };
  let last = 0;
  pc.onTrack.subscribe((track) => {
    track.onReceiveRtp.subscribe((rtp) => {
      got[track.kind]++;
      const p = rtp.payload;
      if (track.kind !== 'video' || p.length < 2) return;
      if (vp8Keyframe(p)) got.keyframes++;
      if (p.length >= 8 && p.toString('latin1', 2, 4) === 'wf') {
        const n = p.readUInt32BE(4);
        if (n <= last) got.outOfOrder++;
        last = n;
        got.counted++;
      }
    });
  });
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.addTransceiver('audio', { direction: 'recvonly' });
  const { answer, trickle } = await negotiate(pc);
  const want = kinds.split(',');
  const plays = (base) => want.every((k) => got[k] >= base[k] + 50);
  await until(`${want} arriving`, 20000, () => plays({ video: 0, audio: 0 }));
  report('pair', pair(pc));
  report('media', { ...got, trickled: trickle.sent });
  if (restartArg === 'restart') await restart(pc, answer, trickle, got, plays);
}

// restart restarts ICE by PATCH (RFC 9725 section 4.4.2): new credentials in a fragment,
// whose answer fragment brings the server's; the previous answer with those is applied.
async function restart(pc, answer, trickle, got, plays) {
  const before = pair(pc);
  const base = { ...got };
  trickle.paused = true;
  pc.restartIce();
  await pc.setLocalDescription(await pc.createOffer());
  const r = await fetch(trickle.resource, { method: 'PATCH', body: sdpfrag(pc, [], false),
    headers: { ...auth, 'Content-Type': 'application/trickle-ice-sdpfrag', 'If-Match': '*' } });
  if (r.status !== 200) throw new Error(`ICE restart PATCH: ${r.status} ${await r.text()}`);
  const frag = await r.text();
  const ufrag = frag.match(/a=ice-ufrag:(.*)\r\n/)[1];
  const pwd = frag.match(/a=ice-pwd:(.*)\r\n/)[1];
  const candidates = frag.split('\r\n').filter((l) => l.startsWith('a=candidate:'));
  const lines = answer.split('\r\n').filter((l) => !l.startsWith('a=candidate:') && l !== 'a=end-of-candidates')
    .map((l) => (l.startsWith('a=ice-ufrag:') ? `a=ice-ufrag:${ufrag}` : l.startsWith('a=ice-pwd:') ? `a=ice-pwd:${pwd}` : l));
  const at = lines.findIndex((l) => l.startsWith('a=mid:'));
  lines.splice(at + 1, 0, ...candidates, 'a=end-of-candidates');
  await pc.setRemoteDescription({ type: 'answer', sdp: lines.join('\r\n') });
  trickle.paused = false;
  trickle.flush();
  await until('packets after the ICE restart', 20000, () => plays(base));
  report('restarted', { before, after: pair(pc), ufrag, remote: pc.iceTransports[0].connection.remoteUsername });
}

function fail(err) {
  report('error', `${err.name}: ${err.message}`);
  process.exit(1);
}

(async () => {
  const pc = newPC();
  let stop = () => {};
  try {
    if (role === 'publish') stop = await publish(pc);
    else await watch(pc);
  } catch (err) {
    fail(err);
  }
  // Runs until told to stop; the media goes on meanwhile.
  const rl = readline.createInterface({ input: process.stdin });
  const line = await new Promise((resolve) => {
    rl.once('line', resolve);
    rl.once('close', () => resolve('eof'));
  });
  report('quit', line);
  stop();
  await pc.close();
  process.exit(0);
})();
