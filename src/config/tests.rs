//! Unit tests of the configuration: every section through [`super::validate`], as the
//! binary sees it (errors name the key; the example file validates).

use super::*;

fn check(text: &str) -> anyhow::Result<Config> {
    validate(FileConfig::parse(text)?, &Overrides::default())
}

#[test]
fn zero_configuration_runs_on_embedded_defaults() {
    let c = check("").unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    assert!(c.database_url.starts_with("sqlite://data/gremium.db"));
    assert!(c.auth.accept_local_staff);
    assert!(c.auth.oidc.is_none());
    assert_eq!(c.storage.spool_min_free, 256 * 1024 * 1024);
    assert_eq!(
        check("[storage]\nspool_min_free_mb = 0")
            .unwrap()
            .storage
            .spool_min_free,
        0
    );
    let player = c.api.player_js.expect("a player path by default");
    assert!(player.is_absolute(), "{}", player.display());
    assert!(player.ends_with("web/node_modules/hls.js/dist/hls.min.js"));
}

#[test]
fn player_js_may_be_switched_off() {
    assert_eq!(check("[web]\nplayer_js = ''").unwrap().api.player_js, None);
    assert_eq!(
        check("[web]\nplayer_js = '/srv/hls.min.js'")
            .unwrap()
            .api
            .player_js,
        Some(PathBuf::from("/srv/hls.min.js"))
    );
}

#[test]
fn errors_name_the_bad_key() {
    let cases = [
        ("listen = 'nonsense'", "listen"),
        ("bogus = 1", "bogus"),
        ("[database]\nurl = 'mysql://x'", "database.url"),
        ("[limits]\nmax_body_bytes = 'big'", "max_body_bytes"),
        ("[limits]\nmax_body_bytes = 10", "limits.max_body_bytes"),
        ("[storage]\nkind = 'ftp'", "storage.kind"),
        ("[storage]\nmaster_key = 'abc'", "storage.master_key"),
        ("[storage]\nspool_min_free_mb = 17592186044416", "storage.spool_min_free_mb"),
        ("[retention]\nsweep_interval_secs = 0", "retention.sweep_interval_secs"),
        ("[storage]\nkind = 's3'", "storage.s3"),
        ("[ice]\nudp_port_min = 20000\nudp_port_max = 10000", "ice.udp_port_min"),
        ("[ice]\nnat_1to1_ip = 'example'", "ice.nat_1to1_ip"),
        ("[cluster]\nnats_url = 'http://x'", "cluster.nats_url"),
        ("[cluster]\nnode_id = 'a b'", "cluster.node_id"),
        ("[cluster]\nname = 'a.b'", "cluster.name"),
        ("[cluster]\ncapacity = 0", "cluster.capacity"),
        ("[cluster]\ncommand_timeout_secs = 0", "cluster.command_timeout_secs"),
        ("[ice]\nstun_servers = ['http://x']", "ice.stun_servers[0]"),
        ("[retention]\ndefault_days = 10\nmax_days = 5", "retention.default_days"),
        ("[auth.oidc]\nissuer = 'i'\naudience = 'a'\njwks_url = 'ftp://x'", "auth.oidc.jwks_url"),
        ("[auth.oidc]\nissuer = 'i'\naudience = 'a'\njwks_url = 'https://x'\nalgorithms = ['HS256']", "auth.oidc.algorithms[0]"),
        ("[auth.oidc]\nissuer = 'i'\naudience = 'a'\njwks_url = 'https://x'\nrole_map = { g = 'boss' }", "auth.oidc.role_map.g"),
        ("[auth.oidc]\nissuer = 'https://i'\naudience = 'a'\njwks_url = 'https://x'\nscopes = 'openid'", "auth.oidc.scopes"),
        ("[auth.oidc]\nissuer = 'https://i'\naudience = 'a'\njwks_url = 'https://x'\nclient_id = ''", "auth.oidc.client_id"),
        ("[auth.oidc]\nissuer = 'https://i'\naudience = 'a'\njwks_url = 'https://x'\nclient_id = 'g'\nscopes = 'profile'", "auth.oidc.scopes"),
        ("[auth.oidc]\nissuer = 'https://i'\naudience = 'a'\njwks_url = 'https://x'\nclient_id = 'g'\ntoken_endpoint = '/token'", "auth.oidc.token_endpoint"),
        ("[auth.oidc]\nissuer = 'https://i'\naudience = 'a'\njwks_url = 'https://x'\nclient_id = 'g'\nresource = 'gremium'", "auth.oidc.resource"),
        ("[auth.oidc]\nissuer = 'council'\naudience = 'a'\njwks_url = 'https://x'\nclient_id = 'g'", "auth.oidc.issuer"),
        ("[log]\nformat = 'xml'", "log.format"),
        ("[connections]\nheader_read_timeout_secs = 0", "connections.header_read_timeout_secs"),
        ("[connections]\nidle_timeout_secs = 0", "connections.idle_timeout_secs"),
        ("[connections]\nmax_connections = 1", "connections.max_connections"),
        ("[connections]\nmax_connections = 100\nmax_connections_per_client = 101", "connections.max_connections_per_client"),
        ("[connections]\ntrusted_proxies = ['proxy.local']", "connections.trusted_proxies[0]"),
        ("[connections]\nshutdown_grace_secs = 301", "connections.shutdown_grace_secs"),
        ("[ingest]\nmedia_timeout_secs = 0", "ingest.media_timeout_secs"),
        ("[compositor]\nwidth = 1281", "compositor.width"),
        ("[ingest]\njitter_buffer_ms = 5", "ingest.jitter_buffer_ms"),
        ("[compositor]\nfps = 0", "compositor.fps"),
        ("[streaming]\nsegment_secs = 0", "streaming.segment_secs"),
        ("[streaming]\nnon_public_recording = 'pause'", "streaming.non_public_recording"),
        ("[compositor]\nnon_consenting = 'blur'", "compositor.non_consenting"),
        ("[pages]\ncontroller = ' '", "pages.controller"),
        ("[pages]\npurpose_recording = { de = 'x', en = '' }", "pages.purpose_recording.en"),
        ("[pages]\npurpose_streaming = { de = 'x' }", "en"),
        ("[recording]\nbitrate = 2500", "bitrate"),
        ("[recording]\nvideo_kbps = 99", "recording.video_kbps"),
        ("[recording]\nvideo_kbps = 50001", "recording.video_kbps"),
        ("[recording]\nvideo_kbps = -1", "video_kbps"),
        ("[recording]\nkeyframe_interval_ms = 33", "recording.keyframe_interval_ms"),
        ("[recording]\nkeyframe_interval_ms = 10001", "recording.keyframe_interval_ms"),
        ("[compositor]\nfps = 10\n[recording]\nkeyframe_interval_ms = 99", "recording.keyframe_interval_ms"),
        ("[recording]\nfragment_ms = 99", "recording.fragment_ms"),
        ("[recording]\nfragment_ms = 10001", "recording.fragment_ms"),
    ];
    for (text, key) in cases {
        let err = format!("{:#}", check(text).expect_err(text));
        assert!(err.contains(key), "{text:?} → {err}");
    }
}

#[test]
fn oidc_sign_in_is_off_without_a_client_id_and_defaults_its_scopes() {
    let base = "[auth.oidc]\nissuer = 'https://id.example'\naudience = 'gremium'\njwks_url = 'https://id.example/jwks'";
    assert_eq!(check(base).unwrap().auth.oidc.unwrap().sign_in, None);
    let c = check(&format!("{base}\nclient_id = 'gremium-pages'")).unwrap();
    let s = c.auth.oidc.unwrap().sign_in.unwrap();
    assert_eq!(s.client_id, "gremium-pages");
    assert_eq!(s.scopes, "openid profile");
    assert_eq!(
        (s.authorization_endpoint, s.token_endpoint, s.resource),
        (None, None, None)
    );
    let c = check(&format!(
        "{base}\nclient_id = 'g'\nscopes = ' openid  gremium '\nresource = 'urn:gremium'\ntoken_endpoint = 'https://id.example/t'"
    ))
    .unwrap();
    let s = c.auth.oidc.unwrap().sign_in.unwrap();
    assert_eq!(s.scopes, "openid gremium");
    assert_eq!(s.resource.as_deref(), Some("urn:gremium"));
    assert_eq!(s.token_endpoint.as_deref(), Some("https://id.example/t"));
}

#[test]
fn oidc_disables_local_staff_tokens_by_default() {
    let c = check("[auth.oidc]\nissuer = 'https://id.example'\naudience = 'gremium'\njwks_url = 'https://id.example/jwks'").unwrap();
    assert!(!c.auth.accept_local_staff);
    assert_eq!(c.auth.oidc.unwrap().role_map.len(), 4);
}

#[test]
fn the_example_config_documents_real_keys() {
    // Uncomment every `# key = value` and `# [section]` line: the result must validate.
    let text: String = include_str!("../../gremium.example.toml")
        .lines()
        .map(|l| {
            let rest = l.strip_prefix("# ").unwrap_or(l);
            let is_setting = rest.starts_with('[')
                || rest.split_once(" = ").is_some_and(|(k, _)| {
                    k.chars()
                        .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
                });
            if is_setting {
                rest.to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let c = check(&text).unwrap_or_else(|e| panic!("{e:#}\n{text}"));
    assert_eq!(c.auth.oidc.as_ref().map(|o| o.role_map.len()), Some(4));
    assert_eq!(
        c.auth
            .oidc
            .as_ref()
            .and_then(|o| o.sign_in.as_ref())
            .map(|s| s.client_id.as_str()),
        Some("gremium-pages")
    );
    assert_eq!(c.api.max_body_bytes, 65536);
    assert_eq!(
        c.connections,
        crate::admission::ConnectionLimits {
            trusted_proxies: vec![std::net::IpAddr::from([127, 0, 0, 1])],
            ..Default::default()
        }
    );
    assert_eq!(c.storage.spool_min_free, 256 * 1024 * 1024);
    assert!(c
        .api
        .player_js
        .is_some_and(|p| p.ends_with("web/node_modules/hls.js/dist/hls.min.js")));
    assert_eq!(c.ice.port_range, Some((40000, 40999)));
    assert_eq!(
        c.ice.stun_server.as_deref(),
        Some("stun://stun.example.org:3478")
    );
    assert_eq!(
        c.ice.turn_servers,
        ["turn://user:pass@turn.example.org:3478"]
    );
    assert_eq!(
        c.ice.local_addresses,
        [std::net::IpAddr::from([127, 0, 0, 1])]
    );
    assert!(c
        .api
        .consent_texts
        .controller
        .starts_with("Stadt Musterstadt"));
    assert!(c.api.consent_texts.purpose_recording.en.contains("minutes"));
    assert_eq!(
        c.recording,
        gremium_mediaplane::RecordingEncode {
            video_kbps: Some(2500),
            keyframe_interval: Some(std::time::Duration::from_secs(1)),
            fragment: std::time::Duration::from_millis(400),
        }
    );
}

#[test]
fn consent_texts_have_bilingual_defaults_and_may_be_configured() {
    let c = check("").unwrap();
    assert_eq!(
        c.api.consent_texts,
        gremium_signaling::ConsentTexts::default()
    );
    let c = check(
        "[pages]\ncontroller = 'Stadt X, Markt 1'\n\
         purpose_streaming = { de = ' Öffentlichkeit ', en = 'Publicity' }",
    )
    .unwrap();
    let t = c.api.consent_texts;
    assert_eq!(t.controller, "Stadt X, Markt 1");
    assert_eq!(t.purpose_streaming.de, "Öffentlichkeit");
    assert_eq!(t.purpose_streaming.en, "Publicity");
    assert_eq!(
        t.purpose_recording,
        gremium_signaling::ConsentTexts::default().purpose_recording
    );
}

#[test]
fn overrides_win() {
    let o = Overrides {
        listen: Some("127.0.0.1:9999".into()),
        data_dir: Some("/tmp/x".into()),
        ..Default::default()
    };
    let c = validate(FileConfig::parse("listen = '127.0.0.1:1'").unwrap(), &o).unwrap();
    assert_eq!(c.listen.port(), 9999);
    assert!(c.database_url.contains("/tmp/x/gremium.db"));
}

#[test]
fn recording_encode_defaults_to_the_media_planes_and_takes_the_bounds() {
    use gremium_mediaplane::RecordingEncode;
    use std::time::Duration;
    assert_eq!(check("").unwrap().recording, RecordingEncode::default());
    let c =
        check("[recording]\nvideo_kbps = 3000\nkeyframe_interval_ms = 1500\nfragment_ms = 1000")
            .unwrap();
    assert_eq!(
        c.recording,
        RecordingEncode {
            video_kbps: Some(3000),
            keyframe_interval: Some(Duration::from_millis(1500)),
            fragment: Duration::from_millis(1000),
        }
    );
    // Only what is set changes; the rest keeps the media plane's default.
    let c = check("[recording]\nfragment_ms = 100").unwrap();
    assert_eq!(
        c.recording,
        RecordingEncode {
            fragment: Duration::from_millis(100),
            ..RecordingEncode::default()
        }
    );
    for (text, kbps, keyframe_ms, fragment_ms) in [
        ("video_kbps = 100", Some(100), None, 400),
        ("video_kbps = 50000", Some(50000), None, 400),
        ("fragment_ms = 10000", None, None, 10000),
        ("keyframe_interval_ms = 10000", None, Some(10000), 400),
        // One frame at 30 fps is 33.3 ms: 34 ms is the shortest whole-ms interval.
        ("keyframe_interval_ms = 34", None, Some(34), 400),
        // Not a multiple of a frame: the encoder rounds, the config does not refuse.
        ("keyframe_interval_ms = 1001", None, Some(1001), 400),
    ] {
        let r = check(&format!("[recording]\n{text}"))
            .unwrap_or_else(|e| panic!("{text}: {e:#}"))
            .recording;
        assert_eq!(
            (
                r.video_kbps,
                r.keyframe_interval.map(|d| d.as_millis() as u64),
                r.fragment.as_millis() as u64
            ),
            (kbps, keyframe_ms, fragment_ms),
            "{text}"
        );
    }
    // The shortest interval follows the program's frame rate.
    let c = check("[compositor]\nfps = 60\n[recording]\nkeyframe_interval_ms = 17").unwrap();
    assert_eq!(
        c.recording.keyframe_interval,
        Some(Duration::from_millis(17))
    );
    let err = format!(
        "{:#}",
        check("[compositor]\nfps = 60\n[recording]\nkeyframe_interval_ms = 16").unwrap_err()
    );
    assert!(
        err.contains("between 17 (one frame at compositor.fps = 60)"),
        "{err}"
    );
}
