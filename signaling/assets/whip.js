// Gremium's WHIP publisher (RFC 9725) for the browser, shared by /join and /publish:
// offers a MediaStream's tracks send-only, waits for every ICE candidate (the media
// plane answers non-trickle), POSTs the offer with the participant's join token and
// DELETEs the session when the page goes away. ICE restarts (`pc.restartIce()`, or
// by itself when ICE fails) go to the session as a PATCH (RFC 9725 §4.4.2) before
// the new offer is applied; the answer's new credentials and candidates are applied
// as the previous answer with them swapped in, and the browser's new candidates
// follow in a trickle PATCH. When the session is gone (the restart's PATCH answered
// 404 or not at all: the server restarted, a media node died) a new session is POSTed
// with the same token, with backoff, until a refusal that will not change (401, 403,
// 404, 409, 410). Our own code, served by Gremium.
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

  // Statuses of a POST after which a participant cannot come back (401/403: token
  // revoked or participant removed; 404: meeting gone; 409/410: meeting ended or
  // participant left; the offer refused). Anything else (no answer, 5xx, 408, 425,
  // 429) is worth another POST: the server or its media node is restarting.
  const comesBackAfter = (status) => !(status >= 400 && status < 500) || [408, 425, 429].includes(status);
  // Wait before attempt `n` (0 first) to come back: 1, 2, 4, 8, then 10 s, jittered
  // down to half so that publishers who lost their session together spread out.
  const backoff = (n) => Math.min(10000, 1000 * 2 ** Math.min(n, 4)) * (0.5 + Math.random() / 2);
  // How long a restarted ICE session may take to connect before the session counts as lost.
  const RESTART_WINDOW_MS = 15000;

  // Publish `stream` into `meeting`. `onState(line)` hears each step ('PC-STATE …',
  // 'WHIP-STATUS …', 'WHIP-RECONNECTING …', 'WHIP-GONE …'). Resolves to a session
  // { pc, location, stop() } whose `pc` and `location` are the current ones; rejects
  // with an Error whose `status` is the HTTP status when the server refused the first
  // POST. Once publishing, a lost session (an ICE restart's PATCH answered 404 or not
  // at all, or a restarted ICE that does not connect) is replaced by a new POST with
  // the same token, with backoff, until stop() or a refusal that will not change.
  async function publish({ meeting, token, stream, onState }) {
    const say = onState || (() => {});
    let stopped = false;
    const session = { pc: null, location: null, stop: null };

    // One WHIP session: a new peer connection, its POST, and its ICE restarts.
    async function connect() {
      const pc = new RTCPeerConnection();
      pc.addEventListener('connectionstatechange', () => say('PC-STATE ' + pc.connectionState));
      for (const track of stream.getTracks()) pc.addTransceiver(track, { direction: 'sendonly' });
      let resp;
      try {
        await pc.setLocalDescription(await pc.createOffer());
        await gathered(pc);
        resp = await fetch('/whip/' + encodeURIComponent(meeting), {
          method: 'POST',
          headers: { 'Content-Type': 'application/sdp', 'Authorization': 'Bearer ' + token },
          body: pc.localDescription.sdp,
        });
      } catch (e) {
        pc.close();
        throw e;
      }
      const answer = await resp.text();
      const location = resp.headers.get('Location');
      say('WHIP-STATUS ' + resp.status + ' ' + (location || '-'));
      if (resp.status !== 201 || stopped) {
        pc.close();
        if (stopped && resp.status === 201) del(location);
        const e = new Error('WHIP ' + resp.status);
        e.status = resp.status;
        throw e;
      }
      await pc.setRemoteDescription({ type: 'answer', sdp: answer });
      session.pc = pc;
      session.location = location;
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
        if (restarting || pc.signalingState !== 'stable' || pc !== session.pc) return;
        restarting = true;
        let r;
        try {
          const offer = await pc.createOffer({ iceRestart: true });
          const ice = iceOf(offer.sdp);
          const credentials = ['a=ice-ufrag:' + ice.ufrag, 'a=ice-pwd:' + ice.pwd];
          // No answer (the server is restarting) or 404 (the session is gone): the
          // session cannot be restarted, a new one is made.
          r = await patch(credentials, '*').catch((e) => ({ status: 0, error: e }));
          say('WHIP-RESTART ' + r.status);
          if (r.status !== 200) return lost(pc, 'ICE restart answered ' + (r.status || String(r.error)));
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
          setTimeout(() => {
            if (!['connected', 'completed'].includes(pc.iceConnectionState)) lost(pc, 'the restarted ICE did not connect');
          }, RESTART_WINDOW_MS);
        } catch (e) {
          say('WHIP-RESTART-ERROR ' + e);
          lost(pc, String(e));
        } finally {
          restarting = false;
        }
      });
      pc.addEventListener('iceconnectionstatechange', () => {
        say('ICE-STATE ' + pc.iceConnectionState);
        if (pc !== session.pc) return;
        if (pc.iceConnectionState === 'failed') pc.restartIce();
        if (pc.iceConnectionState === 'disconnected') {
          setTimeout(() => { if (pc === session.pc && pc.iceConnectionState === 'disconnected') pc.restartIce(); }, 3000);
        }
      });
    }

    const del = (location) => fetch(location, { method: 'DELETE', headers: { 'Authorization': 'Bearer ' + token }, keepalive: true })
      .catch(() => {});

    // The session `pc` belongs to is gone: leave what may be left of it and come back.
    function lost(pc, why) {
      if (stopped || pc !== session.pc || session.comingBack) return;
      session.comingBack = true;
      pc.close();
      del(session.location);
      say('WHIP-LOST ' + why);
      comeBack(0);
    }

    async function comeBack(attempt) {
      const wait = backoff(attempt);
      say('WHIP-RECONNECTING reconnecting… (attempt ' + (attempt + 1) + ' in ' + (wait / 1000).toFixed(1) + ' s)');
      await new Promise((resolve) => setTimeout(resolve, wait));
      if (stopped) return;
      try {
        await connect();
        session.comingBack = false;
        say('WHIP-RECONNECTED after ' + (attempt + 1) + ' attempt(s)');
      } catch (e) {
        if (stopped) return;
        if (e.status && !comesBackAfter(e.status)) {
          stopped = true;
          say('WHIP-GONE ' + e.status + ' not coming back: ' + (GONE[e.status] || 'the server refused to take this participant back'));
          return;
        }
        comeBack(attempt + 1);
      }
    }

    await connect();
    session.stop = () => {
      if (stopped) return;
      stopped = true;
      if (session.location) del(session.location);
      session.pc.close();
    };
    window.addEventListener('pagehide', session.stop);
    return session;
  }

  // What a final refusal means for the participant.
  const GONE = {
    401: 'the join token is no longer valid (removed from the meeting?)',
    403: 'this token may not publish in this meeting',
    404: 'the meeting no longer exists',
    409: 'the meeting has ended or the participant has left',
    410: 'the meeting has ended',
  };

  // Bytes sent so far (all outbound RTP streams).
  async function bytesSent(pc) {
    let bytes = 0;
    (await pc.getStats()).forEach((s) => { if (s.type === 'outbound-rtp') bytes += s.bytesSent; });
    return bytes;
  }

  return { publish, bytesSent };
})();
