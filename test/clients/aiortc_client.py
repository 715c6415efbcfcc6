"""aiortc (Debian's python3-aiortc 1.4) as a WHIP publisher or WHEP viewer of Ferry, for
test/aiortc_test.go, which runs it in a client namespace of the clients world.

    aiortc_client.py publish URL TOKEN ICE_JSON
    aiortc_client.py watch URL TOKEN ICE_JSON KINDS

It prints result lines "NETNS key=value" (netnsReport's form) and runs until its standard
input ends or says "quit". A publisher sends aiortc's own test pattern and silence, encoded
(VP8 and Opus); a viewer decodes what it receives and reports once KINDS (video,audio)
have played.

What aiortc 1.4 cannot do, so the tests do not ask it to: trickle ICE (it gathers every
candidate before setLocalDescription returns, and sends them in the offer), restart ICE (it
has no restartIce), be told to relay only (no iceTransportPolicy: the namespace's filter
forces it), and use more than one TURN URL (it takes the first).
"""

import asyncio
import json
import sys
import urllib.request

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack


def report(key, value):
    print(f"NETNS {key}={value}", flush=True)


def post(url, token, body):
    """POSTs an SDP offer; returns the status, the headers and the body of the answer."""
    req = urllib.request.Request(
        url,
        data=body.encode(),
        method="POST",
        headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, resp.headers, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read().decode()


def selected_pair(pc):
    """The nominated ICE pair of the connection, as "LOCALTYPE REMOTEHOST:PORT"."""
    for transceiver in pc.getTransceivers():
        transport = transceiver.receiver.transport or transceiver.sender.transport
        nominated = transport.transport._connection._nominated
        if 1 in nominated:
            pair = nominated[1]
            return f"{pair.local_candidate.type} {pair.remote_addr[0]}:{pair.remote_addr[1]}"
    return "none"


async def connected(pc, timeout=20):
    for _ in range(timeout * 10):
        if pc.connectionState == "connected":
            return
        if pc.connectionState == "failed":
            raise RuntimeError("the connection failed")
        await asyncio.sleep(0.1)
    raise RuntimeError(f"not connected after {timeout} s: {pc.connectionState}")


async def negotiate(pc, url, token):
    """RFC 9725's exchange with the whole offer (aiortc cannot trickle); returns the 201's
    headers."""
    await pc.setLocalDescription(await pc.createOffer())
    status, headers, body = post(url, token, pc.localDescription.sdp)
    if status != 201:
        raise RuntimeError(f"POST {url}: {status} {body}")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
    return headers


async def publish(pc, url, token):
    pc.addTransceiver(VideoStreamTrack(), direction="sendonly")
    pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    headers = await negotiate(pc, url, token)
    await connected(pc)
    report("pair", selected_pair(pc))
    report("published", headers["Ferry-Stream"])


async def consume(track, counts):
    """Decodes a remote track's frames until it ends, counting them."""
    while True:
        try:
            await track.recv()
        except MediaStreamError:
            return
        counts[track.kind] += 1


async def watch(pc, url, token, kinds):
    counts = {"video": 0, "audio": 0}
    readers = []
    pc.on("track", lambda track: readers.append(asyncio.ensure_future(consume(track, counts))))
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    await negotiate(pc, url, token)
    await connected(pc)
    for _ in range(300):
        if all(counts[k] >= 20 for k in kinds):
            break
        await asyncio.sleep(0.1)
    else:
        raise RuntimeError(f"{kinds} did not play within 30 s: {counts}")
    report("pair", selected_pair(pc))
    report("media", json.dumps(counts))
    return readers


async def main():
    role, url, token, ice = sys.argv[1:5]
    servers = [RTCIceServer(urls=s["urls"], username=s["username"], credential=s["credential"]) for s in json.loads(ice)]
    pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
    readers = []
    try:
        if role == "publish":
            await publish(pc, url, token)
        else:
            readers = await watch(pc, url, token, sys.argv[5].split(","))
        # Runs until told to stop; the media goes on meanwhile.
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        report("quit", line.strip() or "eof")
    except Exception as err:  # the test reads the reason
        report("error", f"{type(err).__name__}: {err}")
        raise
    finally:
        await pc.close()
        for r in readers:
            r.cancel()


if __name__ == "__main__":
    asyncio.run(main())
