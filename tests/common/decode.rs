//! Reading media back the way a player does: ffmpeg (and ffprobe) over HTTP or from
//! bytes, decoded to RGB frames or mono 16-bit samples, and the measurements the tests
//! make on them (pixels near a colour, the level of a tone).
//!
//! Owns: ffmpeg's command lines. Must not: know the API (callers pass URLs and tokens;
//! `client.rs` wraps this for recordings).

use std::io::Write;
use std::process::{Command, Stdio};

use gremium_compositor::testing::near;
use serde_json::Value;

/// One ffmpeg run: an input (a URL, or bytes on stdin), input options, then what to
/// decode it to. Asserts ffmpeg succeeded, with its complaint otherwise.
#[derive(Clone, Debug, Default)]
pub struct Ffmpeg {
    input_args: Vec<String>,
    input: String,
    stdin: Option<Vec<u8>>,
    filters: Vec<String>,
    output_args: Vec<String>,
}

impl Ffmpeg {
    /// Read `url` (an HLS playlist, a segment, a recording's media…).
    pub fn url(url: &str) -> Ffmpeg {
        Ffmpeg {
            input: url.to_string(),
            ..Default::default()
        }
    }

    /// Read `bytes` from stdin in the demuxer `format` (e.g. `image2pipe` for a JPEG).
    pub fn bytes(bytes: Vec<u8>, format: &str) -> Ffmpeg {
        Ffmpeg {
            input_args: vec!["-f".into(), format.into()],
            input: "-".into(),
            stdin: Some(bytes),
            ..Default::default()
        }
    }

    /// Send `Authorization: Bearer token` with every request.
    pub fn bearer(mut self, token: &str) -> Ffmpeg {
        self.input_args.push("-headers".into());
        self.input_args
            .push(format!("Authorization: Bearer {token}\r\n"));
        self
    }

    /// For a live HLS playlist: start at segment `index` (negative: from the end).
    pub fn live_start(mut self, index: i32) -> Ffmpeg {
        self.input_args.push("-live_start_index".into());
        self.input_args.push(index.to_string());
        self
    }

    /// Decode at most `secs` seconds.
    pub fn seconds(mut self, secs: u32) -> Ffmpeg {
        self.output_args.push("-t".into());
        self.output_args.push(secs.to_string());
        self
    }

    /// Resample the video to `fps` frames a second (frame i shows time i/fps).
    pub fn fps(mut self, fps: u32) -> Ffmpeg {
        self.filters.push(format!("fps={fps}"));
        self
    }

    /// Run with `output` options (after the input and `-t`); ffmpeg's stdout.
    pub fn run(&self, output: &[&str]) -> Vec<u8> {
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-v", "error"])
            .args(&self.input_args)
            .arg("-i")
            .arg(&self.input)
            .args(&self.output_args);
        if !self.filters.is_empty() {
            cmd.arg("-vf").arg(self.filters.join(","));
        }
        cmd.args(output)
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("ffmpeg runs");
        // Fed from a thread: ffmpeg may fill its stdout before it has read all input.
        let feeder = self.stdin.clone().map(|bytes| {
            let mut stdin = child.stdin.take().expect("ffmpeg's stdin");
            std::thread::spawn(move || stdin.write_all(&bytes))
        });
        let out = child.wait_with_output().expect("ffmpeg finishes");
        if let Some(feeder) = feeder {
            feeder
                .join()
                .expect("the feeder thread")
                .expect("ffmpeg reads its input");
        }
        assert!(
            out.status.success(),
            "ffmpeg {}: {}",
            self.input,
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// The (first) video stream as `width`×`height` RGB frames.
    pub fn frames(&self, width: usize, height: usize) -> Frames {
        Frames {
            width,
            height,
            data: self.run(&["-f", "rawvideo", "-pix_fmt", "rgb24", "-"]),
        }
    }

    /// Every decoded picture as RGB, whatever its size (one picture: see it with
    /// `Frame(&rgb)`).
    pub fn rgb(&self) -> Vec<u8> {
        self.run(&["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
    }

    /// The first audio stream, mixed to mono, as 16-bit samples at the stream's rate.
    pub fn samples(&self) -> Vec<i16> {
        pcm(&self.run(&["-map", "0:a:0", "-ac", "1", "-f", "s16le", "-"]))
    }

    /// The audio mixed to mono and resampled to `rate` Hz, as 16-bit samples.
    pub fn samples_at(&self, rate: u32) -> Vec<i16> {
        pcm(&self.run(&["-ac", "1", "-ar", &rate.to_string(), "-f", "s16le", "-"]))
    }
}

fn pcm(bytes: &[u8]) -> Vec<i16> {
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// Decoded RGB frames, all `width`×`height` (a partial last frame is dropped).
#[derive(Clone, Debug)]
pub struct Frames {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl Frames {
    pub fn len(&self) -> usize {
        self.data.len() / self.frame_bytes()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn frame_bytes(&self) -> usize {
        self.width * self.height * 3
    }

    pub fn iter(&self) -> impl Iterator<Item = Frame<'_>> {
        self.data.chunks_exact(self.frame_bytes()).map(Frame)
    }

    pub fn get(&self, i: usize) -> Option<Frame<'_>> {
        self.iter().nth(i)
    }
}

/// One RGB frame (3 bytes a pixel).
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a>(pub &'a [u8]);

impl Frame<'_> {
    /// How many pixels are near `rgb` (within the compositor tests' tolerance).
    pub fn count(&self, rgb: [u8; 3]) -> usize {
        self.0.chunks_exact(3).filter(|px| near(px, rgb)).count()
    }

    pub fn pixels(&self) -> usize {
        self.0.len() / 3
    }
}

/// Amplitude of the `freq` Hz component of 48 kHz mono `samples` (a single-bin DFT).
pub fn tone_level(samples: &[i16], freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / 48_000.0;
    let (mut re, mut im) = (0.0, 0.0);
    for (n, s) in samples.iter().enumerate() {
        let (sin, cos) = (w * n as f64).sin_cos();
        re += f64::from(*s) * cos;
        im -= f64::from(*s) * sin;
    }
    2.0 * (re * re + im * im).sqrt() / samples.len() as f64
}

/// ffprobe `url` (with a bearer `token`, if any), as a player would (it seeks with
/// Range requests); asserts ffprobe reads it. The stream list (`codec_name`,
/// `codec_type`, `width`, `height`) and the duration.
pub fn probe(url: &str, token: Option<&str>) -> (Vec<Value>, f64) {
    let mut cmd = Command::new("ffprobe");
    cmd.args(["-v", "error"]);
    if let Some(token) = token {
        cmd.arg("-headers")
            .arg(format!("Authorization: Bearer {token}\r\n"));
    }
    let out = cmd
        .args(["-show_entries", "stream=codec_name,codec_type,width,height"])
        .args(["-show_entries", "format=duration", "-of", "json"])
        .arg(url)
        .output()
        .expect("ffprobe runs");
    assert!(
        out.status.success(),
        "ffprobe {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let probe: Value = serde_json::from_slice(&out.stdout).expect("ffprobe's JSON");
    let duration = probe["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("no duration: {probe}"));
    (
        probe["streams"].as_array().cloned().unwrap_or_default(),
        duration,
    )
}
