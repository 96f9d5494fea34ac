//! The citizens' viewer page (`/watch/{meeting_id}`): its status endpoint and player
//! asset over HTTP (fake media plane), and a real headless Chromium (Debian's package)
//! playing a real livestream from the GStreamer media plane with hls.js from our own
//! origin: waiting → live (the video plays: time advances, a ladder size) → not
//! public → ended. The browser test runs in a network namespace that has only `lo`
//! (root needed, as CI has) and saves a screenshot to
//! `target/test-artifacts/watch-live.png`.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use gremium_signaling::ApiSettings;
use gremium_streamer::hls::Rendition;
use reqwest::Method;
use serde_json::{json, Value};

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.http.get(app.url(path)).send().await.unwrap()
}

async fn status(app: &TestApp, mid: &str) -> Value {
    let r = get(app, &format!("/watch/{mid}/status")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "public, max-age=1");
    r.json().await.unwrap()
}

/// Poll the status until its state is `want` (the fake media plane reports a stream
/// started through the event channel, a moment after the POST returns).
async fn wait_status(app: &TestApp, mid: &str, want: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let s = status(app, mid).await;
        if s["state"] == want {
            return s;
        }
        assert!(std::time::Instant::now() < deadline, "{s} is not {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn status_follows_stream_public_switch_and_end() {
    let app = spawn_app(Backend::Sqlite).await;
    let moderator = app.moderator();
    let m = moderator
        .create_meeting_with(json!({"title": "Stadtrat, 12. Sitzung", "public": true}))
        .await;
    let mid = m.id.clone();

    // No token needed; nothing runs yet.
    assert_eq!(
        status(&app, &mid).await,
        json!({"title": "Stadtrat, 12. Sitzung", "state": "waiting", "hls": null})
    );
    // RTMP only: nothing to play on the page.
    let rtmp = m
        .start_stream(json!({"rtmp": [{"url": "rtmp://127.0.0.1/live", "key": "k"}]}))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(status(&app, &mid).await["state"], "waiting");
    rtmp.stop().await;

    // One stream at a time: retry while the RTMP one finishes.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (s, r) = moderator
            .send(
                Method::POST,
                &format!("/api/v1/meetings/{mid}/streams"),
                Some(json!({"hls": true})),
            )
            .await;
        if s == 201 {
            break;
        }
        assert!(s == 409 && std::time::Instant::now() < deadline, "{s} {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let live = wait_status(&app, &mid, "live").await;
    assert_eq!(live["hls"], format!("/live/{mid}/index.m3u8"));

    for (public, want) in [(false, "not_public"), (true, "live"), (false, "not_public")] {
        m.set_public(public, "TOP 7").await;
        let st = status(&app, &mid).await;
        assert_eq!(st["state"], want);
        // The slate plays during non-public parts: the page keeps the player.
        assert_eq!(st["hls"], format!("/live/{mid}/index.m3u8"));
    }

    let (s, r) = moderator
        .send(Method::POST, &format!("/api/v1/meetings/{mid}/end"), None)
        .await;
    assert!(s == 200 || s == 204, "{s} {r}");
    // It ended during a non-public part: ended, and still no title.
    assert_eq!(
        status(&app, &mid).await,
        json!({"title": null, "state": "ended", "hls": null})
    );
}

/// Anonymous callers learn nothing of a non-public meeting beyond "not public at the
/// moment" (issue 18, item 2): no title in the status, and no chapter marked while it
/// was non-public in the live playlists (before, during or after that part).
#[tokio::test]
async fn anonymous_callers_learn_nothing_of_a_non_public_meeting() {
    let live_dir = std::env::temp_dir().join(format!("gremium-live-{}", uuid::Uuid::new_v4()));
    let app = spawn_app_with(
        Backend::Sqlite,
        auth_settings(None),
        ApiSettings {
            live_dir: live_dir.clone(),
            ..Default::default()
        },
    )
    .await;
    let moderator = app.moderator();
    let m = moderator
        .create_meeting_with(
            json!({"title": "Personalausschuss: Kündigung Herr X", "public": false}),
        )
        .await;
    let mid = m.id.clone();
    let not_public = json!({"title": null, "state": "not_public", "hls": null});
    assert_eq!(status(&app, &mid).await, not_public);

    let switch = |public: bool| {
        let (app, mid, moderator) = (&app, &mid, moderator.token());
        async move {
            let (s, r) = app
                .send(
                    Method::PUT,
                    &format!("/api/v1/meetings/{mid}/public"),
                    Some(moderator),
                    Some(json!({"public": public})),
                )
                .await;
            assert_eq!(s, 200, "{r}");
        }
    };
    let mark = |title: &'static str| {
        let m = m.clone();
        async move {
            m.add_chapter(title).await;
        }
    };
    mark("TOP 0 Vorgespräch Müller").await;
    switch(true).await;
    assert_eq!(
        status(&app, &mid).await,
        json!({"title": "Personalausschuss: Kündigung Herr X", "state": "waiting", "hls": null})
    );
    mark("TOP 1 Begrüßung").await;
    switch(false).await;
    mark("TOP 2 Personalsache Meier").await;
    assert_eq!(status(&app, &mid).await, not_public);
    switch(true).await;
    mark("TOP 3 Haushalt").await;

    // A media playlist as the HLS output writes it.
    let rendition = live_dir.join(&mid).join("360p");
    std::fs::create_dir_all(&rendition).unwrap();
    std::fs::write(rendition.join("seg00007.ts"), [0u8; 188]).unwrap();
    std::fs::write(
        rendition.join("index.m3u8"),
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:7\n#EXT-X-TARGETDURATION:1\n\n\
         #EXTINF:1,\nseg00007.ts\n",
    )
    .unwrap();
    let playlist = || async {
        let r = get(&app, &format!("/live/{mid}/360p/index.m3u8")).await;
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    };
    let text = playlist().await;
    assert!(
        text.contains("TOP 1 Begrüßung") && text.contains("TOP 3 Haushalt"),
        "{text}"
    );
    assert!(
        !text.contains("Müller") && !text.contains("Meier"),
        "{text}"
    );
    assert_eq!(text.matches("#EXT-X-DATERANGE").count(), 2, "{text}");
    // Non-public again: what was public stays, the new mark is not shown.
    switch(false).await;
    mark("TOP 4 Grundstück Schulze").await;
    let text = playlist().await;
    assert!(!text.contains("Schulze"), "{text}");
    assert_eq!(text.matches("#EXT-X-DATERANGE").count(), 2, "{text}");

    let (s, r) = moderator
        .send(Method::POST, &format!("/api/v1/meetings/{mid}/end"), None)
        .await;
    assert!(s == 200 || s == 204, "{s} {r}");
    assert_eq!(
        status(&app, &mid).await,
        json!({"title": null, "state": "ended", "hls": null})
    );
    let _ = std::fs::remove_dir_all(&live_dir);
}

#[tokio::test]
async fn the_page_is_served_without_third_party_code_and_unknown_meetings_are_404() {
    let app = spawn_app(Backend::Sqlite).await;
    let moderator = app.moderator();
    let mid = moderator.create_meeting("Bauausschuss").await.id;

    let page = get(&app, &format!("/watch/{mid}")).await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(page.headers()["cache-control"], "no-cache");
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("script-src 'self' 'unsafe-inline'"), "{csp}");
    let html = page.text().await.unwrap();
    for needle in [
        "<video",
        "controls",
        "playsinline",
        r#"role="status""#,
        r#"class="captions""#,
        r#"aria-live="polite""#,
        r#"src="/assets/hls.min.js""#,
        "Die Übertragung hat noch nicht begonnen.",
        "The stream has not started yet.",
        "Nicht-öffentlicher Teil – die Übertragung ist unterbrochen.",
        "Non-public part – the stream is paused.",
    ] {
        assert!(html.contains(needle), "the page lacks {needle}");
    }
    // Everything comes from our own origin.
    assert!(
        !html.contains("http://") && !html.contains("https://") && !html.contains("src=\"//"),
        "the page references another origin"
    );

    let (s, doc) = app
        .send(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(s, 200);
    assert!(
        doc["paths"]["/watch/{meeting_id}/status"]["get"].is_object(),
        "the status endpoint is documented"
    );

    let unknown = uuid::Uuid::new_v4();
    for path in [
        format!("/watch/{unknown}"),
        format!("/watch/{unknown}/status"),
        "/watch/not-a-meeting".to_string(),
        "/watch/not-a-meeting/status".to_string(),
    ] {
        let r = get(&app, &path).await;
        assert_eq!(r.status(), 404, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{path}: {body}");
    }
}

#[tokio::test]
async fn the_player_asset_is_served_from_the_configured_file_or_404() {
    let dir = std::env::temp_dir().join(format!("gremium-web-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("hls.min.js");
    std::fs::write(&file, "/* player */").unwrap();
    for (player_js, want) in [
        (Some(file.clone()), Some("/* player */")),
        (Some(dir.join("missing.js")), None),
        (None, None),
    ] {
        let app = spawn_app_with(
            Backend::Sqlite,
            auth_settings(None),
            ApiSettings {
                player_js,
                ..Default::default()
            },
        )
        .await;
        let r = get(&app, "/assets/hls.min.js").await;
        match want {
            Some(body) => {
                assert_eq!(r.status(), 200);
                assert_eq!(
                    r.headers()["content-type"],
                    "text/javascript; charset=utf-8"
                );
                assert_eq!(r.headers()["cache-control"], "public, max-age=86400");
                assert_eq!(r.text().await.unwrap(), body);
            }
            None => assert_eq!(r.status(), 404),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// What the page is doing, for failure messages.
const DESCRIBE: &str = "JSON.stringify({state: gremiumWatch.state, engine: gremiumWatch.engine, \
    error: gremiumWatch.error, status: document.getElementById('status').textContent, \
    t: document.getElementById('video').currentTime, \
    ready: document.getElementById('video').readyState, \
    paused: document.getElementById('video').paused, \
    size: [document.getElementById('video').videoWidth, document.getElementById('video').videoHeight], \
    verror: document.getElementById('video').error && document.getElementById('video').error.message})";

#[test]
fn headless_chromium_plays_the_livestream_on_the_watch_page() {
    netns::run_isolated_async(
        "headless_chromium_plays_the_livestream_on_the_watch_page",
        Duration::from_secs(240),
        chromium_watches_a_meeting,
    );
}

async fn chromium_watches_a_meeting() {
    let player =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(gremium_signaling::DEFAULT_PLAYER_JS);
    assert!(
        player.exists(),
        "{} missing: `source scripts/web.sh && gremium_install_web`",
        player.display()
    );
    let stage = Stage::start("watch").await;
    let (app, moderator) = (&stage.app, &stage.moderator);
    let m = moderator
        .create_meeting_with(json!({"title": "Stadtrat, 12. Sitzung", "public": true}))
        .await;
    let mid = m.id.clone();
    let anna = m.add_participant("Anna").await;
    anna.set_consent(Consent::STREAMING).await;

    let mut browser = stage.open(&format!("/watch/{mid}"), false).await;
    let b = &mut browser;
    b.wait_for(
        "window.gremiumWatch && gremiumWatch.state === 'waiting'",
        Duration::from_secs(15),
        DESCRIBE,
    )
    .await;
    // hls.js came from our origin; the title came from the status.
    assert_eq!(
        b.eval("typeof Hls + ' ' + Hls.isSupported()").await,
        "function true"
    );
    assert_eq!(
        b.eval("document.querySelector('h1').textContent").await,
        "Stadtrat, 12. Sitzung"
    );
    // Both languages, switched with real buttons.
    for (lang, text) in [
        ("en", "The stream has not started yet."),
        ("de", "Die Übertragung hat noch nicht begonnen."),
    ] {
        b.eval(&format!(
            "document.querySelector('[data-lang={lang}]').click()"
        ))
        .await;
        assert_eq!(
            b.eval("document.getElementById('status').textContent")
                .await,
            text
        );
        assert_eq!(b.eval("document.documentElement.lang").await, lang);
        assert_eq!(
            b.eval(&format!(
                "document.querySelector('[data-lang={lang}]').getAttribute('aria-pressed')"
            ))
            .await,
            "true"
        );
    }
    // Keyboard only: Tab reaches the language buttons, Enter switches, then the video.
    let focused = "(e => e.dataset.lang || e.id || e.tagName)(document.activeElement)";
    b.press("Tab", 9, None).await;
    assert_eq!(b.eval(focused).await, "de");
    b.press("Tab", 9, None).await;
    assert_eq!(b.eval(focused).await, "en");
    b.press("Enter", 13, Some("\r")).await;
    assert_eq!(
        b.eval("document.getElementById('status').textContent")
            .await,
        "The stream has not started yet."
    );
    b.press("Tab", 9, None).await;
    assert_eq!(b.eval(focused).await, "video");

    // A participant with streaming consent publishes; the moderator starts HLS.
    let (mut ws, _) = m.events().await;
    let _publisher = anna.publish_small("ffd700", 120);
    wait_event_for(
        &mut ws,
        Duration::from_secs(20),
        "participant_media_started",
        |_| true,
    )
    .await;
    m.start_stream(json!({"hls": true})).await;
    wait_event_for(
        &mut ws,
        Duration::from_secs(20),
        "stream_state_changed",
        |e| e["state"] == "active",
    )
    .await;

    // Live: hls.js attached; the video plays at a ladder size.
    b.wait_for(
        "gremiumWatch.state === 'live' && gremiumWatch.engine === 'hls.js'",
        Duration::from_secs(15),
        DESCRIBE,
    )
    .await;
    assert_eq!(
        b.eval("document.getElementById('status').textContent")
            .await,
        "Live – the meeting is being streamed."
    );
    b.wait_for(
        "(v => v.readyState >= 2 && v.currentTime > 0 && !v.paused)(document.getElementById('video'))",
        Duration::from_secs(40),
        DESCRIBE,
    )
    .await;
    let t0 = b.eval("document.getElementById('video').currentTime").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let t1 = b.eval("document.getElementById('video').currentTime").await;
    let advanced = t1.as_f64().unwrap() - t0.as_f64().unwrap();
    assert!(
        advanced >= 2.0,
        "currentTime advanced {advanced:.2} s in 4 s of wall time: {}",
        b.eval(DESCRIBE).await
    );
    let size = b
        .eval("(v => [v.videoWidth, v.videoHeight])(document.getElementById('video'))")
        .await;
    let (w, h) = (size[0].as_u64().unwrap(), size[1].as_u64().unwrap());
    assert!(
        Rendition::default_ladder()
            .iter()
            .any(|r| (r.width as u64, r.height as u64) == (w, h)),
        "{w}x{h} is not a ladder size"
    );
    assert_eq!(w * 9, h * 16, "{w}x{h} is not 16:9");
    assert_eq!(
        b.eval("(v => [v.paused, v.error === null, gremiumWatch.error])(document.getElementById('video'))")
            .await,
        json!([false, true, null]),
        "{}",
        b.eval(DESCRIBE).await
    );
    let shot = artifact("watch-live.png");
    b.screenshot(&shot).await;
    b.assert_accessible("watch page, live").await;
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{}",
        png.len()
    );
    // Everything the page loaded came from our origin (or is hls.js's own blob:).
    let foreign = b
        .eval(
            "performance.getEntriesByType('resource').map(e => e.name)\
             .filter(n => !n.startsWith(location.origin + '/') && !n.startsWith('blob:'))",
        )
        .await;
    assert_eq!(foreign, json!([]), "resources from elsewhere");
    // A phone 360 px wide: nothing wider than the screen, the video as wide as it.
    b.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 360, "height": 740, "deviceScaleFactor": 1, "mobile": true}),
    )
    .await;
    b.wait_for(
        "document.documentElement.scrollWidth <= 360 && \
         document.getElementById('video').getBoundingClientRect().width >= 330",
        Duration::from_secs(3),
        "[document.documentElement.scrollWidth, \
          document.getElementById('video').getBoundingClientRect().width]",
    )
    .await;
    b.screenshot(&artifact("watch-live-360.png")).await;
    b.call("Emulation.clearDeviceMetricsOverride", json!({}))
        .await;

    // The fallback without hls.js: the browser's own HLS, where it has one (Debian's
    // Chromium 156 has).
    if b.eval("document.getElementById('video').canPlayType('application/vnd.apple.mpegurl')")
        .await
        != ""
    {
        // Page.navigate answers once the new document is committed, so no evaluation
        // below can land in the old page's dying context.
        let native = app.url(&format!("/watch/{mid}?player=native"));
        b.call("Page.navigate", json!({ "url": native })).await;
        b.wait_for(
            "window.gremiumWatch && gremiumWatch.state === 'live' && gremiumWatch.engine === 'native' \
             && (v => v.readyState >= 2 && v.currentTime > 0 && !v.paused)(document.getElementById('video'))",
            Duration::from_secs(30),
            DESCRIBE,
        )
        .await;
        let t0 = b.eval("document.getElementById('video').currentTime").await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let t1 = b.eval("document.getElementById('video').currentTime").await;
        let advanced = t1.as_f64().unwrap() - t0.as_f64().unwrap();
        assert!(
            advanced >= 1.5,
            "native HLS advanced {advanced:.2} s in 3 s: {}",
            b.eval(DESCRIBE).await
        );
    }

    // Non-public part: the status says so (the slate keeps playing).
    m.set_public(false, "TOP 7").await;
    b.wait_for(
        "gremiumWatch.state === 'not_public' && document.getElementById('status').textContent \
         === 'Non-public part – the stream is paused.'",
        Duration::from_secs(10),
        DESCRIBE,
    )
    .await;
    let t2 = b.eval("document.getElementById('video').currentTime").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t3 = b.eval("document.getElementById('video').currentTime").await;
    assert!(
        t3.as_f64().unwrap() > t2.as_f64().unwrap(),
        "the slate plays: {}",
        b.eval(DESCRIBE).await
    );
    b.eval("document.querySelector('[data-lang=de]').click()")
        .await;
    assert_eq!(
        b.eval("document.getElementById('status').textContent")
            .await,
        "Nicht-öffentlicher Teil – die Übertragung ist unterbrochen."
    );

    // Ended: the player is gone, polling stops.
    let (s, r) = moderator
        .send(Method::POST, &format!("/api/v1/meetings/{mid}/end"), None)
        .await;
    assert!(s == 200 || s == 204, "{s} {r}");
    b.wait_for(
        "gremiumWatch.state === 'ended' && gremiumWatch.engine === 'none' && \
         document.getElementById('status').textContent === 'Die Sitzung ist beendet.'",
        Duration::from_secs(10),
        DESCRIBE,
    )
    .await;
    drop(browser);
}
