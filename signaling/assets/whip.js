// Gremium's WHIP publisher (RFC 9725) for the browser, shared by /join and /publish:
// offers a MediaStream's tracks send-only, waits for every ICE candidate (the media
// plane answers non-trickle), POSTs the offer with the participant's join token and
// DELETEs the session when the page goes away. Our own code, served by Gremium.
'use strict';
window.gremiumWhip = (() => {
  function gathered(pc) {
    return new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') return resolve();
      pc.addEventListener('icegatheringstatechange', () => {
        if (pc.iceGatheringState === 'complete') resolve();
      });
    });
  }

  // Publish `stream` into `meeting`. `onState(line)` hears each step ('PC-STATE …',
  // 'WHIP-STATUS …'). Resolves to { pc, location, stop() }; rejects with an Error
  // whose `status` is the HTTP status when the server refused.
  async function publish({ meeting, token, stream, onState }) {
    const say = onState || (() => {});
    const pc = new RTCPeerConnection();
    pc.addEventListener('connectionstatechange', () => say('PC-STATE ' + pc.connectionState));
    for (const track of stream.getTracks()) pc.addTransceiver(track, { direction: 'sendonly' });
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const resp = await fetch('/whip/' + encodeURIComponent(meeting), {
      method: 'POST',
      headers: { 'Content-Type': 'application/sdp', 'Authorization': 'Bearer ' + token },
      body: pc.localDescription.sdp,
    });
    const answer = await resp.text();
    const location = resp.headers.get('Location');
    say('WHIP-STATUS ' + resp.status + ' ' + (location || '-'));
    if (resp.status !== 201) {
      pc.close();
      const e = new Error('WHIP ' + resp.status);
      e.status = resp.status;
      throw e;
    }
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    let stopped = false;
    const stop = () => {
      if (stopped) return;
      stopped = true;
      fetch(location, { method: 'DELETE', headers: { 'Authorization': 'Bearer ' + token }, keepalive: true })
        .catch(() => {});
      pc.close();
    };
    window.addEventListener('pagehide', stop);
    return { pc, location, stop };
  }

  // Bytes sent so far (all outbound RTP streams).
  async function bytesSent(pc) {
    let bytes = 0;
    (await pc.getStats()).forEach((s) => { if (s.type === 'outbound-rtp') bytes += s.bytesSent; });
    return bytes;
  }

  return { publish, bytesSent };
})();
