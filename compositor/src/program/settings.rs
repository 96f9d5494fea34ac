//! What a program looks like, as asked for: [`ProgramSettings`] with its defaults and
//! the [`Scaler`] choice.
//!
//! Must not: touch GStreamer (the bin turns these values into element properties) or
//! hold running state (that is the bin's).

use std::time::Duration;

use crate::layout::{Canvas, NonConsenting};

/// How a program looks.
#[derive(Debug, Clone)]
pub struct ProgramSettings {
    /// Name of the bin (e.g. "program-recording").
    pub name: String,
    /// Output size.
    pub canvas: Canvas,
    /// Output frame rate.
    pub fps: u32,
    /// How long the mixers wait for a late input before leaving it out.
    pub latency: Duration,
    /// What non-consenting participants get: nothing or a neutral tile.
    pub non_consenting: NonConsenting,
    /// Text of the neutral tile for non-consenting participants.
    pub not_consenting_text: String,
    /// Draw name labels on the tiles.
    pub labels: bool,
    /// Text of the slate shown during non-public parts.
    pub slate_text: String,
    /// Text of the indicator overlay (e.g. "● REC"); `None`: no indicator.
    pub indicator: Option<String>,
    /// Gap between tiles in pixels.
    pub gap: u32,
    /// How inputs are scaled into their tiles.
    pub scaler: Scaler,
}

/// Resampling used when an input is scaled into its tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scaler {
    /// Bilinear: about half the CPU of cubic; the default (tiles are small).
    Linear,
    /// Bicubic (GStreamer's own default).
    Cubic,
    /// Lanczos: sharpest, most expensive.
    Lanczos,
}

impl Default for ProgramSettings {
    fn default() -> Self {
        ProgramSettings {
            name: "program".into(),
            canvas: Canvas {
                width: 1280,
                height: 720,
            },
            fps: 30,
            latency: Duration::from_millis(100),
            non_consenting: NonConsenting::Placeholder,
            not_consenting_text: "Keine Einwilligung · No consent".into(),
            labels: true,
            slate_text: "Nicht-öffentlicher Teil\nNon-public part".into(),
            indicator: None,
            gap: 4,
            scaler: Scaler::Linear,
        }
    }
}
