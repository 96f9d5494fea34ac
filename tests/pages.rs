//! The pages people use in a meeting. Over HTTP (fake media plane): routes, 404s,
//! security headers, configured texts. In a real headless Chromium (Debian's package,
//! fake camera and microphone) against the GStreamer media plane, inside a network
//! namespace that has only `lo` (root needed, as CI has): a participant on the join
//! page chooses consent with the keyboard, publishes, sees the recording indicator
//! when a moderator starts a recording, and changes the choice later. Screenshots go
//! to `target/test-artifacts/join-*.png`.

mod common;

use std::time::Duration;

use common::*;
use gremium_signaling::{ApiSettings, Bilingual, ConsentTexts};
use reqwest::Method;
use serde_json::json;

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.http.get(app.url(path)).send().await.unwrap()
}

#[tokio::test]
async fn join_page_is_served_with_the_configured_texts_and_unknown_meetings_are_404() {
    let texts = ConsentTexts {
        controller: "Stadt Musterstadt, Rathausplatz 1 </script>".into(),
        purpose_recording: Bilingual {
            de: "Für das Protokoll.".into(),
            en: "For the minutes.".into(),
        },
        ..ConsentTexts::default()
    };
    let app = spawn_app_with(
        Backend::Sqlite,
        auth_settings(None),
        ApiSettings {
            consent_texts: texts.clone(),
            ..Default::default()
        },
    )
    .await;
    let moderator = app.moderator();
    let mid = moderator.create_meeting("Bauausschuss").await.id;

    let page = get(&app, &format!("/join/{mid}?token=x")).await;
    assert_eq!(page.status(), 200);
    let h = page.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert!(h["permissions-policy"]
        .to_str()
        .unwrap()
        .contains("camera=(self)"));
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(!html.contains("PAGE_CONFIG"));
    // The configured texts are in the page, unable to end its script element.
    assert!(html.contains("Stadt Musterstadt, Rathausplatz 1 \\u003c/script\\u003e"));
    assert!(html.contains("For the minutes."));
    for needle in [
        r#"<script src="/assets/whip.js"></script>"#,
        r#"<dialog id="consent""#,
        r#"type="radio" name="recording" value="no""#,
        r#"type="radio" name="streaming" value="yes""#,
        "Aufnahme läuft",
        r#"role="status""#,
    ] {
        assert!(html.contains(needle), "{needle}");
    }
    // No third-party code: every script is ours.
    assert!(!html.contains("src=\"http"), "{html}");

    let js = get(&app, "/assets/whip.js").await;
    assert_eq!(js.status(), 200);
    assert_eq!(
        js.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert!(js.text().await.unwrap().contains("window.gremiumWhip"));
    // publish.html uses the same publisher.
    let publish = get(&app, &format!("/publish/{mid}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(publish.contains(r#"<script src="/assets/whip.js"></script>"#));

    for bad in [
        "00000000-0000-0000-0000-000000000000".to_string(),
        "not-a-uuid".to_string(),
        format!("{mid}x"),
    ] {
        let r = get(&app, &format!("/join/{bad}")).await;
        assert_eq!(r.status(), 404, "{bad}");
    }
}

/// What the join page is doing, for failure messages.
const DESCRIBE: &str = "JSON.stringify({phase: gremiumJoin.phase, recording: gremiumJoin.recording, \
    streaming: gremiumJoin.streaming, consent: gremiumJoin.consent, error: gremiumJoin.error, \
    status: document.getElementById('status').textContent, \
    dialog: document.getElementById('consent').open, \
    consentError: document.getElementById('consent-error').textContent, \
    focus: document.activeElement && (document.activeElement.id || document.activeElement.tagName), \
    live: document.getElementById('live').hidden})";

#[test]
fn a_participant_joins_in_chromium_chooses_consent_and_sees_the_recording_indicator() {
    netns::run_isolated_async(
        "a_participant_joins_in_chromium_chooses_consent_and_sees_the_recording_indicator",
        Duration::from_secs(240),
        participant_joins,
    );
}

async fn participant_joins() {
    let stage = Stage::start("join").await;
    let moderator = &stage.moderator;
    let (m, mut ws) = stage
        .meeting(json!({"title": "Stadtrat, 12. Sitzung", "public": true, "retention_days": 90}))
        .await;
    let mid = m.id.clone();
    let anna = m.add_participant("Anna").await;

    let mut browser = stage
        .open(&format!("/join/{mid}?token={}", anna.join), true)
        .await;
    let b = &mut browser;
    b.wait_for(
        "window.gremiumJoin && gremiumJoin.phase === 'consent' && \
         document.getElementById('consent').open",
        Duration::from_secs(15),
        DESCRIBE,
    )
    .await;
    // The token left the address bar; the title, retention and controller are shown.
    assert_eq!(b.eval("location.search").await, "");
    assert_eq!(
        b.eval("document.querySelector('h1').textContent").await,
        "Stadtrat, 12. Sitzung"
    );
    b.eval("document.querySelector('[data-lang=de]').click()")
        .await;
    b.assert_accessible("join page, consent dialog open").await;
    let dialog = b.eval("document.getElementById('consent').innerText").await;
    let dialog = dialog.as_str().unwrap();
    for needle in [
        "Aufzeichnungen werden 90 Tage nach ihrem Ende gelöscht.",
        "Verantwortlich:",
        &ConsentTexts::default().purpose_recording.de,
        &ConsentTexts::default().purpose_streaming.de,
        "Nein, ich möchte nicht aufgezeichnet werden.",
    ] {
        assert!(dialog.contains(needle), "{needle} not in {dialog}");
    }
    // Nothing is preselected, so saving at once asks for both answers.
    assert_eq!(
        b.eval("document.querySelectorAll('#consent input:checked').length")
            .await,
        0
    );
    b.eval("document.getElementById('consent-save').click()")
        .await;
    b.wait_for(
        "document.getElementById('consent-error').textContent.includes('beiden Fragen')",
        Duration::from_secs(3),
        DESCRIBE,
    )
    .await;

    // Keyboard only: arrows choose within a group, Tab moves on, Enter saves.
    let focused = "document.activeElement.id";
    assert_eq!(b.eval(focused).await, "recording-yes");
    b.press("ArrowDown", 40, None).await;
    assert_eq!(b.eval(focused).await, "recording-no");
    b.press("Tab", 9, None).await;
    assert_eq!(b.eval(focused).await, "streaming-yes");
    b.press(" ", 32, Some(" ")).await;
    b.press("Tab", 9, None).await;
    assert_eq!(b.eval(focused).await, "consent-save");
    assert_eq!(
        b.eval("[...document.querySelectorAll('#consent input:checked')].map(e => e.id)")
            .await,
        json!(["recording-no", "streaming-yes"])
    );
    b.press("Enter", 13, Some("\r")).await;
    b.wait_for(
        "!document.getElementById('consent').open && gremiumJoin.consent !== null",
        Duration::from_secs(5),
        DESCRIBE,
    )
    .await;
    let (s, c) = moderator
        .send(
            Method::GET,
            &format!("/api/v1/meetings/{mid}/participants/{}/consent", anna.id),
            None,
        )
        .await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(c, json!({"recording": false, "streaming": true}));
    let e = wait_event(&mut ws, "consent_changed", |_| true).await;
    assert_eq!(
        (e["recording"].clone(), e["streaming"].clone()),
        (json!(false), json!(true))
    );

    // The camera and microphone reach the meeting.
    wait_event_for(
        &mut ws,
        Duration::from_secs(20),
        "participant_media_started",
        |e| e["participant_id"] == anna.id.as_str(),
    )
    .await;
    b.wait_for(
        "gremiumJoin.phase === 'connected'",
        Duration::from_secs(10),
        DESCRIBE,
    )
    .await;
    assert_eq!(b.eval("document.getElementById('live').hidden").await, true);

    // A recording starts: the indicator shows within seconds, and says the participant
    // is not in it.
    let rec = m.start_recording().await;
    let started = std::time::Instant::now();
    b.wait_for(
        "gremiumJoin.recording && !document.getElementById('live').hidden && \
         !document.getElementById('rec-on').hidden",
        Duration::from_secs(5),
        DESCRIBE,
    )
    .await;
    println!("recording indicator after {:?}", started.elapsed());
    assert_eq!(
        b.eval("['rec-on', 'live-you'].map(id => document.getElementById(id).textContent)")
            .await,
        json!([
            "Aufnahme läuft",
            "Sie sind darin nicht zu sehen und nicht zu hören (keine Einwilligung)."
        ])
    );
    assert!(b
        .eval("document.title")
        .await
        .as_str()
        .unwrap()
        .starts_with("● "));
    b.screenshot(&artifact("join-recording.png")).await;
    b.assert_accessible("join page, recording, consent given")
        .await;
    let png = std::fs::read(artifact("join-recording.png")).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{}",
        png.len()
    );

    // The participant changes their mind with the Consent button (in English).
    b.eval("document.querySelector('[data-lang=en]').click()")
        .await;
    b.eval("document.getElementById('consent-open').click()")
        .await;
    assert_eq!(
        b.eval(
            "[document.getElementById('consent').open, \
                document.querySelector('#consent input:checked').id]"
        )
        .await,
        json!([true, "recording-no"])
    );
    // A phone 360 px wide: nothing wider than the screen.
    b.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 360, "height": 740, "deviceScaleFactor": 1, "mobile": true}),
    )
    .await;
    b.wait_for(
        "document.documentElement.scrollWidth <= 360 && \
         document.getElementById('consent').getBoundingClientRect().right <= 360",
        Duration::from_secs(3),
        "[document.documentElement.scrollWidth, \
          document.getElementById('consent').getBoundingClientRect().right]",
    )
    .await;
    b.screenshot(&artifact("join-consent-360.png")).await;
    b.assert_accessible("join page, consent dialog open (360 px)")
        .await;
    b.eval("document.getElementById('recording-yes').click()")
        .await;
    b.eval("document.getElementById('consent-save').click()")
        .await;
    b.wait_for(
        "!document.getElementById('consent').open && gremiumJoin.consent.recording === true && \
         document.getElementById('live-you').textContent === 'You can be seen and heard in it.'",
        Duration::from_secs(5),
        DESCRIBE,
    )
    .await;
    b.screenshot(&artifact("join-recording-360.png")).await;
    b.assert_accessible("join page after the consent dialog (360 px)")
        .await;
    b.call("Emulation.clearDeviceMetricsOverride", json!({}))
        .await;
    let (_, c) = anna
        .client
        .send(
            Method::GET,
            &format!("/api/v1/meetings/{mid}/participants/{}/consent", anna.id),
            None,
        )
        .await;
    assert_eq!(c, json!({"recording": true, "streaming": true}));

    // Stopped: the indicator goes away.
    rec.stop().await;
    b.wait_for(
        "!gremiumJoin.recording && document.getElementById('live').hidden",
        Duration::from_secs(20),
        DESCRIBE,
    )
    .await;
    // Everything the page loaded came from our origin.
    let foreign = b
        .eval(
            "performance.getEntriesByType('resource').map(e => e.name)\
             .filter(n => !n.startsWith(location.origin + '/'))",
        )
        .await;
    assert_eq!(foreign, json!([]), "resources from elsewhere");
    drop(browser);
}

/// What the console is doing, for failure messages.
const DESCRIBE_CONSOLE: &str = "JSON.stringify({phase: gremiumConsole.phase, \
    recording: gremiumConsole.recording, stream: gremiumConsole.stream, \
    public: gremiumConsole.public, chapters: gremiumConsole.chapters, \
    participants: gremiumConsole.participants, error: gremiumConsole.error, \
    message: document.getElementById('message').textContent, \
    ledger: gremiumConsole.ledgerKinds})";

#[tokio::test]
async fn console_page_is_served_and_unknown_meetings_are_404() {
    let app = spawn_app(Backend::Sqlite).await;
    let moderator = app.moderator();
    let mid = moderator.create_meeting("Hauptausschuss").await.id;
    let page = get(&app, &format!("/console/{mid}?token=x")).await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    assert!(page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    assert!(page.headers()["permissions-policy"]
        .to_str()
        .unwrap()
        .contains("camera=()"));
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"id="recording-start""#));
    assert!(!html.contains("src=\"http"));
    for bad in ["00000000-0000-0000-0000-000000000000", "nope"] {
        assert_eq!(get(&app, &format!("/console/{bad}")).await.status(), 404);
    }
}

#[test]
fn a_moderator_runs_the_meeting_from_the_console_in_chromium() {
    netns::run_isolated_async(
        "a_moderator_runs_the_meeting_from_the_console_in_chromium",
        Duration::from_secs(120),
        moderator_console,
    );
}

async fn moderator_console() {
    let app = spawn_app(Backend::Sqlite).await;
    let moderator = app.moderator();
    let m = moderator
        .create_meeting_with(json!({"title": "Stadtrat, 13. Sitzung", "public": true}))
        .await;
    let mid = m.id.clone();
    let anna = m.add_participant("Anna").await;
    anna.set_consent(Consent::RECORDING).await;
    let (mut ws, _) = m.events().await;
    // Anna's media arrives before the console is opened: the console still shows it
    // (from the participant list), not only media events seen while it is open.
    app.fake
        .emit(gremium_protocol::MediaEvent::ParticipantMediaStarted {
            meeting_id: mid.parse().unwrap(),
            participant_id: anna.id.parse().unwrap(),
        });
    wait_event(&mut ws, "participant_media_started", |_| true).await;
    let list = m.participants().await;
    assert_eq!(list[0]["publishing"], true, "{list}");

    let url = app.url(&format!("/console/{mid}?token={}", moderator.token()));
    let mut browser = cdp::Chromium::launch(&url).await;
    let b = &mut browser;
    b.wait_for(
        "window.gremiumConsole && gremiumConsole.phase === 'ready'",
        Duration::from_secs(15),
        DESCRIBE_CONSOLE,
    )
    .await;
    assert_eq!(b.eval("location.search").await, "");
    b.eval("document.querySelector('[data-lang=de]').click()")
        .await;
    assert_eq!(
        b.eval("gremiumConsole.participants").await,
        json!([{"name": "Anna", "media": true, "consent": {"recording": true, "streaming": false}}])
    );
    // Media and consent changes arrive over the WebSocket.
    app.fake
        .emit(gremium_protocol::MediaEvent::ParticipantMediaStopped {
            meeting_id: mid.parse().unwrap(),
            participant_id: anna.id.parse().unwrap(),
        });
    b.wait_for(
        "gremiumConsole.participants[0].media === false",
        Duration::from_secs(5),
        DESCRIBE_CONSOLE,
    )
    .await;
    let (_, list) = moderator
        .send(
            Method::GET,
            &format!("/api/v1/meetings/{mid}/participants"),
            None,
        )
        .await;
    assert_eq!(list[0]["publishing"], false, "{list}");
    app.fake
        .emit(gremium_protocol::MediaEvent::ParticipantMediaStarted {
            meeting_id: mid.parse().unwrap(),
            participant_id: anna.id.parse().unwrap(),
        });
    anna.set_consent(Consent::BOTH).await;
    b.wait_for(
        "(p => p.media === true && p.consent.streaming === true)(gremiumConsole.participants[0]) \
         && document.querySelector('#participants tr td:nth-child(2)').textContent === 'sendet'",
        Duration::from_secs(5),
        DESCRIBE_CONSOLE,
    )
    .await;

    // Start recording: a recording is active per the API.
    b.eval("document.getElementById('recording-start').click()")
        .await;
    b.wait_for(
        "gremiumConsole.recording && gremiumConsole.recording.state === 'active' && \
         document.getElementById('recording-state').textContent === 'läuft'",
        Duration::from_secs(5),
        DESCRIBE_CONSOLE,
    )
    .await;
    let (s, recs) = moderator
        .send(
            Method::GET,
            &format!("/api/v1/meetings/{mid}/recordings"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(recs.as_array().unwrap().len(), 1, "{recs}");
    assert_eq!(recs[0]["state"], "active", "{recs}");

    // A chapter, typed and marked with Enter: listed by the API and on the page.
    b.eval("document.getElementById('chapter-title').focus()")
        .await;
    b.call("Input.insertText", json!({"text": "TOP 3: Haushalt"}))
        .await;
    b.press("Enter", 13, Some("\r")).await;
    b.wait_for(
        "gremiumConsole.chapters.includes('TOP 3: Haushalt') && \
         document.getElementById('chapters').textContent.includes('TOP 3: Haushalt')",
        Duration::from_secs(5),
        DESCRIBE_CONSOLE,
    )
    .await;
    let (_, chapters) = moderator
        .send(
            Method::GET,
            &format!("/api/v1/meetings/{mid}/chapters"),
            None,
        )
        .await;
    assert_eq!(chapters[0]["title"], "TOP 3: Haushalt", "{chapters}");

    // Non-public with a reason: public_changed carries it.
    b.eval("document.getElementById('public-reason').value = 'TOP 7: Personalsache'")
        .await;
    b.eval("document.getElementById('public-toggle').click()")
        .await;
    let e = wait_event(&mut ws, "public_changed", |_| true).await;
    assert_eq!(e["public"], false, "{e}");
    assert_eq!(e["reason"], "TOP 7: Personalsache", "{e}");
    b.wait_for(
        "gremiumConsole.public === false && \
         document.getElementById('public-toggle').textContent === 'Öffentlich schalten'",
        Duration::from_secs(5),
        DESCRIBE_CONSOLE,
    )
    .await;

    // The ledger shows what happened.
    b.wait_for(
        "['meeting_created', 'consent_changed', 'recording_active', 'public_changed']\
         .every(k => gremiumConsole.ledgerKinds.includes(k)) && \
         document.getElementById('ledger').textContent.includes('public_changed')",
        Duration::from_secs(5),
        DESCRIBE_CONSOLE,
    )
    .await;
    b.screenshot(&artifact("console.png")).await;
    b.assert_accessible("moderator console").await;

    // Layout: the podium with Anna on it; the API and the meeting's WebSocket show it.
    b.eval(
        "(s => { s.value = 'podium'; s.dispatchEvent(new Event('change')); })\
         (document.getElementById('layout-kind'))",
    )
    .await;
    b.wait_for(
        "!document.getElementById('podium-fieldset').hidden && \
         document.querySelectorAll('#podium input').length === 1",
        Duration::from_secs(3),
        DESCRIBE_CONSOLE,
    )
    .await;
    b.eval("document.querySelector('#podium input').click()")
        .await;
    b.assert_accessible("moderator console, choosing the podium")
        .await;
    b.eval("document.getElementById('layout-apply').click()")
        .await;
    let e = wait_event(&mut ws, "layout_changed", |_| true).await;
    assert_eq!(e["layout"]["kind"], "podium", "{e}");
    assert_eq!(e["layout"]["podium"], json!([anna.id]), "{e}");
    let (s, m) = moderator
        .send(Method::GET, &format!("/api/v1/meetings/{mid}"), None)
        .await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(m["layout"]["kind"], "podium", "{m}");
    assert_eq!(m["layout"]["podium"], json!([anna.id]), "{m}");
    b.wait_for(
        "gremiumConsole.layoutEvent && gremiumConsole.layoutEvent.kind === 'podium' && \
         gremiumConsole.layout.kind === 'podium' && !gremiumConsole.error && \
         document.getElementById('layout-kind').value === 'podium' && \
         document.querySelector('#podium input').checked && \
         !document.getElementById('layout-apply').disabled",
        Duration::from_secs(5),
        DESCRIBE_CONSOLE,
    )
    .await;

    // HLS stream on and off; recording off.
    b.eval("document.getElementById('stream-start').click()")
        .await;
    b.wait_for(
        "gremiumConsole.stream && gremiumConsole.stream.state === 'active'",
        Duration::from_secs(5),
        DESCRIBE_CONSOLE,
    )
    .await;
    // The program preview attaches our hls.js to the livestream while it runs. The
    // fake media plane writes no playlist, so the player may be between a failed load
    // and its retry (every 3 s) when looked at: either state shows it is hls.js on
    // the meeting's playlist.
    b.wait_for(
        &format!(
            "((gremiumConsole.preview.url === '/live/{mid}/index.m3u8' && \
               gremiumConsole.preview.engine === 'hls.js') || \
              (gremiumConsole.preview.error || '').startsWith('hls.js:')) && \
             !document.getElementById('preview').hidden && \
             document.getElementById('preview-off').hidden"
        ),
        Duration::from_secs(10),
        "[gremiumConsole.preview, gremiumConsole.stream]",
    )
    .await;
    b.assert_accessible("moderator console, livestream preview")
        .await;
    // The live disk fills up: the console says HLS stalled, and why.
    let sid = b.eval("gremiumConsole.stream.id").await;
    let sid = sid.as_str().unwrap();
    app.fake
        .emit(gremium_protocol::MediaEvent::StreamHlsChanged {
            meeting_id: mid.parse().unwrap(),
            stream_id: sid.parse().unwrap(),
            error: Some("hls-720p: No space left on device".into()),
        });
    b.wait_for(
        "gremiumConsole.stream.state === 'active' && document.getElementById('stream-note').textContent \
         === '— HLS: hls-720p: No space left on device'",
        Duration::from_secs(5),
        DESCRIBE_CONSOLE,
    )
    .await;
    b.eval("document.getElementById('stream-stop').click()")
        .await;
    // Buttons are disabled while a request is in flight.
    b.wait_for(
        "gremiumConsole.stream.state === 'finished' && gremiumConsole.preview.url === null && \
         document.getElementById('preview').hidden &&          !document.getElementById('recording-stop').disabled",
        Duration::from_secs(5),
        DESCRIBE_CONSOLE,
    )
    .await;
    b.eval("document.getElementById('recording-stop').click()")
        .await;
    b.wait_for(
        "gremiumConsole.recording.state === 'finished' &&          !document.getElementById('recording-start').disabled",
        Duration::from_secs(5),
        DESCRIBE_CONSOLE,
    )
    .await;
    // A recording the media plane stops itself (its spool disk filled up): the
    // console says why, and still does once it is finished.
    b.eval("document.getElementById('recording-start').click()")
        .await;
    b.wait_for(
        "gremiumConsole.recording.state === 'active' && \
         document.getElementById('recording-note').textContent === ''",
        Duration::from_secs(5),
        DESCRIBE_CONSOLE,
    )
    .await;
    let rid = b.eval("gremiumConsole.recording.id").await;
    let rid = rid.as_str().unwrap();
    let reason = "writing the spool failed after 7.4 s: No space left on device (os error 28)";
    app.fake
        .emit(gremium_protocol::MediaEvent::RecordingInterrupted {
            meeting_id: mid.parse().unwrap(),
            recording_id: rid.parse().unwrap(),
            reason: reason.into(),
        });
    let note = format!("document.getElementById('recording-note').textContent === '— {reason}'");
    b.wait_for(
        &format!("gremiumConsole.recording.state === 'stopping' && {note}"),
        Duration::from_secs(5),
        DESCRIBE_CONSOLE,
    )
    .await;
    app.fake
        .emit(gremium_protocol::MediaEvent::RecordingFinished {
            meeting_id: mid.parse().unwrap(),
            recording_id: rid.parse().unwrap(),
            media: None,
        });
    b.wait_for(
        &format!("gremiumConsole.recording.state === 'finished' && {note}"),
        Duration::from_secs(5),
        DESCRIBE_CONSOLE,
    )
    .await;
    // A phone 360 px wide: nothing wider than the screen.
    b.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 360, "height": 740, "deviceScaleFactor": 1, "mobile": true}),
    )
    .await;
    b.wait_for(
        "document.documentElement.scrollWidth <= 360",
        Duration::from_secs(3),
        "document.documentElement.scrollWidth",
    )
    .await;
    b.screenshot(&artifact("console-360.png")).await;
}

#[tokio::test]
async fn archive_page_is_served_with_our_headers() {
    let app = spawn_app(Backend::Sqlite).await;
    let page = get(&app, "/archive?token=x").await;
    assert_eq!(page.status(), 200);
    let h = page.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(h["referrer-policy"], "no-referrer");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("media-src 'self' blob:"), "{csp}");
    assert!(csp.contains("img-src 'self' data: blob:"), "{csp}");
    let html = page.text().await.unwrap();
    for needle in [
        r#"<video id="player" controls"#,
        r#"id="download""#,
        r#"id="confirm-yes""#,
        r#"role="search""#,
    ] {
        assert!(html.contains(needle), "{needle}");
    }
    assert!(!html.contains("src=\"http"));
    // No token in any media URL: media, posters and manifests go through fetch.
    assert!(!html.contains("access_token"));
}

/// What the archive page is doing, for failure messages.
const DESCRIBE_ARCHIVE: &str = "JSON.stringify({phase: gremiumArchive.phase, \
    archivist: gremiumArchive.archivist, busy: gremiumArchive.busy, items: gremiumArchive.items, \
    open: gremiumArchive.open, names: gremiumArchive.manifestNames, \
    chapters: gremiumArchive.chapters, hold: gremiumArchive.legalHold, \
    error: gremiumArchive.error, message: document.getElementById('message').textContent, \
    video: (v => [v.readyState, v.currentTime, v.paused, v.videoWidth, v.error && v.error.code])\
    (document.getElementById('player'))})";

#[test]
fn a_recording_made_with_the_join_page_is_found_and_played_in_the_archive() {
    netns::run_isolated_async(
        "a_recording_made_with_the_join_page_is_found_and_played_in_the_archive",
        Duration::from_secs(300),
        recording_to_archive,
    );
}

async fn recording_to_archive() {
    let stage = Stage::start("archive").await;
    let (app, moderator) = (&stage.app, &stage.moderator);
    let archivist = app.archivist();
    let (m, mut ws) = stage
        .meeting(json!({"title": "Kulturausschuss, 4. Sitzung", "public": false}))
        .await;
    let mid = m.id.clone();
    let paula = m.add_participant("Paula Eins").await;
    let peter = m.add_participant("Peter Zwei").await;

    // P1 joins with the join page and declines the recording.
    let mut join = stage
        .open(&format!("/join/{mid}?token={}", paula.join), true)
        .await;
    join.wait_for(
        "window.gremiumJoin && gremiumJoin.phase === 'consent' && \
         document.getElementById('consent').open",
        Duration::from_secs(15),
        DESCRIBE,
    )
    .await;
    join.eval(
        "document.getElementById('recording-no').click(); \
         document.getElementById('streaming-no').click(); \
         document.getElementById('consent-save').click()",
    )
    .await;
    join.wait_for(
        "!document.getElementById('consent').open && gremiumJoin.consent !== null",
        Duration::from_secs(5),
        DESCRIBE,
    )
    .await;
    // P2 consents through the API and publishes a solid colour.
    peter.set_consent(Consent::RECORDING).await;
    let _p2_media = peter.publish_small("1e50ff", 60);
    let mut sending = std::collections::HashSet::new();
    while sending.len() < 2 {
        let e = wait_event_for(
            &mut ws,
            Duration::from_secs(30),
            "participant_media_started",
            |_| true,
        )
        .await;
        sending.insert(e["participant_id"].as_str().unwrap().to_string());
    }
    assert!(
        sending.contains(&paula.id) && sending.contains(&peter.id),
        "{sending:?}"
    );
    let (_, c) = moderator
        .send(
            Method::GET,
            &format!("/api/v1/meetings/{mid}/participants/{}/consent", paula.id),
            None,
        )
        .await;
    assert_eq!(c, json!({"recording": false, "streaming": false}));

    // The moderator records; P1's page shows the indicator.
    let rec = m.start_recording().await;
    let rid = rec.id.clone();
    join.wait_for(
        "gremiumJoin.recording && !document.getElementById('rec-on').hidden",
        Duration::from_secs(5),
        DESCRIBE,
    )
    .await;
    join.screenshot(&artifact("archive-join-recording.png"))
        .await;
    wait_event(&mut ws, "recording_state_changed", |e| {
        e["state"] == "active"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    m.add_chapter("TOP 1: Museumsnacht").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    rec.stop().await;
    let done = wait_event_for(
        &mut ws,
        Duration::from_secs(60),
        "recording_state_changed",
        |e| e["state"] == "finished" || e["state"] == "failed",
    )
    .await;
    assert_eq!(done["state"], "finished", "{done}");
    drop(join);

    // The archivist finds the recording of the non-public meeting and plays it.
    let url = app.url(&format!("/archive?token={}", archivist.token()));
    let mut browser = cdp::Chromium::launch(&url).await;
    let b = &mut browser;
    b.wait_for(
        "window.gremiumArchive && gremiumArchive.phase === 'ready' && !gremiumArchive.busy && \
         gremiumArchive.items.length === 1",
        Duration::from_secs(15),
        DESCRIBE_ARCHIVE,
    )
    .await;
    assert_eq!(b.eval("location.search").await, "");
    assert_eq!(b.eval("gremiumArchive.archivist").await, true);
    b.eval("document.querySelector('[data-lang=de]').click()")
        .await;
    // Searching by title and for non-public meetings finds it; another title does not.
    b.eval(
        "document.getElementById('q').value = 'museum'; \
         document.getElementById('search-go').click()",
    )
    .await;
    b.wait_for(
        "!gremiumArchive.busy && gremiumArchive.items.length === 0 && \
         !document.getElementById('empty').hidden",
        Duration::from_secs(5),
        DESCRIBE_ARCHIVE,
    )
    .await;
    b.eval(
        "document.getElementById('q').value = 'kultur'; \
         document.getElementById('public').value = 'false'; \
         document.getElementById('search-go').click()",
    )
    .await;
    b.wait_for(
        "!gremiumArchive.busy && gremiumArchive.items.length === 1 && \
         document.querySelector('#list img') !== null",
        Duration::from_secs(10),
        DESCRIBE_ARCHIVE,
    )
    .await;
    b.screenshot(&artifact("archive-list.png")).await;
    b.assert_accessible("archive list").await;
    // Open it with the keyboard.
    b.eval("document.querySelector('#list button').focus()")
        .await;
    b.press("Enter", 13, Some("\r")).await;
    b.wait_for(
        &format!(
            "gremiumArchive.open === '{rid}' && !gremiumArchive.busy && \
             gremiumArchive.manifestNames !== null"
        ),
        Duration::from_secs(20),
        DESCRIBE_ARCHIVE,
    )
    .await;
    assert_eq!(
        b.eval("gremiumArchive.manifestNames").await,
        json!(["Peter Zwei"]),
        "only the consenting participant is in the manifest"
    );
    let people = b
        .eval("document.getElementById('people').textContent")
        .await;
    let people = people.as_str().unwrap();
    assert!(people.contains("Peter Zwei"), "{people}");
    assert!(!people.contains("Paula"), "{people}");
    assert_eq!(
        b.eval("gremiumArchive.chapters").await,
        json!(["TOP 1: Museumsnacht"])
    );
    // The video plays.
    b.eval(
        "document.getElementById('player').muted = true; document.getElementById('player').play()",
    )
    .await;
    b.wait_for(
        "(v => v.readyState >= 2 && v.currentTime > 0.5 && v.videoWidth > 0)\
         (document.getElementById('player'))",
        Duration::from_secs(15),
        DESCRIBE_ARCHIVE,
    )
    .await;
    assert_eq!(
        b.eval("document.getElementById('player').videoWidth").await,
        640
    );
    b.screenshot(&artifact("archive-recording.png")).await;
    b.assert_accessible("archive, opened recording").await;
    // A chapter button seeks to its offset.
    let offset = b
        .eval("Number(document.querySelector('#chapters button').dataset.offset)")
        .await;
    let offset = offset.as_f64().unwrap() / 1000.0;
    b.eval("document.getElementById('player').pause(); document.querySelector('#chapters button').click()")
        .await;
    b.wait_for(
        &format!("Math.abs(document.getElementById('player').currentTime - {offset}) < 1.0"),
        Duration::from_secs(5),
        DESCRIBE_ARCHIVE,
    )
    .await;
    // The download link is the same media.
    assert!(b
        .eval("document.getElementById('download').href")
        .await
        .as_str()
        .unwrap()
        .starts_with("blob:"));

    // Legal hold on, then deletion with its confirm step.
    b.eval("document.getElementById('hold').click()").await;
    b.wait_for(
        "gremiumArchive.legalHold === true && !gremiumArchive.busy && \
         document.getElementById('hold').getAttribute('aria-pressed') === 'true'",
        Duration::from_secs(5),
        DESCRIBE_ARCHIVE,
    )
    .await;
    let (_, meeting) = archivist
        .send(Method::GET, &format!("/api/v1/meetings/{mid}"), None)
        .await;
    assert_eq!(meeting["legal_hold"], true, "{meeting}");
    b.eval("document.getElementById('hold').click()").await;
    b.wait_for(
        "gremiumArchive.legalHold === false && !gremiumArchive.busy",
        Duration::from_secs(5),
        DESCRIBE_ARCHIVE,
    )
    .await;
    b.eval("document.getElementById('delete').click()").await;
    assert_eq!(
        b.eval("[document.getElementById('confirm').hidden, document.activeElement.id]")
            .await,
        json!([false, "confirm-no"])
    );
    // Escape cancels; nothing is deleted.
    b.press("Escape", 27, None).await;
    assert_eq!(
        b.eval("document.getElementById('confirm').hidden").await,
        true
    );
    // A phone 360 px wide: nothing wider than the screen.
    b.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 360, "height": 740, "deviceScaleFactor": 1, "mobile": true}),
    )
    .await;
    b.wait_for(
        "document.documentElement.scrollWidth <= 360",
        Duration::from_secs(3),
        "document.documentElement.scrollWidth",
    )
    .await;
    b.screenshot(&artifact("archive-recording-360.png")).await;
    b.call("Emulation.clearDeviceMetricsOverride", json!({}))
        .await;
    b.eval("document.getElementById('delete').click()").await;
    b.eval("document.getElementById('confirm-yes').click()")
        .await;
    b.wait_for(
        "!gremiumArchive.busy && document.getElementById('message').textContent === \
         'Die Aufzeichnung wurde gelöscht.'",
        Duration::from_secs(10),
        DESCRIBE_ARCHIVE,
    )
    .await;
    let (_, r) = archivist
        .send(Method::GET, &format!("/api/v1/recordings/{rid}"), None)
        .await;
    assert!(r["deleted_at"].is_string(), "{r}");

    // Every read was logged: metadata, poster, manifest, media.
    let (_, entries) = archivist
        .send(
            Method::GET,
            &format!("/api/v1/meetings/{mid}/ledger?limit=500"),
            None,
        )
        .await;
    // `data` is canonical JSON in a string.
    let what: std::collections::HashSet<String> = entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "archive_access")
        .filter_map(|e| serde_json::from_str::<serde_json::Value>(e["data"].as_str()?).ok())
        .filter_map(|d| d["what"].as_str().map(String::from))
        .collect();
    for w in ["metadata", "poster", "manifest", "media"] {
        assert!(what.contains(w), "{w} not logged: {what:?}");
    }
    let foreign = b
        .eval(
            "performance.getEntriesByType('resource').map(e => e.name)\
             .filter(n => !n.startsWith(location.origin + '/'))",
        )
        .await;
    assert_eq!(foreign, json!([]), "resources from elsewhere");
    drop(browser);
}
