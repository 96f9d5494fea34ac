//! A meeting's programs (one per output audience), the consumers attached to them,
//! and the encoders those consumers share.
//!
//! Owns: building a program on first use and feeding it every publisher, linking and
//! unlinking consumers, the program encoders and the livestream feeds' switching
//! between the recording's encode and their own, the indicator. Must not: decide
//! who is admitted to a program or whether the feeds may share (the policy does:
//! [`MeetingPolicy::admits`](crate::policy::MeetingPolicy::admits),
//! [`feed_source`]); it applies those decisions.

use gremium_compositor::{Kind, LayoutChoice, Program};
use gremium_pipelines::encode::H264;
use gremium_pipelines::{stop_and_remove, PipelineError};
use gremium_protocol::{Audience, LayoutSpec, MediaPlaneError};
use gst::prelude::*;
use uuid::Uuid;

use super::publish::Publisher;
use super::{Consumer, Meeting};
use crate::encoders::{Encoder, Feed};
use crate::policy::{feed_source, indicator, FeedSource};

/// The encoded video or audio of a consumer.
pub(super) enum Encoded {
    /// A branch of its audience's encoder (recordings).
    Branch(gst::Pad),
    /// A feed that may switch to the recording's encoder (livestreams).
    Feed(Feed),
}

fn audience_label(audience: Audience) -> &'static str {
    match audience {
        Audience::Recording => "recording",
        Audience::Streaming => "streaming",
    }
}

fn kind_label(kind: Kind) -> &'static str {
    match kind {
        Kind::Video => "video",
        Kind::Audio => "audio",
    }
}

impl Meeting {
    /// The program of an audience, built (and fed with every publisher) on first use.
    pub(super) fn ensure_program(&mut self, audience: Audience) -> Result<(), MediaPlaneError> {
        if self.programs.contains_key(&audience) {
            return Ok(());
        }
        let fail = |e: String| MediaPlaneError::Failed(e);
        let mut settings = self.settings.program.clone();
        settings.name = format!("program-{}", audience_label(audience));
        settings.indicator = match audience {
            Audience::Recording => Some("● REC".into()),
            Audience::Streaming => Some("● LIVE".into()),
        };
        let mut program = Program::new(settings).map_err(|e| fail(e.to_string()))?;
        program.set_layout(layout_choice(&self.policy.layout()));
        // The slate's card is built when it goes up, and taken out when it comes down
        // (not kept running hidden).
        if self.policy.slate(audience) {
            program.set_slate(true).map_err(|e| fail(e.to_string()))?;
        }
        self.pipeline
            .gst()
            .add(program.bin())
            .map_err(|e| fail(e.to_string()))?;
        if let Err(e) = program.bin().sync_state_with_parent() {
            stop_and_remove(self.pipeline.gst(), program.bin());
            return Err(fail(e.to_string()));
        }
        for (participant_id, name) in self.policy.roster() {
            program.add_participant(
                *participant_id,
                name,
                self.policy.gate(*participant_id, audience),
            );
        }
        if let Some(speaker) = self.watch.current_speaker() {
            program.set_active_speaker(Some(speaker));
        }
        for (session_id, p) in self.publishers.iter_mut() {
            let tees = p.tees.lock().unwrap_or_else(|e| e.into_inner()).clone();
            for (kind, tee) in tees {
                if let Err(e) = link_publisher(&mut program, audience, p, kind, &tee) {
                    tracing::warn!(error = %e, "participant not connected to the program");
                }
            }
            program.set_camera(p.participant_id, self.watch.camera_on(*session_id));
            program.set_screen_share(p.participant_id, p.screen_share);
        }
        self.programs.insert(audience, program);
        Ok(())
    }

    /// Decoded media of a publisher appeared: feed it to every program.
    pub(super) fn connect_to_programs(&mut self, session_id: Uuid, kind: Kind) {
        let Some(p) = self.publishers.get_mut(&session_id) else {
            // Still negotiating: linked once answered.
            return;
        };
        let Some(tee) = p
            .tees
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&kind)
            .cloned()
        else {
            return;
        };
        for (audience, program) in self.programs.iter_mut() {
            if let Err(e) = link_publisher(program, *audience, p, kind, &tee) {
                tracing::warn!(error = %e, "participant not connected to the program");
            }
        }
    }

    /// Attach a consumer to the program of `audience`: `consumer` is a bin with ghost
    /// sink pads named `video` and/or `audio`, which get the program's raw I420 video
    /// and S16LE 48 kHz stereo audio; a `video_h264` pad gets the program's video
    /// encoded with `h264` (the audience's encoder, built on first use; for the
    /// streaming audience through a [`Feed`] that takes the recording's encode while
    /// the two programs are the same), an `audio_aac` pad its AAC.
    pub(super) fn attach_consumer(
        &mut self,
        audience: Audience,
        consumer: gst::Bin,
        h264: Option<H264>,
    ) -> Result<Uuid, MediaPlaneError> {
        let failed = |e: String| MediaPlaneError::Failed(e);
        self.ensure_program(audience)?;
        self.pipeline
            .gst()
            .add(&consumer)
            .map_err(|e| failed(e.to_string()))?;
        let program = &self.programs[&audience];
        // Running before it is linked: a push into a pad that is not yet active
        // returns FLUSHING, which would stop the program for everyone.
        let linked = consumer
            .sync_state_with_parent()
            .map_err(|e| failed(e.to_string()))
            .and_then(|_| {
                let mut outputs = Vec::new();
                for (name, kind) in [("video", Kind::Video), ("audio", Kind::Audio)] {
                    let Some(sink) = consumer.static_pad(name) else {
                        continue;
                    };
                    let out = program
                        .request_output(kind)
                        .map_err(|e| failed(e.to_string()))?;
                    outputs.push(out.clone());
                    if let Err(e) = out.link(&sink) {
                        for o in &outputs {
                            program.release_output(o);
                        }
                        return Err(failed(format!("{e:?}")));
                    }
                }
                Ok(outputs)
            });
        let outputs = match linked {
            Ok(outputs) => outputs,
            Err(e) => {
                self.remove_bin(consumer);
                return Err(e);
            }
        };
        if consumer.static_pad("video_h264").is_some() && h264.is_none() {
            for o in &outputs {
                program.release_output(o);
            }
            self.remove_bin(consumer);
            return Err(MediaPlaneError::Failed(
                "a consumer with video_h264 needs encode settings".into(),
            ));
        }
        let name = consumer.name();
        let mut encoded = Vec::new();
        for (pad, kind) in [("video_h264", Kind::Video), ("audio_aac", Kind::Audio)] {
            let Some(sink) = consumer.static_pad(pad) else {
                continue;
            };
            let settings = h264.filter(|_| kind == Kind::Video);
            match self.link_encoded(audience, kind, settings, &sink, &name) {
                Ok(e) => encoded.push((kind, e)),
                Err(e) => {
                    if let Some(program) = self.programs.get(&audience) {
                        for o in &outputs {
                            program.release_output(o);
                        }
                    }
                    self.release_encoded(audience, std::mem::take(&mut encoded));
                    self.remove_bin(consumer);
                    self.prune_encoders();
                    return Err(failed(e.to_string()));
                }
            }
        }
        let id = Uuid::new_v4();
        self.consumers.insert(
            id,
            Consumer {
                audience,
                bin: consumer,
                outputs,
                encoded,
            },
        );
        self.apply_sharing();
        Ok(id)
    }

    /// Cut a consumer off its program and give its encodes back; its bin, still in
    /// the pipeline, is returned to be finished and removed by the caller.
    pub(super) fn cut_off(&mut self, consumer_id: Uuid) -> Option<gst::Bin> {
        let c = self.consumers.remove(&consumer_id)?;
        if let Some(program) = self.programs.get(&c.audience) {
            for out in &c.outputs {
                program.release_output(out);
            }
        }
        self.release_encoded(c.audience, c.encoded);
        self.apply_sharing();
        self.prune_encoders();
        Some(c.bin)
    }

    /// Cut a consumer off and remove its bin. False: no such consumer.
    pub(super) fn detach_consumer(&mut self, consumer_id: Uuid) -> bool {
        match self.cut_off(consumer_id) {
            Some(bin) => {
                self.remove_bin(bin);
                true
            }
            None => false,
        }
    }

    /// Link a consumer's `video_h264` (with its `h264` settings) or `audio_aac`
    /// (`h264` is `None`) to its audience's encode of that kind (built on first use).
    fn link_encoded(
        &mut self,
        audience: Audience,
        kind: Kind,
        h264: Option<H264>,
        sink: &gst::Pad,
        name: &str,
    ) -> Result<Encoded, PipelineError> {
        let kind_label = kind_label(kind);
        if !self.encoders.contains_key(&(audience, kind)) {
            let program = self
                .programs
                .get(&audience)
                .ok_or_else(|| PipelineError::Link("no program".into()))?;
            let label = audience_label(audience);
            let mut encoder = match h264 {
                Some(h264) => Encoder::new(&format!("encode-{label}"), h264)?,
                None => Encoder::new_aac(&format!("encode-{kind_label}-{label}"))?,
            };
            let pipeline = self.pipeline.gst();
            pipeline
                .add(&encoder.bin)
                .map_err(|e| PipelineError::Link(e.to_string()))?;
            let input = encoder
                .bin
                .sync_state_with_parent()
                .map_err(|e| PipelineError::StateChange(e.to_string()))
                .and_then(|_| program.request_output(kind));
            let linked = input.and_then(|out| {
                let sink = encoder
                    .bin
                    .static_pad(kind_label)
                    .ok_or_else(|| PipelineError::Link("encoder has no input pad".into()))?;
                match out.link(&sink) {
                    Ok(_) => Ok(out),
                    Err(e) => {
                        program.release_output(&out);
                        Err(PipelineError::Link(format!("program ! encoder: {e:?}")))
                    }
                }
            });
            match linked {
                Ok(out) => encoder.input = Some(out),
                Err(e) => {
                    stop_and_remove(pipeline, &encoder.bin);
                    return Err(e);
                }
            }
            self.encoders.insert((audience, kind), encoder);
        }
        let encoder = &self.encoders[&(audience, kind)];
        if encoder.settings != h264 {
            return Err(PipelineError::Link(format!(
                "the {audience:?} program is encoded with {:?}, not {h264:?}",
                encoder.settings
            )));
        }
        let link_err =
            |e: gst::PadLinkError| PipelineError::Link(format!("encoded {kind_label}: {e:?}"));
        match audience {
            Audience::Recording => {
                let branch = encoder.branch()?;
                if let Err(e) = branch.link(sink) {
                    encoder.release_branch(&branch);
                    return Err(link_err(e));
                }
                encoder.request_keyframe();
                Ok(Encoded::Branch(branch))
            }
            Audience::Streaming => {
                let feed = Feed::new(
                    self.pipeline.gst(),
                    &format!("feed-{kind_label}-{name}"),
                    encoder,
                    sink,
                )?;
                Ok(Encoded::Feed(feed))
            }
        }
    }

    /// Give a detached consumer's encoded video and audio back.
    fn release_encoded(&mut self, audience: Audience, encoded: Vec<(Kind, Encoded)>) {
        for (kind, e) in encoded {
            match e {
                Encoded::Branch(branch) => {
                    if let Some(e) = self.encoders.get(&(audience, kind)) {
                        e.release_branch(&branch);
                    }
                }
                Encoded::Feed(feed) => {
                    if let Some(own) = self.encoders.get(&(Audience::Streaming, kind)) {
                        feed.remove(self.pipeline.gst(), own);
                    }
                }
            }
        }
    }

    /// Remove encoders nobody takes from any more.
    fn prune_encoders(&mut self) {
        let used = |m: &Meeting, audience: Audience, kind: Kind| {
            m.consumers.values().any(|c| {
                c.encoded.iter().any(|(k, e)| {
                    *k == kind
                        && match e {
                            Encoded::Branch(_) => audience == Audience::Recording,
                            Encoded::Feed(_) => audience == Audience::Streaming,
                        }
                })
            })
        };
        let keys: Vec<(Audience, Kind)> = self.encoders.keys().copied().collect();
        for (audience, kind) in keys {
            if used(self, audience, kind) {
                continue;
            }
            let Some(encoder) = self.encoders.remove(&(audience, kind)) else {
                continue;
            };
            if let (Some(program), Some(input)) = (self.programs.get(&audience), &encoder.input) {
                program.release_output(input);
            }
            stop_and_remove(self.pipeline.gst(), &encoder.bin);
        }
    }

    /// Point every livestream feed (video and audio) where the policy says: the
    /// recording's encode while the programs are the same, its own the moment they
    /// differ.
    pub(super) fn apply_sharing(&mut self) {
        let matching = self.policy.programs_match();
        for kind in [Kind::Video, Kind::Audio] {
            let recording = self.consumers.values().any(|c| {
                c.encoded
                    .iter()
                    .any(|(k, e)| *k == kind && matches!(e, Encoded::Branch(_)))
            });
            let Some(own) = self.encoders.get(&(Audience::Streaming, kind)) else {
                continue;
            };
            let shared = self.encoders.get(&(Audience::Recording, kind));
            let same_settings = shared.is_some_and(|rec| rec.settings == own.settings);
            let source = feed_source(matching, recording, shared.is_some(), same_settings);
            for c in self.consumers.values_mut() {
                for (k, e) in &mut c.encoded {
                    let Encoded::Feed(feed) = e else {
                        continue;
                    };
                    if *k != kind {
                        continue;
                    }
                    match (source, shared) {
                        (FeedSource::Shared, Some(rec)) => feed.share(rec),
                        (FeedSource::OwnDroppingShared, _) => feed.drop_shared(own),
                        _ => feed.unshare(own),
                    }
                }
            }
        }
    }

    /// The indicator of every program: what runs, the same text on all of them (so
    /// programs that could share an encode look the same).
    pub(super) fn update_indicators(&self) {
        let recording = !self.recordings.is_empty();
        let streaming = self.streams.values().any(|s| s.stopping.is_empty());
        let shown = indicator(recording, streaming);
        for program in self.programs.values() {
            if let Some(text) = shown {
                program.set_indicator_text(text);
            }
            program.set_indicator(shown.is_some());
        }
    }
}

/// The compositor's view of a layout spec.
pub(super) fn layout_choice(spec: &LayoutSpec) -> LayoutChoice {
    use gremium_compositor::LayoutKind as K;
    use gremium_protocol::LayoutKind as P;
    LayoutChoice {
        kind: match spec.kind {
            P::Grid => K::Grid,
            P::Speaker => K::Speaker,
            P::ScreenShare => K::ScreenShare,
            P::Podium => K::Podium,
        },
        pinned: spec.pinned,
        podium: spec.podium.clone(),
    }
}

/// Feed one of a publisher's tees to a program (once per audience and kind).
fn link_publisher(
    program: &mut Program,
    audience: Audience,
    p: &mut Publisher,
    kind: Kind,
    tee: &gst::Element,
) -> Result<(), PipelineError> {
    if p.links.iter().any(|(a, k, _)| *a == audience && *k == kind) {
        return Ok(());
    }
    if !program.has_participant(p.participant_id) {
        return Ok(());
    }
    let tee_pad = tee
        .request_pad_simple("src_%u")
        .ok_or_else(|| PipelineError::Link("tee".into()))?;
    let name = format!("{}-{}", kind_label(kind), audience_label(audience));
    let ghost = gst::GhostPad::builder_with_target(&tee_pad)
        .map_err(|e| PipelineError::Link(e.to_string()))?
        .name(name)
        .build();
    ghost
        .set_active(true)
        .map_err(|e| PipelineError::StateChange(e.to_string()))?;
    p.bin
        .add_pad(&ghost)
        .map_err(|e| PipelineError::Link(e.to_string()))?;
    if let Err(e) = program.connect(p.participant_id, kind, ghost.upcast_ref()) {
        let _ = p.bin.remove_pad(&ghost);
        tee.release_request_pad(&tee_pad);
        return Err(e);
    }
    p.links.push((audience, kind, ghost));
    Ok(())
}
