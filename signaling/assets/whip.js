// Gremium's WHIP publisher (RFC 9725) for the browser, shared by /join and /publish:
// offers a MediaStream's tracks send-only, waits for every ICE candidate (the media
// plane answers non-trickle), POSTs the offer with the participant's join token and
// DELETEs the session when the page goes away. ICE restarts (`pc.restartIce()`, or
// by itself when ICE fails) go to the session as a PATCH (RFC 9725 §4.4.2) before
// the new offer is applied; the answer's new credentials and candidates are applied
// as the previous answer with them swapped in, and the browser's new candidates
// follow in a trickle PATCH. Our own code, served by Gremium.
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

  // The ICE lines of an SDP's first m-section (all media is bundled on it).
  function iceOf(sdp) {
    const [session, first = ''] = sdp.split(/\r?\nm=/);
    const lines = (session + '\n' + first).split(/\r?\n/);
    const value = (k) => (lines.find((l) => l.startsWith('a=' + k + ':')) || '').slice(k.length + 3);
    return { ufrag: value('ice-ufrag'), pwd: value('ice-pwd'), candidates: lines.filter((l) => l.startsWith('a=candidate:')) };
  }

  // `sdp` with the ICE credentials and candidates of `ice` in every m-section.
  function withIce(sdp, ice) {
    const out = [];
    for (const l of sdp.split(/\r?\n/)) {
      if (l.startsWith('a=candidate:') || l === 'a=end-of-candidates') continue;
      if (l.startsWith('a=ice-ufrag:')) out.push('a=ice-ufrag:' + ice.ufrag);
      else if (l.startsWith('a=ice-pwd:')) out.push('a=ice-pwd:' + ice.pwd, ...ice.candidates);
      else out.push(l);
    }
    return out.join('\r\n');
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
    let lastAnswer = answer;
    let restarting = false;
    // After pc.restartIce() the browser asks for negotiation: WHIP only exchanges ICE.
    // The new credentials go to the media plane *before* the offer is applied. Applying
    // it makes the browser gather new candidates, which it pairs at once with the
    // media plane's current candidates and credentials. Had such a pair been chosen
    // before the media plane's new credentials arrived, Chromium would keep it (the
    // media plane's candidates keep their addresses across a restart), its checks
    // would fail from then on and the restart would never complete (seen in about 1
    // of 3 runs under load). Restarted first, the media plane refuses the old
    // credentials, so no such pair can be chosen. The new candidates follow as
    // trickle ICE (RFC 9725 §4.4.1); the media plane also learns them from the
    // browser's checks.
    const patch = (lines, etag) => fetch(location, {
      method: 'PATCH',
      headers: { 'Content-Type': 'application/trickle-ice-sdpfrag', 'If-Match': etag, 'Authorization': 'Bearer ' + token },
      body: [...lines, ''].join('\r\n'),
    });
    pc.addEventListener('negotiationneeded', async () => {
      if (restarting || pc.signalingState !== 'stable' || pc.connectionState === 'closed') return;
      restarting = true;
      try {
        const offer = await pc.createOffer({ iceRestart: true });
        const ice = iceOf(offer.sdp);
        const credentials = ['a=ice-ufrag:' + ice.ufrag, 'a=ice-pwd:' + ice.pwd];
        const r = await patch(credentials, '*');
        say('WHIP-RESTART ' + r.status);
        if (r.status !== 200) throw new Error('WHIP PATCH ' + r.status);
        const etag = r.headers.get('ETag') || '*';
        lastAnswer = withIce(lastAnswer, iceOf(await r.text()));
        const done = new Promise((resolve) => {
          const h = (e) => { if (!e.candidate) { pc.removeEventListener('icecandidate', h); resolve(); } };
          pc.addEventListener('icecandidate', h);
        });
        await pc.setLocalDescription(offer);
        await pc.setRemoteDescription({ type: 'answer', sdp: lastAnswer });
        await done;
        const candidates = iceOf(pc.localDescription.sdp).candidates;
        const t = await patch([...credentials, ...candidates, 'a=end-of-candidates'], etag);
        say('WHIP-TRICKLE ' + t.status);
      } catch (e) {
        say('WHIP-RESTART-ERROR ' + e);
      } finally {
        restarting = false;
      }
    });
    pc.addEventListener('iceconnectionstatechange', () => {
      say('ICE-STATE ' + pc.iceConnectionState);
      if (pc.iceConnectionState === 'failed') pc.restartIce();
      if (pc.iceConnectionState === 'disconnected') {
        setTimeout(() => { if (pc.iceConnectionState === 'disconnected') pc.restartIce(); }, 3000);
      }
    });
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
