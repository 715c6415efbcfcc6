'use strict';
// Ferry SFU demo: publish the camera and microphone over WHIP (RFC 9725) and watch the
// room's other publishers over WHEP, with nothing but the browser's own APIs.

const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;

// The state automated tests read.
const demo = (window.ferryDemo = { publisher: null, subscribers: new Map(), ownStream: null, log: [] });

const sessions = new Map(); // RTCPeerConnection -> its WHIP/WHEP session, to PATCH and DELETE
const watched = new Map(); // RTCPeerConnection -> {el, dir, bytes, at}: the stats lines
const pending = new Map(); // stream id -> marker of a subscription being set up
const tiles = new Map(); // stream id -> its tile in #streams
const names = new Map(); // stream id -> the name its publisher gave it, from the room's events
let events = null; // the room's EventSource while joined
let localStream = null;
let publishBusy = false;
let epoch = 0; // bumped by Leave, so a publish still in flight knows it is unwanted
// Settles when the running WHIP POST does: the room feed waits for it before deciding
// whether a new stream is our own (its event can beat the 201 that tells us our id).
let publishing = Promise.resolve();
let feed = Promise.resolve(); // room events are handled one at a time, in order

function log(msg) {
  const line = `${new Date().toISOString().slice(11, 23)} ${msg}`;
  demo.log.push(line);
  const el = $('log');
  el.textContent += line + '\n';
  el.scrollTop = el.scrollHeight;
}

const status = (msg) => { $('status').textContent = msg; };
const el = (tag, props) => Object.assign(document.createElement(tag), props);

function buttons() {
  $('join').disabled = !!events;
  $('publish').disabled = publishBusy || !!demo.publisher;
}

function need(id, what) {
  const v = $(id).value.trim();
  if (!v) throw new Error(`please enter ${what}`);
  return v;
}

// explain turns an HTTP status into plain words; action is "publishing" or "watching".
function explain(code, action) {
  const words = {
    400: 'the server refused the request',
    401: 'the token is not valid',
    403: `the token does not allow ${action} in this room`,
    404: action === 'watching' ? 'this room or stream does not exist (any more)' : 'this room does not exist',
    409: 'the stream is not live yet: its publisher has not connected',
    429: 'too many requests, try again later',
    503: 'the server is busy or shutting down, try again later',
  };
  return words[code] || `the server answered ${code}`;
}

function httpError(code, body, action) {
  const detail = body.trim();
  const extra = detail && detail.length < 200 && !detail.startsWith('<') ? ` (${detail})` : '';
  return new Error(`${code}: ${explain(code, action)}${extra}`);
}

function mediaError(e) {
  const words = {
    NotAllowedError: 'access to the camera or microphone was refused',
    NotFoundError: 'no camera or microphone was found',
    NotReadableError: 'the camera or microphone is in use by another program',
    OverconstrainedError: 'the camera cannot provide the requested video',
  };
  return new Error(words[e.name] || `the camera or microphone failed: ${e.message}`);
}

// iceServersFromLinks reads the RFC 9725 section 4.6 Link headers. fetch folds several
// Link headers into one, comma-separated, so split on commas outside <...> and quotes.
function iceServersFromLinks(header) {
  const links = [];
  let cur = '', angle = false, quote = false, escaped = false;
  for (const ch of header || '') {
    if (quote) {
      if (escaped) escaped = false;
      else if (ch === '\\') escaped = true;
      else if (ch === '"') quote = false;
    } else if (ch === '"') quote = true;
    else if (ch === '<') angle = true;
    else if (ch === '>') angle = false;
    else if (ch === ',' && !angle) { links.push(cur); cur = ''; continue; }
    cur += ch;
  }
  links.push(cur);
  const servers = [];
  for (const link of links) {
    const m = /^\s*<([^>]*)>(.*)$/s.exec(link);
    if (!m) continue;
    const params = {};
    for (const p of m[2].matchAll(/;\s*([\w-]+)\s*(?:=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*)))?/g)) {
      params[p[1].toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : p[3] || '';
    }
    if (!(params.rel || '').toLowerCase().split(/\s+/).includes('ice-server')) continue;
    const server = { urls: m[1] };
    // Only password credentials exist in browsers, so credential-type is not passed on.
    if (params.username !== undefined) server.username = params.username;
    if (params.credential !== undefined) server.credential = params.credential;
    servers.push(server);
  }
  return servers;
}

// post sends the offer and returns the session: its URL, ETag, stream, answer and ICE
// servers. The URL is secret: with the token it ends or changes the session, so it is
// never shown. The stream id (Ferry-Stream) is what the room shows of it.
async function post(pc, url, token, action) {
  const offer = await pc.createOffer();
  let res;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/sdp' },
      body: offer.sdp,
    });
  } catch (e) {
    throw new Error(`the server cannot be reached (${e.message})`);
  }
  const body = await res.text();
  if (!res.ok) throw httpError(res.status, body, action);
  const location = res.headers.get('Location');
  if (!location) throw new Error(`the server answered ${res.status} without a Location header`);
  return {
    offer, token, answer: body, closed: false, chain: Promise.resolve(),
    url: new URL(location, res.url).href,
    etag: res.headers.get('ETag'),
    stream: res.headers.get('Ferry-Stream'),
    iceServers: iceServersFromLinks(res.headers.get('Link')),
  };
}

// connect runs the RFC 9725 flow: offer, POST, ICE servers from the Link headers set
// before the local description (gathering starts there), answer, then trickle.
// build makes a fresh RTCPeerConnection with its transceivers from a configuration.
async function connect(build, url, token, action) {
  const policy = $('forceRelay').checked ? 'relay' : 'all';
  let pc = build({ iceTransportPolicy: policy });
  let s;
  try {
    s = await post(pc, url, token, action);
    if (s.iceServers.length) {
      try {
        pc.setConfiguration({ ...pc.getConfiguration(), iceServers: s.iceServers, iceTransportPolicy: policy });
      } catch (e) {
        // Some Firefox versions refuse new iceServers after construction: start over
        // with a connection built with them. Their TURN credential is the first
        // session's, so that session ends only once the new one has connected (Ferry then
        // hands the credential over to it) or failed; if the page goes first, Ferry's
        // connect timeout ends it.
        log(`setConfiguration refused (${e.name}), retrying with a new connection`);
        pc.close();
        const probe = s;
        pc = build({ iceServers: s.iceServers, iceTransportPolicy: policy });
        try {
          s = await post(pc, url, token, action);
        } catch (err) {
          del(probe);
          throw err;
        }
        endOnceSettled(pc, probe);
      }
    } else if (policy === 'relay') {
      log('force relay is on but the server offered no TURN server: this cannot connect');
    }
    sessions.set(pc, s);
    trickle(pc, s);
    await pc.setLocalDescription(s.offer);
    await pc.setRemoteDescription({ type: 'answer', sdp: s.answer });
  } catch (e) {
    end(pc);
    throw e;
  }
  return { pc, id: s.stream };
}

// endOnceSettled ends the session probe once pc has connected or failed.
function endOnceSettled(pc, probe) {
  const settled = () => {
    if (!['connected', 'failed', 'closed'].includes(pc.connectionState)) return;
    pc.removeEventListener('connectionstatechange', settled);
    del(probe);
  };
  pc.addEventListener('connectionstatechange', settled);
}

// trickle PATCHes local candidates to the session as RFC 8840 fragments, batched for
// 50 ms and sent in order. With force relay this is the only way candidates get there,
// since the offer was sent before gathering started.
function trickle(pc, s) {
  let queue = [], timer = 0, done = false;
  const flush = () => {
    timer = 0;
    if (s.closed || !pc.localDescription) return;
    const body = sdpfrag(pc.localDescription.sdp, queue, done);
    queue = [];
    const headers = { Authorization: `Bearer ${s.token}`, 'Content-Type': 'application/trickle-ice-sdpfrag' };
    if (s.etag) headers['If-Match'] = s.etag;
    s.chain = s.chain
      .then(() => (s.closed ? null : fetch(s.url, { method: 'PATCH', headers, body })))
      .then((r) => { if (r && !r.ok && !s.closed) log(`trickle: the server answered ${r.status}`); })
      .catch((e) => { if (!s.closed) log(`trickle: ${e.message}`); });
  };
  pc.addEventListener('icecandidate', (e) => {
    if (!e.candidate) done = true; // gathering is complete
    else if (e.candidate.candidate) queue.push(e.candidate);
    else return; // Firefox's empty per-section end marker; the null one follows
    if (!timer) timer = setTimeout(flush, 50);
  });
}

// sdpfrag builds an application/trickle-ice-sdpfrag body: the ICE credentials, then an
// m-line section per mid with its candidates, end-of-candidates in the first one.
function sdpfrag(localSdp, candidates, done) {
  const sections = [];
  const session = {};
  let cur = session;
  for (const line of localSdp.split(/\r?\n/)) {
    if (line.startsWith('m=')) sections.push((cur = { kind: line.slice(2).split(' ')[0], ufrag: session.ufrag, pwd: session.pwd }));
    else if (line.startsWith('a=mid:')) cur.mid = line.slice(6);
    else if (line.startsWith('a=ice-ufrag:')) cur.ufrag = line.slice(12);
    else if (line.startsWith('a=ice-pwd:')) cur.pwd = line.slice(10);
  }
  const lines = [`a=ice-ufrag:${sections[0].ufrag}`, `a=ice-pwd:${sections[0].pwd}`];
  sections.forEach((sec, i) => {
    const mine = candidates.filter((c) => (c.sdpMid != null ? c.sdpMid === sec.mid : c.sdpMLineIndex === i));
    const last = done && i === 0;
    if (!mine.length && !last) return;
    lines.push(`m=${sec.kind} 9 RTP/AVP 0`, `a=mid:${sec.mid}`, ...mine.map((c) => `a=${c.candidate}`));
    if (last) lines.push('a=end-of-candidates');
  });
  return lines.join('\r\n') + '\r\n';
}

function del(s, keepalive = false) {
  s.closed = true;
  fetch(s.url, { method: 'DELETE', headers: { Authorization: `Bearer ${s.token}` }, keepalive })
    .then((r) => { if (!r.ok && r.status !== 404) log(`ending the session of stream ${s.stream}: ${r.status}`); })
    .catch(() => {});
}

// end closes a connection and ends its session on the server.
function end(pc) {
  pc.close();
  watched.delete(pc);
  const s = sessions.get(pc);
  sessions.delete(pc);
  if (s) del(s);
}

function logIce(pc, label, onFailed) {
  pc.addEventListener('iceconnectionstatechange', () => {
    log(`${label}: ICE ${pc.iceConnectionState}`);
    if (pc.iceConnectionState === 'failed') onFailed();
  });
}

async function publish() {
  const room = need('room', 'a room');
  const token = need('pubToken', 'a publish token');
  const name = $('name').value.trim();
  if (!navigator.mediaDevices) throw new Error('the camera needs a secure page: open it over https or on localhost');
  const mine = epoch;
  publishBusy = true;
  buttons();
  try {
    try {
      localStream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: { ideal: 1280 }, height: { ideal: 720 } } });
    } catch (e) {
      throw mediaError(e);
    }
    if (mine !== epoch) return stopLocal(); // Leave was pressed while the browser asked
    $('local').srcObject = localStream;
    $('me').hidden = false;
    const [audio] = localStream.getAudioTracks();
    const [video] = localStream.getVideoTracks();
    const build = (config) => {
      const pc = new RTCPeerConnection(config);
      pc.addTransceiver(audio, { direction: 'sendonly', streams: [localStream] });
      const init = { direction: 'sendonly', streams: [localStream] };
      const layers = [
        { rid: 'h', scaleResolutionDownBy: 1 },
        { rid: 'm', scaleResolutionDownBy: 2 },
        { rid: 'l', scaleResolutionDownBy: 4 },
      ];
      try {
        pc.addTransceiver(video, $('simulcast').checked ? { ...init, sendEncodings: layers } : init);
      } catch (e) {
        log(`simulcast refused by the browser (${e.name}), sending one encoding`);
        pc.addTransceiver(video, init);
      }
      return pc;
    };
    const attempt = connect(build, `/whip/${enc(room)}${name ? '?name=' + enc(name) : ''}`, token, 'publishing');
    publishing = attempt.catch(() => {});
    const { pc, id } = await attempt;
    if (mine !== epoch) return end(pc); // Leave was pressed meanwhile
    demo.publisher = pc;
    demo.ownStream = id;
    watched.set(pc, { el: $('pubStats'), dir: 'outbound' });
    logIce(pc, 'publisher', () => status('Publishing failed: no network path to the server (try without force relay, or check TURN)'));
    $('myName').textContent = `You, as ${name || id.slice(0, 8)}`;
    log(`publishing in room ${room} as stream ${id}${name ? ' (' + name + ')' : ''}`);
    status(`Publishing in room ${room}.`);
  } catch (e) {
    if (mine === epoch) stopLocal();
    throw new Error(`publishing failed: ${e.message}`);
  } finally {
    publishBusy = false;
    buttons();
  }
}

function stopLocal() {
  if (localStream) localStream.getTracks().forEach((t) => t.stop());
  localStream = null;
  $('local').srcObject = null;
  $('pubStats').textContent = 'not publishing';
  $('myName').textContent = 'You';
  showViewers(0);
  $('me').hidden = true; // a page that only watches shows no empty tile of its own
}

// viewers shows how many watch our stream: a session's resource describes the session
// to its creator.
async function viewers(pc) {
  const s = sessions.get(pc);
  if (!s || s.closed) return;
  const r = await fetch(s.url, { headers: { Authorization: `Bearer ${s.token}` } });
  if (r.ok && demo.publisher === pc) showViewers((await r.json()).subscribers || 0);
}

function showViewers(n) {
  const el = $('viewers');
  el.dataset.count = n;
  el.textContent = n === 0 ? 'no viewers' : n === 1 ? '1 viewer' : `${n} viewers`;
}

function join() {
  const room = need('room', 'a room');
  const token = need('subToken', 'a subscribe token');
  const url = `/api/rooms/${enc(room)}/events?token=${enc(token)}`;
  const es = (events = new EventSource(url));
  buttons();
  es.onopen = () => {
    log(`joined room ${room}`);
    status(`In room ${room}.`);
  };
  es.onerror = () => {
    if (es !== events) return;
    if (es.readyState !== EventSource.CLOSED) return log('room events: connection lost, reconnecting');
    // EventSource hides the status of a refused connection: ask once more to tell why.
    events = null;
    buttons();
    fetch(url).then((r) => {
      r.body?.cancel();
      return r.ok ? 'the server did not answer with an event stream' : `${r.status}: ${explain(r.status, 'watching')}`;
    }, (e) => `the server cannot be reached (${e.message})`)
      .then((why) => { log(`joining failed: ${why}`); status(`Joining failed: ${why}`); });
  };
  // One handler at a time, so a stream-end is never handled before its stream.
  const serial = (fn) => (e) => {
    feed = feed.then(() => fn(JSON.parse(e.data))).catch((err) => log(`room events: ${err.message}`));
  };
  es.addEventListener('stream', serial(async (info) => {
    await publishing;
    if (es !== events || !info.id || info.id === demo.ownStream) return;
    names.set(info.id, info.name || info.id);
    if (demo.subscribers.has(info.id) || pending.has(info.id)) return;
    subscribe(room, token, info);
  }));
  es.addEventListener('stream-end', serial((info) => {
    const watching = demo.subscribers.has(info.id) || pending.has(info.id);
    unsubscribe(info.id, 'the stream ended');
    if (watching) status(`${names.get(info.id)} left the room.`);
    names.delete(info.id);
  }));
}

function subscribe(room, token, info) {
  const id = info.id;
  const marker = {};
  pending.set(id, marker);
  // The muted property, not only the attribute, since the attribute alone does not mute
  // an element made by script, and only muted video may autoplay.
  const video = el('video', { muted: true });
  for (const a of ['autoplay', 'playsinline', 'muted']) video.setAttribute(a, '');
  video.dataset.stream = id;
  const tracks = (info.tracks || []).map((t) => `${t.codec}${t.layers && t.layers.length ? ' ' + t.layers.join('/') : ''}`);
  const caption = el('figcaption', { className: 'caption', title: `stream ${id}`,
    textContent: `${names.get(id)}${tracks.length ? ' (' + tracks.join(', ') + ')' : ''}` });
  const stats = el('p', { className: 'stats', textContent: 'connecting' });
  const tile = el('figure', { className: 'tile' });
  tile.append(video, caption, stats);
  $('streams').append(tile);
  tiles.set(id, tile);

  const build = (config) => {
    const pc = new RTCPeerConnection(config);
    pc.addTransceiver('audio', { direction: 'recvonly' });
    pc.addTransceiver('video', { direction: 'recvonly' });
    const ms = new MediaStream();
    pc.addEventListener('track', (e) => {
      ms.addTrack(e.track);
      if (!video.srcObject) video.srcObject = ms;
    });
    return pc;
  };
  const layer = $('layer').value;
  const url = `/whep/${enc(room)}/${enc(id)}${layer ? '?layer=' + layer : ''}`;
  connect(build, url, token, 'watching').then(({ pc }) => {
    if (pending.get(id) !== marker) return end(pc); // ended, or Leave, while we connected
    pending.delete(id);
    demo.subscribers.set(id, pc);
    watched.set(pc, { el: stats, dir: 'inbound' });
    logIce(pc, `stream ${id}`, () => unsubscribe(id, 'the connection failed'));
    log(`watching stream ${id}${layer ? ' (layer ' + layer + ')' : ''}`);
  }, (e) => {
    if (pending.get(id) === marker) pending.delete(id);
    if (tiles.get(id) === tile) tiles.delete(id);
    tile.remove();
    log(`watching stream ${id} failed: ${e.message}`);
  });
}

function unsubscribe(id, why) {
  const pc = demo.subscribers.get(id);
  const wasPending = pending.delete(id);
  demo.subscribers.delete(id);
  const tile = tiles.get(id);
  tiles.delete(id);
  if (tile) tile.remove();
  if (pc) end(pc);
  if (pc || wasPending) log(`stream ${id} is gone: ${why}`);
}

function leave() {
  epoch++;
  if (events) events.close();
  events = null;
  for (const id of [...demo.subscribers.keys(), ...pending.keys()]) unsubscribe(id, 'we left');
  names.clear();
  if (demo.publisher) end(demo.publisher);
  demo.publisher = null;
  demo.ownStream = null;
  stopLocal();
  buttons();
  log('left');
  status('Not connected.');
}

// statsLine reads bitrate (kbit/s since the last call) and the selected candidate pair.
async function statsLine(pc, w) {
  const report = await pc.getStats();
  const field = w.dir === 'outbound' ? 'bytesSent' : 'bytesReceived';
  let bytes = 0, pair = null;
  for (const s of report.values()) {
    if (s.type === `${w.dir}-rtp`) bytes += s[field] || 0; // one per simulcast layer, too
    if (s.type === 'transport' && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId);
  }
  // Firefox has no transport stats: take the nominated pair that succeeded.
  if (!pair) {
    for (const s of report.values()) {
      if (s.type === 'candidate-pair' && s.state === 'succeeded' && s.nominated && (!pair || s.selected)) pair = s;
    }
  }
  const now = performance.now();
  const kbps = w.at ? Math.round(((bytes - w.bytes) * 8) / (now - w.at)) : 0; // bits per ms = kbit/s
  Object.assign(w, { bytes, at: now });
  const local = pair && report.get(pair.localCandidateId);
  const remote = pair && report.get(pair.remoteCandidateId);
  const type = (c) => (c ? c.candidateType + (c.relayProtocol ? `/${c.relayProtocol}` : '') : '?');
  Object.assign(w.el.dataset, { kbps, local: local ? local.candidateType : '', remote: remote ? remote.candidateType : '' });
  const verb = w.dir === 'outbound' ? 'sending' : 'receiving';
  return `${verb} ${kbps} kbit/s, local ${type(local)}, remote ${type(remote)}, ${pc.iceConnectionState}`;
}

setInterval(() => {
  for (const [pc, w] of watched) {
    statsLine(pc, w).then((line) => { if (watched.has(pc)) w.el.textContent = line; }, () => {});
  }
  if (demo.publisher) viewers(demo.publisher).catch(() => {});
}, 1000);

function fail(e) {
  log(`error: ${e.message}`);
  status(e.message.charAt(0).toUpperCase() + e.message.slice(1));
}

for (const [id, fn] of [['join', join], ['publish', publish], ['leave', leave]]) {
  $(id).addEventListener('click', () => Promise.resolve().then(fn).catch(fail));
}
$('controls').addEventListener('submit', (e) => e.preventDefault());
// A new layer also applies to the running subscriptions, through the session's layer resource.
$('layer').addEventListener('change', () => {
  const layer = $('layer').value;
  for (const [id, pc] of demo.subscribers) {
    const s = sessions.get(pc);
    const headers = { Authorization: `Bearer ${s.token}` };
    fetch(`${s.url}/layer`, { method: 'POST', headers, body: new URLSearchParams({ layer }) }).then(
      (r) => log(`stream ${id}: layer ${layer || 'automatic'}${r.ok ? '' : `: the server answered ${r.status}`}`),
      (e) => log(`stream ${id}: layer: ${e.message}`));
  }
});
// Best effort: end our sessions when the page goes away, so the room sees us leave.
addEventListener('pagehide', () => sessions.forEach((s) => del(s, true)));

// Prefill from ?room=&pub=&sub=&name=&relay=1&simulcast=0&layer=&autostart=1.
const q = new URLSearchParams(location.search);
if (q.has('room')) $('room').value = q.get('room');
if (q.has('pub')) $('pubToken').value = q.get('pub');
if (q.has('sub')) $('subToken').value = q.get('sub');
if (q.has('name')) $('name').value = q.get('name');
if (q.get('relay') === '1') $('forceRelay').checked = true;
if (q.get('simulcast') === '0') $('simulcast').checked = false;
if (q.has('layer')) $('layer').value = q.get('layer');
buttons();
if (q.get('autostart') === '1') {
  $('join').click();
  $('publish').click();
}
