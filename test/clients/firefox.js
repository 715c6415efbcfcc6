// The roles of headless Firefox in Ferry's tests (test/firefox_test.go). The query string
// names the page (who) and its role; the page posts reports (POST /report/WHO/KEY) and log
// lines (POST /log/WHO) to the page server it came from, and "error" when anything fails.
//
//   publish: WHIP publish of the fake camera and microphone, relay-only, the offer sent
//            with all its candidates; reports "published" {stream} and "pair".
//   watch:   WHEP watch of a stream, relay-only, trickling candidates by PATCH; reports
//            "answer" (the media sections of the 201's answer), "media" once what it
//            expects plays, "pair", and, with restart=1, restarts ICE by PATCH and reports
//            "restarted" once media flows again on the new ICE session.
//   call:    peer to peer with the page named peer, relay-only through each TURN transport
//            in turn (udp, tcp, tls), offer and answer through the page server's mailboxes;
//            reports "call-TRANSPORT" with the selected pair and the frames received.
'use strict';

const q = new URLSearchParams(location.search);
const who = q.get('who');
const post = (path, body) => fetch(path, { method: 'POST', body });
const report = (key, value) => post(`/report/${who}/${key}`, typeof value === 'string' ? value : JSON.stringify(value));
const log = (msg) => post(`/log/${who}`, msg);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

window.addEventListener('error', (e) => report('error', `uncaught: ${e.message}`));
window.addEventListener('unhandledrejection', (e) => report('error', `unhandled: ${e.reason}`));

// until polls cond every 100 ms until it returns a true value, which it returns; it throws
// after ms with what it waited for.
// until polls cond until it returns a truthy value; cond may set last.seen to what it
// saw, which the timeout error then shows.
async function until(what, ms, cond) {
  const end = Date.now() + ms;
  const last = {};
  for (;;) {
    const v = await cond(last);
    if (v) return v;
    if (Date.now() > end) {
      const seen = last.seen === undefined ? '' : `; last seen ${JSON.stringify(last.seen)}`;
      throw new Error(`timed out after ${ms} ms waiting for ${what}${seen}`);
    }
    await sleep(100);
  }
}

function newPC(ice) {
  const pc = new RTCPeerConnection({ iceServers: ice, iceTransportPolicy: 'relay' });
  pc.addEventListener('connectionstatechange', () => log(`connection ${pc.connectionState}`));
  return pc;
}

const gathered = (pc) => until('ICE gathering', 15000, () => pc.iceGatheringState === 'complete');
const connected = (pc) => until('a connection', 20000, () => {
  if (pc.connectionState === 'failed') throw new Error('the connection failed');
  return pc.connectionState === 'connected';
});

// selectedPair describes the pair a connection uses: its local and remote candidates.
async function selectedPair(pc) {
  const stats = await pc.getStats();
  let pair = null;
  for (const s of stats.values()) {
    if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
  }
  for (const s of stats.values()) {
    if (!pair && s.type === 'candidate-pair' && (s.selected || (s.nominated && s.state === 'succeeded'))) pair = s;
  }
  if (!pair) return null;
  const c = (id) => {
    const s = stats.get(id) || {};
    return { type: s.candidateType, address: s.address, port: s.port, relayProtocol: s.relayProtocol || '' };
  };
  return { local: c(pair.localCandidateId), remote: c(pair.remoteCandidateId), id: pair.id };
}

// inbound sums up what arrived per kind: packets, decoded frames, and the codec.
async function inbound(pc) {
  const stats = await pc.getStats();
  const out = { video: { packets: 0, frames: 0, codec: '' }, audio: { packets: 0, frames: 0, codec: '' } };
  for (const s of stats.values()) {
    if (s.type !== 'inbound-rtp' || !out[s.kind]) continue;
    out[s.kind].packets += s.packetsReceived || 0;
    out[s.kind].frames += s.framesDecoded || 0;
    const codec = s.codecId && stats.get(s.codecId);
    if (codec) out[s.kind].codec = codec.mimeType;
  }
  return out;
}

function authHeaders(extra) {
  return Object.assign({ Authorization: `Bearer ${q.get('token')}` }, extra);
}

async function publish() {
  const media = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
  const pc = newPC(JSON.parse(q.get('ice')));
  for (const track of media.getTracks()) pc.addTransceiver(track, { direction: 'sendonly', streams: [media] });
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const r = await fetch(q.get('url'), { method: 'POST', headers: authHeaders({ 'Content-Type': 'application/sdp' }),
    body: pc.localDescription.sdp });
  if (r.status !== 201) throw new Error(`WHIP: ${r.status} ${await r.text()}`);
  await pc.setRemoteDescription({ type: 'answer', sdp: await r.text() });
  await connected(pc);
  await report('pair', await selectedPair(pc));
  await report('published', { stream: r.headers.get('Ferry-Stream') });
  window.ferryPC = pc; // kept: the page publishes until the test ends
}

// sdpfrag is an RFC 8840 fragment of the local description's ICE credentials and the
// candidates, all given to the first section (the answer bundles everything on it).
function sdpfrag(pc, candidates, done) {
  const sdp = pc.localDescription.sdp;
  const ufrag = sdp.match(/a=ice-ufrag:(.*)\r\n/)[1];
  const pwd = sdp.match(/a=ice-pwd:(.*)\r\n/)[1];
  const mid = sdp.match(/a=mid:(.*)\r\n/)[1];
  const lines = [`a=ice-ufrag:${ufrag}`, `a=ice-pwd:${pwd}`, 'm=audio 9 RTP/AVP 0', `a=mid:${mid}`];
  for (const c of candidates) lines.push(`a=${c.candidate}`);
  if (done) lines.push('a=end-of-candidates');
  return lines.join('\r\n') + '\r\n';
}

// trickler PATCHes each local candidate to the session once its URL is known, in order.
function trickler(pc) {
  const t = { url: null, queue: [], done: false, chain: Promise.resolve(), sent: 0 };
  t.flush = () => {
    if (!t.url || (!t.queue.length && !t.done)) return;
    const body = sdpfrag(pc, t.queue, t.done);
    t.sent += t.queue.length;
    t.queue = [];
    t.done = false;
    t.chain = t.chain.then(() => fetch(t.url, { method: 'PATCH', body,
      headers: authHeaders({ 'Content-Type': 'application/trickle-ice-sdpfrag' }) }))
      .then((r) => { if (r.status !== 204) report('error', `trickle PATCH: ${r.status}`); });
  };
  pc.addEventListener('icecandidate', (e) => {
    if (!e.candidate) t.done = true;
    else if (e.candidate.candidate) t.queue.push(e.candidate);
    else return;
    t.flush();
  });
  return t;
}

// answerSections describes the m= lines of an SDP: kind, port and codecs.
function answerSections(sdp) {
  const out = [];
  for (const line of sdp.split('\r\n')) {
    if (line.startsWith('m=')) {
      const [kind, port] = line.slice(2).split(' ');
      out.push({ kind, port: Number(port), codecs: [] });
    } else if (line.startsWith('a=rtpmap:') && out.length) {
      out[out.length - 1].codecs.push(line.split(' ')[1].split('/')[0]);
    }
  }
  return out;
}

async function watch() {
  const want = q.get('expect').split(','); // kinds that must play
  const pc = newPC(JSON.parse(q.get('ice')));
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.addTransceiver('audio', { direction: 'recvonly' });
  const remote = new MediaStream();
  pc.addEventListener('track', (e) => {
    remote.addTrack(e.track);
    document.getElementById('remote').srcObject = remote;
  });
  const trickle = trickler(pc);
  await pc.setLocalDescription(await pc.createOffer());
  // The offer goes at once, before any candidate: they follow by PATCH.
  const r = await fetch(q.get('url'), { method: 'POST', headers: authHeaders({ 'Content-Type': 'application/sdp' }),
    body: pc.localDescription.sdp });
  if (r.status !== 201) throw new Error(`WHEP: ${r.status} ${await r.text()}`);
  const answer = await r.text();
  await report('answer', answerSections(answer));
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  trickle.resource = new URL(r.headers.get('Location'), q.get('url')).href;
  trickle.url = trickle.resource;
  trickle.flush();
  await connected(pc);
  const plays = async (base, last) => {
    const now = await inbound(pc);
    if (last) last.seen = now;
    const ok = want.every((k) => (k === 'video' ? now.video.frames >= base.video.frames + 20
      : now.audio.packets >= base.audio.packets + 50));
    return ok && now;
  };
  const zero = { video: { frames: 0 }, audio: { packets: 0 } };
  const media = await until(`${want} playing`, 20000, (last) => plays(zero, last));
  await report('pair', await selectedPair(pc));
  await report('media', Object.assign(media, { trickled: trickle.sent }));
  if (q.get('restart') === '1') await restart(pc, answer, trickle, plays);
  window.ferryPC = pc;
}

// restart restarts ICE by PATCH (RFC 9725 section 4.4.2): the new credentials go in a
// fragment, whose 200 answer fragment carries the server's new credentials and candidates;
// the page applies the previous answer with those, then trickles its new candidates.
async function restart(pc, answer, trickle, plays) {
  const before = await selectedPair(pc);
  const base = await inbound(pc);
  trickle.url = null; // the new candidates wait for the new answer
  pc.restartIce();
  await pc.setLocalDescription(await pc.createOffer());
  const r = await fetch(trickle.resource, { method: 'PATCH', body: sdpfrag(pc, [], false),
    headers: authHeaders({ 'Content-Type': 'application/trickle-ice-sdpfrag', 'If-Match': '*' }) });
  if (r.status !== 200) throw new Error(`ICE restart PATCH: ${r.status} ${await r.text()}`);
  const frag = await r.text();
  const ufrag = frag.match(/a=ice-ufrag:(.*)\r\n/)[1];
  const pwd = frag.match(/a=ice-pwd:(.*)\r\n/)[1];
  const candidates = frag.split('\r\n').filter((l) => l.startsWith('a=candidate:'));
  const renewed = answer.split('\r\n').filter((l) => !l.startsWith('a=candidate:') && l !== 'a=end-of-candidates')
    .map((l) => (l.startsWith('a=ice-ufrag:') ? `a=ice-ufrag:${ufrag}` : l.startsWith('a=ice-pwd:') ? `a=ice-pwd:${pwd}` : l));
  // The candidates go into the first accepted section, after its a=mid line.
  const accepted = renewed.findIndex((l) => l.startsWith('m=') && l.split(' ')[1] !== '0');
  const at = renewed.findIndex((l, i) => i > accepted && l.startsWith('a=mid:'));
  renewed.splice(at + 1, 0, ...candidates, 'a=end-of-candidates');
  await pc.setRemoteDescription({ type: 'answer', sdp: renewed.join('\r\n') });
  trickle.url = trickle.resource;
  trickle.flush();
  await connected(pc);
  const media = await until('media after the ICE restart', 20000, (last) => plays(base, last));
  const after = await selectedPair(pc);
  await report('restarted', { before, after, media, ufrag });
}

async function call() {
  const peer = q.get('peer');
  const ices = JSON.parse(q.get('ice')); // by transport
  const media = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
  for (const transport of q.get('transports').split(',')) {
    const pc = newPC([ices[transport]]);
    for (const track of media.getTracks()) pc.addTrack(track, media);
    pc.addEventListener('track', (e) => {
      document.getElementById('remote').srcObject = e.streams[0];
    });
    if (q.get('caller') === '1') {
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
      await post(`/mail/${peer}`, JSON.stringify({ transport, sdp: pc.localDescription.sdp }));
      const answer = await mail(transport);
      await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
    } else {
      const offer = await mail(transport);
      await pc.setRemoteDescription({ type: 'offer', sdp: offer.sdp });
      await pc.setLocalDescription(await pc.createAnswer());
      await gathered(pc);
      await post(`/mail/${peer}`, JSON.stringify({ transport, sdp: pc.localDescription.sdp }));
    }
    await connected(pc);
    const got = await until(`video from ${peer} over ${transport}`, 20000, async () => {
      const now = await inbound(pc);
      return now.video.frames >= 20 && now.audio.packets >= 50 && now;
    });
    await report(`call-${transport}`, { pair: await selectedPair(pc), media: got });
    // Both ends must be done before either closes: a close ends the other's media too.
    await post(`/mail/${peer}`, JSON.stringify({ transport, done: true }));
    await mail(transport);
    pc.close();
  }
}

// mail waits for the next message to this page, which must be about transport.
async function mail(transport) {
  const msg = await until(`a message from ${q.get('peer')}`, 30000, async () => {
    const r = await fetch(`/mail/${who}`);
    return r.status === 200 && r.json();
  });
  if (msg.transport !== transport) throw new Error(`a message about ${msg.transport}, want ${transport}`);
  return msg;
}

const roles = { publish, watch, call };
(async () => {
  try {
    await roles[q.get('role')]();
  } catch (e) {
    await report('error', `${e.name}: ${e.message}`);
  }
})();
