//! Recordings' spool files on this node: which are in use, their post-processing
//! (seal, validate, poster, store), their recovery after a crash and their removal
//! when a recording is deleted.
//!
//! Owns: the use of each spool (written by a running recording, or being finished
//! and post-processed) — one map, so a spool is always in exactly one state while in
//! use — and the post-processing tasks, which run on the plane's runtime and outlive
//! the meeting that recorded. Must not: touch a pipeline (the meeting's actor writes
//! the spool; this takes over once the file is finished).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use gremium_protocol::{CommandOutcome, EventSink, MediaEvent, MediaPlaneError};
use gremium_recorder::finalize::{
    finalize, read_completion, remove_spool, spool_path, DiscardGate, FinalizeError, Origin,
    Progress,
};
use gremium_vault::DataKey;
use gremium_vault::ObjectStore;
use uuid::Uuid;

/// What a spool in use is used for.
enum Use {
    /// A running recording writes it.
    Recording,
    /// Stopped: being finished, then post-processed; once post-processing started,
    /// with the gate that can discard it while it waits for room on the spool disk.
    Finishing(Option<Arc<DiscardGate>>),
}

/// The spools of this node's recordings.
pub(crate) struct Spools {
    uses: Mutex<HashMap<Uuid, Use>>,
    dir: PathBuf,
    store: Arc<dyn ObjectStore>,
    sink: EventSink,
    /// The plane's runtime: post-processing outlives the meeting's actor.
    runtime: tokio::runtime::Handle,
}

impl Spools {
    pub(crate) fn new(
        dir: PathBuf,
        store: Arc<dyn ObjectStore>,
        sink: EventSink,
        runtime: tokio::runtime::Handle,
    ) -> Spools {
        Spools {
            uses: Mutex::new(HashMap::new()),
            dir,
            store,
            sink,
            runtime,
        }
    }

    fn uses(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Use>> {
        self.uses.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A recording starts writing its spool.
    pub(crate) fn recording(&self, recording_id: Uuid) {
        self.uses().insert(recording_id, Use::Recording);
    }

    /// A recording stopped: its spool is being finished.
    pub(crate) fn finishing(&self, recording_id: Uuid) {
        self.uses().insert(recording_id, Use::Finishing(None));
    }

    /// The spool is no longer in use (it stays on disk until deleted).
    pub(crate) fn release(&self, recording_id: Uuid) {
        self.uses().remove(&recording_id);
    }

    /// Is the spool in use: `Some(true)` written by a running recording,
    /// `Some(false)` being finished, `None` not in use.
    pub(crate) fn in_use(&self, recording_id: Uuid) -> Option<bool> {
        self.uses()
            .get(&recording_id)
            .map(|u| matches!(u, Use::Recording))
    }

    /// Post-process a recording's spool in the background (seal, validate, poster,
    /// store: [`finalize`]) and report it finished or failed, a failure's reason
    /// prefixed with `failing`. Until sealing begins (while it waits for room on the
    /// spool disk) a discard drops it; after, a discard is refused until it is done.
    pub(crate) fn finalize(
        self: &Arc<Self>,
        meeting_id: Uuid,
        recording_id: Uuid,
        key: DataKey,
        origin: Origin,
        failing: &'static str,
    ) {
        let spool = spool_path(&self.dir, recording_id);
        let gate = Arc::new(DiscardGate::default());
        self.uses()
            .insert(recording_id, Use::Finishing(Some(gate.clone())));
        let store = self.store.clone();
        let sink = self.sink.clone();
        let progress_sink = sink.clone();
        let progress: Progress = Arc::new(move |t| {
            progress_sink(MediaEvent::RecordingProgress {
                meeting_id,
                recording_id,
                processed_ms: t.as_millis() as u64,
            })
        });
        let spools = self.clone();
        self.runtime.spawn(async move {
            let result = finalize(spool, key, recording_id, store, origin, progress, &gate).await;
            spools.release(recording_id);
            sink(match result {
                Ok(media) => MediaEvent::RecordingFinished {
                    meeting_id,
                    recording_id,
                    media: Some(media),
                },
                Err(FinalizeError::Discarded) => MediaEvent::RecordingFailed {
                    meeting_id,
                    recording_id,
                    reason: "deleted while waiting for room on the spool disk to be finalized"
                        .into(),
                },
                Err(FinalizeError::Failed(reason)) => MediaEvent::RecordingFailed {
                    meeting_id,
                    recording_id,
                    reason: format!("{failing}: {reason}"),
                },
            });
        });
    }

    /// A recording a stopped process left unfinished: finalize what its spool holds,
    /// or report it failed when nothing was written.
    pub(crate) fn recover(self: &Arc<Self>, meeting_id: Uuid, recording_id: Uuid, key: DataKey) {
        {
            let mut uses = self.uses();
            if uses.contains_key(&recording_id) {
                // Already running, finishing or being recovered here.
                return;
            }
            uses.insert(recording_id, Use::Finishing(None));
        }
        let spool = spool_path(&self.dir, recording_id);
        if !spool.exists() {
            self.release(recording_id);
            (self.sink)(MediaEvent::RecordingFailed {
                meeting_id,
                recording_id,
                reason: "the process stopped before anything was written".into(),
            });
            return;
        }
        // A completion mark: it had stopped normally and was being post-processed or
        // uploaded; otherwise the process died while recording.
        let origin = match read_completion(&spool) {
            Some(c) => Origin::Stopped(c),
            None => Origin::Recovered,
        };
        tracing::info!(%recording_id, "resuming a recording left by a stopped process");
        self.finalize(
            meeting_id,
            recording_id,
            key,
            origin,
            "recovery after a crash failed",
        );
    }

    /// Remove the spool a deleted recording left (a failed one keeps it until then).
    /// A recording still running, or stopped and being finished or post-processed,
    /// is using its spool: refused.
    pub(crate) fn discard(&self, recording_id: Uuid) -> Result<CommandOutcome, MediaPlaneError> {
        match self.uses().get(&recording_id) {
            Some(Use::Recording) => {
                return Err(MediaPlaneError::Rejected(
                    "the recording is running: stop it first".into(),
                ))
            }
            // Stopped and waiting for room to be finalized: discarded, its
            // finalization leaves the spool to us. Not while its file is still being
            // finished, nor once sealing has begun.
            Some(Use::Finishing(Some(gate))) if gate.discard() => {}
            Some(Use::Finishing(_)) => {
                return Err(MediaPlaneError::Rejected(
                    "the recording is being finalized: delete it once it has finished".into(),
                ))
            }
            None => {}
        }
        let spool = spool_path(&self.dir, recording_id);
        remove_spool(&spool)
            .map_err(|e| MediaPlaneError::Failed(format!("removing the spool: {e}")))?;
        Ok(CommandOutcome::Accepted)
    }
}
