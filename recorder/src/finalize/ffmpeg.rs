//! Running ffmpeg (through ffmpeg-sidecar) on a decrypted spool.
//!
//! Owns: starting ffmpeg with the spool's plaintext on its stdin (fed from a thread,
//! optionally sealing the same pieces on the way), handing its events to the caller,
//! and turning its failures into [`RecorderError`]s that say which run failed and
//! what ffmpeg logged.
//!
//! Must not: interpret the events (validation and the poster do), or write plaintext
//! anywhere but the pipe to ffmpeg.

use std::io::Write;
use std::path::Path;

use ffmpeg_sidecar::command::FfmpegCommand;
use ffmpeg_sidecar::event::{FfmpegEvent, LogLevel};
use gremium_vault::crypto::{read_spool, DataKey, Sealed};

use super::seal::SealFile;
use crate::{FfmpegStep, RecorderError};

/// Run ffmpeg with the decrypted spool on stdin; hand each event to `on_event`.
/// Reading the spool stops when ffmpeg stops reading.
pub(super) fn run_ffmpeg(
    step: FfmpegStep,
    spool: &Path,
    key: &DataKey,
    context: &[u8],
    args: &[&str],
    on_event: impl FnMut(FfmpegEvent),
) -> Result<(), RecorderError> {
    run(step, spool, key, context, args, None, on_event).map(|_| ())
}

/// [`run_ffmpeg`], each decrypted piece also sealed into `seal` (on the feeder
/// thread): the whole spool is read even if ffmpeg stops reading early, and the
/// sealed result is returned.
pub(super) fn run_ffmpeg_sealing(
    step: FfmpegStep,
    spool: &Path,
    key: &DataKey,
    context: &[u8],
    args: &[&str],
    seal: SealFile,
    on_event: impl FnMut(FfmpegEvent),
) -> Result<Sealed, RecorderError> {
    let sealed = run(step, spool, key, context, args, Some(seal), on_event)?;
    // The feeder returns a result for every writer it is given.
    Ok(sealed.expect("a sealing run yields the sealed result"))
}

fn run(
    step: FfmpegStep,
    spool: &Path,
    key: &DataKey,
    context: &[u8],
    args: &[&str],
    seal: Option<SealFile>,
    mut on_event: impl FnMut(FfmpegEvent),
) -> Result<Option<Sealed>, RecorderError> {
    let mut child = FfmpegCommand::new()
        .hide_banner()
        .input("pipe:0")
        .args(args)
        .spawn()
        .map_err(|source| RecorderError::FfmpegStart { step, source })?;
    let mut stdin = Some(
        child
            .take_stdin()
            .ok_or(RecorderError::FfmpegPipe { step })?,
    );
    let (spool, key, context) = (spool.to_path_buf(), key.clone(), context.to_vec());
    let feeder = std::thread::spawn(move || {
        let mut seal = seal;
        // A sealing failure stops the reading; it is reported as itself, not as a
        // failure to read the spool.
        let mut seal_failure = None;
        let read = read_spool(&spool, &key, &context, |p| {
            if let Some(w) = &mut seal {
                if let Err(e) = w.write(p) {
                    seal_failure = Some(e);
                    return Err(std::io::Error::other("sealing failed"));
                }
            }
            // ffmpeg may stop reading early (poster, a broken file): from then on
            // only the seal gets the rest, if there is one.
            if let Some(pipe) = &mut stdin {
                if let Err(e) = pipe.write_all(p) {
                    if seal.is_none() {
                        return Err(e);
                    }
                    stdin = None;
                }
            }
            Ok(())
        });
        drop(stdin); // EOF for ffmpeg
        seal.map(|w| {
            if let Some(e) = seal_failure {
                return Err(e);
            }
            read.map_err(|source| RecorderError::ReadSpool {
                path: spool.clone(),
                source,
            })?;
            w.finish()
        })
    });
    let events = child.iter().map_err(|e| RecorderError::FfmpegOutput {
        step,
        source: e.into(),
    })?;
    let mut errors = Vec::new();
    for event in events {
        if let FfmpegEvent::Log(LogLevel::Error | LogLevel::Fatal, msg) = &event {
            errors.push(msg.clone());
        }
        on_event(event);
    }
    let status = child
        .wait()
        .map_err(|source| RecorderError::FfmpegWait { step, source })?;
    let sealed = feeder
        .join()
        .map_err(|_| RecorderError::SpoolReaderPanicked)?;
    if !status.success() {
        return Err(RecorderError::FfmpegExit {
            step,
            status,
            errors,
        });
    }
    sealed.transpose()
}
