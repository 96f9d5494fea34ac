//! A publisher and an ingest endpoint, both on webrtcbin, talking over loopback only:
//! the offer/answer carries 127.0.0.1 candidates and nothing else, the media is
//! depayloaded and decoded on the ingest side, and what arrives is the publisher's
//! colour and tone.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gremium_pipelines::dtls_check::{DtlsCheck, Verdict};
use gremium_pipelines::dtls_fingerprint::{
    pinned_fingerprints, render_fingerprint, CertificateError,
};
use gremium_pipelines::publisher::{build_publisher, PublisherSettings, VideoCodec};
use gremium_pipelines::webrtc::{
    accept_answer, answer_offer, create_offer, decode_incoming, make_webrtcbin, negotiation_needed,
    parse_sdp, IceSettings, MediaKind,
};
use gremium_pipelines::{link_chain, make, Pipeline, PipelineSettings};
use gst::prelude::*;
use gst_video::prelude::*;

fn loopback() -> IceSettings {
    IceSettings {
        local_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        ..Default::default()
    }
}

fn settings(name: &str) -> PipelineSettings {
    PipelineSettings {
        name: name.into(),
        dot_dir: std::env::temp_dir().join("gremium-dot-webrtc"),
    }
}

/// Publisher: solid green video and a 440 Hz tone (Opus).
fn publisher(p: &Pipeline, codec: VideoCodec) -> gst::Element {
    let s = PublisherSettings {
        color: Some(0x00ff00),
        tone_hz: 440.0,
        codec,
        width: 320,
        height: 180,
        fps: 15,
        ice: loopback(),
        ..Default::default()
    };
    build_publisher(p, &s).unwrap()
}

#[derive(Default)]
struct Received {
    video_rgb: Option<(u8, u8, u8)>,
    video_size: Option<(i32, i32)>,
    audio: Vec<i16>,
    audio_rate: i32,
}

/// Ingest: decode everything into appsinks that record what arrives (once `check`,
/// whose fingerprints come from the offer, passed).
fn ingest(p: &Pipeline, got: Arc<Mutex<Received>>, check: DtlsCheck) -> gst::Element {
    let webrtc = make_webrtcbin("ingest", &loopback()).unwrap();
    p.gst().add(&webrtc).unwrap();
    let bin: gst::Bin = p.gst().clone().upcast();
    let bin_weak = bin.downgrade();
    decode_incoming(&webrtc, &bin, check, move |kind, pad| {
        let Some(bin) = bin_weak.upgrade() else {
            return false;
        };
        let got = got.clone();
        let (conv, sink) = match kind {
            MediaKind::Video => {
                let conv = make("videoconvert", None).unwrap();
                let sink = gst_app::AppSink::builder()
                    .caps(
                        &gst::Caps::builder("video/x-raw")
                            .field("format", "RGB")
                            .build(),
                    )
                    .build();
                sink.set_callbacks(
                    gst_app::AppSinkCallbacks::builder()
                        .new_sample(move |s| {
                            let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                            let info =
                                gst_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
                            let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(
                                sample.buffer().unwrap(),
                                &info,
                            )
                            .unwrap();
                            let (w, h) = (info.width() as usize, info.height() as usize);
                            let stride = frame.plane_stride()[0] as usize;
                            let data = frame.plane_data(0).unwrap();
                            let o = (h / 2) * stride + (w / 2) * 3;
                            let mut g = got.lock().unwrap();
                            g.video_rgb = Some((data[o], data[o + 1], data[o + 2]));
                            g.video_size = Some((w as i32, h as i32));
                            Ok(gst::FlowSuccess::Ok)
                        })
                        .build(),
                );
                (conv, sink)
            }
            MediaKind::Audio => {
                let conv = make("audioconvert", None).unwrap();
                let sink = gst_app::AppSink::builder()
                    .caps(
                        &gst::Caps::builder("audio/x-raw")
                            .field("format", "S16LE")
                            .field("channels", 1i32)
                            .build(),
                    )
                    .build();
                sink.set_callbacks(
                    gst_app::AppSinkCallbacks::builder()
                        .new_sample(move |s| {
                            let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                            let rate = sample
                                .caps()
                                .and_then(|c| {
                                    c.structure(0).and_then(|st| st.get::<i32>("rate").ok())
                                })
                                .unwrap_or(0);
                            let map = sample.buffer().unwrap().map_readable().unwrap();
                            let mut g = got.lock().unwrap();
                            g.audio_rate = rate;
                            g.audio.extend(
                                map.as_slice()
                                    .chunks_exact(2)
                                    .map(|b| i16::from_le_bytes([b[0], b[1]])),
                            );
                            Ok(gst::FlowSuccess::Ok)
                        })
                        .build(),
                );
                (conv, sink)
            }
        };
        let sink: gst::Element = sink.upcast();
        bin.add_many([&conv, &sink]).unwrap();
        link_chain(&[&conv, &sink]).unwrap();
        conv.sync_state_with_parent().unwrap();
        sink.sync_state_with_parent().unwrap();
        pad.link(&conv.static_pad("sink").unwrap()).unwrap();
        true
    });
    webrtc
}

fn candidate_addresses(sdp: &str) -> Vec<String> {
    sdp.lines()
        .filter(|l| l.starts_with("a=candidate:"))
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .collect()
}

/// Frequency from zero crossings of the tail of the signal.
fn frequency(samples: &[i16], rate: i32) -> f64 {
    let tail = &samples[samples.len().saturating_sub(rate as usize)..];
    let crossings = tail.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
    crossings as f64 / 2.0 / (tail.len() as f64 / rate as f64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vp8_publisher_reaches_the_ingest_over_loopback_only() {
    publish_and_check(VideoCodec::Vp8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h264_publisher_reaches_the_ingest_over_loopback_only() {
    publish_and_check(VideoCodec::H264).await;
}

async fn publish_and_check(codec: VideoCodec) {
    gremium_pipelines::init().unwrap();
    let got = Arc::new(Mutex::new(Received::default()));
    let server = Pipeline::new(settings("ingest"));
    let check = DtlsCheck::default();
    let server_webrtc = ingest(&server, got.clone(), check.clone());
    server.start().unwrap();
    let client = Pipeline::new(settings("publisher"));
    let client_webrtc = publisher(&client, codec);
    let mut ready = negotiation_needed(&client_webrtc);
    client.start().unwrap();
    tokio::time::timeout(Duration::from_secs(10), ready.wait_for(|r| *r))
        .await
        .unwrap()
        .unwrap();

    let offer = create_offer(&client_webrtc, Duration::from_secs(10))
        .await
        .unwrap();
    let offered = candidate_addresses(&offer);
    assert!(!offered.is_empty(), "offer has candidates:\n{offer}");
    assert!(
        offered.iter().all(|a| a == "127.0.0.1"),
        "publisher gathered only loopback: {offered:?}"
    );
    check.set_pins(pinned_fingerprints(&offer).unwrap());
    let answer = answer_offer(&server_webrtc, &offer, Duration::from_secs(10), true)
        .await
        .unwrap();
    check.watch(&server_webrtc);
    let answered = candidate_addresses(&answer);
    assert!(
        !answered.is_empty() && answered.iter().all(|a| a == "127.0.0.1"),
        "ingest gathered only loopback: {answered:?}"
    );
    assert!(
        answer.contains("a=recvonly"),
        "ingest only receives:\n{answer}"
    );
    accept_answer(&client_webrtc, &answer).await.unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        {
            let g = got.lock().unwrap();
            if g.video_rgb.is_some() && g.audio.len() > 48_000 {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "media did not arrive in 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let g = got.lock().unwrap();
    let (r, gr, b) = g.video_rgb.unwrap();
    assert!(
        r < 60 && gr > 190 && b < 60,
        "the publisher's green arrived decoded, got ({r},{gr},{b})"
    );
    assert_eq!(g.video_size, Some((320, 180)));
    let f = frequency(&g.audio, g.audio_rate);
    assert!(
        (400.0..480.0).contains(&f),
        "the 440 Hz tone arrived decoded, measured {f:.0} Hz"
    );
    drop(g);
    assert_eq!(
        check.verdict(),
        Verdict::Verified,
        "the offer's certificate arrived"
    );
    // Network endpoints are not drained with EOS; dropping sets both pipelines to NULL.
    drop(client);
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_whose_certificate_is_not_the_offers_is_never_decoded() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    gremium_pipelines::init().unwrap();
    let got = Arc::new(Mutex::new(Received::default()));
    let server = Pipeline::new(settings("forged-ingest"));
    let check = DtlsCheck::default();
    let rejections = Arc::new(AtomicUsize::new(0));
    let counter = rejections.clone();
    check.on_reject(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let server_webrtc = ingest(&server, got.clone(), check.clone());
    server.start().unwrap();
    let client = Pipeline::new(settings("forged-publisher"));
    let client_webrtc = publisher(&client, VideoCodec::Vp8);
    let mut ready = negotiation_needed(&client_webrtc);
    client.start().unwrap();
    ready.wait_for(|r| *r).await.unwrap();
    let offer = create_offer(&client_webrtc, Duration::from_secs(10))
        .await
        .unwrap();
    // The offer names someone else's certificate.
    let forged_line = format!("a=fingerprint:sha-256 {}", render_fingerprint(&[0x5a; 32]));
    let forged: String = offer
        .lines()
        .map(|l| match l.starts_with("a=fingerprint:") {
            true => format!("{forged_line}\r\n"),
            false => format!("{l}\r\n"),
        })
        .collect();
    check.set_pins(pinned_fingerprints(&forged).unwrap());
    let answer = answer_offer(&server_webrtc, &forged, Duration::from_secs(10), true)
        .await
        .unwrap();
    // No `watch`: the check before decoding alone must refuse the stream (the
    // end-to-end test in tests/dtls_fingerprint.rs covers the check at DTLS connect).
    accept_answer(&client_webrtc, &answer).await.unwrap();
    let mut verdicts = check.verdicts();
    tokio::time::timeout(
        Duration::from_secs(15),
        verdicts.wait_for(|v| *v != Verdict::Pending),
    )
    .await
    .expect("a verdict once DTLS connected")
    .unwrap();
    assert_eq!(
        check.verdict(),
        Verdict::Rejected(CertificateError::Mismatch)
    );
    // The publisher keeps sending; nothing of it is decoded.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let g = got.lock().unwrap();
    assert!(
        g.video_rgb.is_none() && g.audio.is_empty(),
        "media of the mismatching peer was decoded"
    );
    assert_eq!(rejections.load(Ordering::SeqCst), 1, "reported once");
}

#[test]
fn malformed_sdp_is_refused() {
    gremium_pipelines::init().unwrap();
    for bad in [
        "",
        "hello",
        "v=0\r\n",
        "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n",
    ] {
        assert!(parse_sdp(bad).is_err(), "{bad:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ice_port_range_is_honoured() {
    gremium_pipelines::init().unwrap();
    let ice = IceSettings {
        port_range: Some((41000, 41010)),
        ..loopback()
    };
    let client = Pipeline::new(settings("ports"));
    let mut s = PublisherSettings {
        ice,
        width: 160,
        height: 90,
        fps: 10,
        ..Default::default()
    };
    s.color = Some(0x0000ff);
    let webrtc = build_publisher(&client, &s).unwrap();
    let mut ready = negotiation_needed(&webrtc);
    client.start().unwrap();
    tokio::time::timeout(Duration::from_secs(10), ready.wait_for(|r| *r))
        .await
        .unwrap()
        .unwrap();
    let offer = create_offer(&webrtc, Duration::from_secs(10))
        .await
        .unwrap();
    let udp_ports: Vec<u16> = offer
        .lines()
        .filter(|l| l.starts_with("a=candidate:") && l.contains(" UDP "))
        .filter_map(|l| l.split_whitespace().nth(5).and_then(|p| p.parse().ok()))
        .collect();
    assert!(!udp_ports.is_empty(), "{offer}");
    assert!(
        udp_ports.iter().all(|p| (41000..=41010).contains(p)),
        "UDP candidates inside the port range: {udp_ports:?}"
    );
}

#[test]
fn stun_and_turn_settings_reach_webrtcbin() {
    gremium_pipelines::init().unwrap();
    // Only constructed, never started: nothing is sent to these (TEST-NET) addresses.
    let ice = IceSettings {
        stun_server: Some("stun://192.0.2.1:3478".into()),
        turn_servers: vec!["turn://user:pass@192.0.2.2:3478".into()],
        ..loopback()
    };
    let webrtc = make_webrtcbin("cfg", &ice).unwrap();
    let stun: Option<String> = webrtc.property("stun-server");
    assert_eq!(stun.as_deref(), Some("stun://192.0.2.1:3478"));
    // No UPnP gateway discovery (SSDP multicast would leave loopback).
    let agent: gst::glib::Object = webrtc.property("ice-agent");
    let nice: gst::glib::Object = agent.property("agent");
    assert!(!nice.property::<bool>("upnp"), "libnice UPnP is off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyframe_request_at_the_ingest_reaches_the_publishers_encoder() {
    use gremium_pipelines::webrtc::{is_keyframe_request, request_keyframe};
    use std::sync::atomic::{AtomicUsize, Ordering};
    gremium_pipelines::init().unwrap();
    let server = Pipeline::new(settings("kf-ingest"));
    let webrtc_in = make_webrtcbin("ingest", &loopback()).unwrap();
    server.gst().add(&webrtc_in).unwrap();
    let video_pad: Arc<Mutex<Option<gst::Pad>>> = Arc::default();
    let bin: gst::Bin = server.gst().clone().upcast();
    let (bin_weak, slot) = (bin.downgrade(), video_pad.clone());
    let check = DtlsCheck::default();
    decode_incoming(&webrtc_in, &bin, check.clone(), move |kind, pad| {
        let Some(bin) = bin_weak.upgrade() else {
            return false;
        };
        let sink = make("fakesink", None).unwrap();
        bin.add(&sink).unwrap();
        sink.sync_state_with_parent().unwrap();
        pad.link(&sink.static_pad("sink").unwrap()).unwrap();
        if kind == MediaKind::Video {
            *slot.lock().unwrap() = Some(pad);
        }
        true
    });
    server.start().unwrap();

    let client = Pipeline::new(settings("kf-publisher"));
    let webrtc_out = publisher(&client, VideoCodec::Vp8);
    // Count keyframe requests arriving at the encoder from downstream.
    let encoder = client
        .gst()
        .iterate_recurse()
        .into_iter()
        .flatten()
        .find(|e| e.factory().is_some_and(|f| f.name() == "vp8enc"))
        .unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    encoder.static_pad("src").unwrap().add_probe(
        gst::PadProbeType::EVENT_UPSTREAM,
        move |_, info| {
            if info.event().is_some_and(|e| is_keyframe_request(e)) {
                counter.fetch_add(1, Ordering::SeqCst);
            }
            gst::PadProbeReturn::Ok
        },
    );
    let mut ready = negotiation_needed(&webrtc_out);
    client.start().unwrap();
    ready.wait_for(|r| *r).await.unwrap();
    let offer = create_offer(&webrtc_out, Duration::from_secs(10))
        .await
        .unwrap();
    check.set_pins(pinned_fingerprints(&offer).unwrap());
    let answer = answer_offer(&webrtc_in, &offer, Duration::from_secs(10), false)
        .await
        .unwrap();
    accept_answer(&webrtc_out, &answer).await.unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while video_pad.lock().unwrap().is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "video never decoded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let start-up requests settle, then ask once.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = requests.load(Ordering::SeqCst);
    let pad = video_pad.lock().unwrap().clone().unwrap();
    assert!(request_keyframe(&pad), "the request travelled upstream");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while requests.load(Ordering::SeqCst) == before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no keyframe request reached the publisher's encoder (before: {before})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
