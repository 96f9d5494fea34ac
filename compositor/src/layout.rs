//! The layout engine: which participant goes where on the program canvas.
//!
//! Pure and deterministic: the same inputs give the same rectangles. The engine keeps
//! each participant's slot while the grid size stays the same, so tiles do not jump
//! when others join or leave. Every tile is the largest 16:9 rectangle that fits its
//! cell, centred, so pictures keep their aspect ratio.

use uuid::Uuid;

/// Output size in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Canvas {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// A rectangle on the canvas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rect {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
}

impl Rect {
    /// True when the two rectangles share any pixel.
    pub fn overlaps(&self, o: &Rect) -> bool {
        self.x < o.x + o.w && o.x < self.x + self.w && self.y < o.y + o.h && o.y < self.y + self.h
    }

    /// Area in pixels.
    pub fn area(&self) -> u64 {
        u64::from(self.w) * u64::from(self.h)
    }

    fn fit_16_9(cell: Rect) -> Rect {
        let (w, h) = if u64::from(cell.w) * 9 <= u64::from(cell.h) * 16 {
            (cell.w, cell.w * 9 / 16)
        } else {
            (cell.h * 16 / 9, cell.h)
        };
        // Never empty inside a cell that is not (see `cells`).
        let (w, h) = (w.max(1).min(cell.w), h.max(1).min(cell.h));
        Rect {
            x: cell.x + (cell.w - w) / 2,
            y: cell.y + (cell.h - h) / 2,
            w,
            h,
        }
    }
}

/// Layout kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutKind {
    /// Everyone in an even grid.
    Grid,
    /// The active (or pinned) speaker large, the others in a strip below.
    Speaker,
    /// A screen share large, everyone else in a filmstrip on the right.
    ScreenShare,
    /// Public sessions: only podium members, in a grid; the audience is not shown.
    Podium,
}

/// What to do with participants who did not consent to this output's purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonConsenting {
    /// They get no tile at all.
    Hide,
    /// They get a neutral "not recorded" tile (never their picture).
    Placeholder,
}

/// One participant as the layout sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    /// Participant id.
    pub id: Uuid,
    /// Their camera is on.
    pub has_video: bool,
    /// They share their screen.
    pub screen_share: bool,
    /// They sit on the podium (panel/podium layout).
    pub podium: bool,
    /// They consented to this output's purpose.
    pub consent: bool,
}

/// Layout choices of the moderator (plus the active speaker from audio levels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutSettings {
    /// Layout kind.
    pub kind: LayoutKind,
    /// Pinned participant: large in the speaker layout, whoever speaks.
    pub pinned: Option<Uuid>,
    /// Current active speaker (from the audio levels, with hysteresis upstream).
    pub active_speaker: Option<Uuid>,
    /// Treatment of non-consenting participants.
    pub non_consenting: NonConsenting,
    /// Gap between tiles in pixels.
    pub gap: u32,
}

/// What a tile shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TileContent {
    /// The participant's video (or screen share).
    Video,
    /// Camera off: a placeholder with their initials.
    Initials,
    /// No consent for this output: a neutral "not recorded" tile.
    NotRecorded,
}

/// One tile of the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Whose tile.
    pub id: Uuid,
    /// Where.
    pub rect: Rect,
    /// Stacking order (higher is on top).
    pub z: u32,
    /// What it shows.
    pub content: TileContent,
}

/// The layout engine. Holds only the grid slots, so tiles keep their places.
#[derive(Debug, Default, Clone)]
pub struct LayoutEngine {
    slots: Vec<Option<Uuid>>,
}

fn grid_shape(n: usize) -> (u32, u32) {
    if n == 0 {
        return (0, 0);
    }
    let cols = (n as f64).sqrt().ceil() as u32;
    let rows = (n as u32).div_ceil(cols);
    (cols, rows)
}

/// Cells of a `cols` × `rows` grid inside `area`, row by row.
fn cells(area: Rect, cols: u32, rows: u32, gap: u32) -> Vec<Rect> {
    let mut out = Vec::with_capacity((cols * rows) as usize);
    if cols == 0 || rows == 0 {
        return out;
    }
    // Where the gaps would leave no room (many tiles in a small strip), they shrink:
    // a tile never ends up empty (a mixer pad of width or height 0 would draw its
    // input unscaled, at full size, over the picture).
    let gap_along = |len: u32, n: u32| {
        if len >= gap * (n + 1) + n {
            gap
        } else {
            len.saturating_sub(n) / (n + 1)
        }
    };
    let (gx, gy) = (gap_along(area.w, cols), gap_along(area.h, rows));
    let cw = area.w.saturating_sub(gx * (cols + 1)) / cols;
    let ch = area.h.saturating_sub(gy * (rows + 1)) / rows;
    for r in 0..rows {
        for c in 0..cols {
            out.push(Rect {
                x: area.x + gx + c * (cw + gx),
                y: area.y + gy + r * (ch + gy),
                w: cw,
                h: ch,
            });
        }
    }
    out
}

impl LayoutEngine {
    /// A fresh engine.
    pub fn new() -> LayoutEngine {
        LayoutEngine::default()
    }

    /// Compute the placements for `participants` (in joining order).
    pub fn layout(
        &mut self,
        participants: &[Participant],
        settings: &LayoutSettings,
        canvas: Canvas,
    ) -> Vec<Placement> {
        let visible: Vec<(&Participant, TileContent)> = participants
            .iter()
            .filter(|p| settings.kind != LayoutKind::Podium || p.podium)
            .filter_map(|p| match (p.consent, settings.non_consenting) {
                (false, NonConsenting::Hide) => None,
                (false, NonConsenting::Placeholder) => Some((p, TileContent::NotRecorded)),
                (true, _) if p.has_video || p.screen_share => Some((p, TileContent::Video)),
                (true, _) => Some((p, TileContent::Initials)),
            })
            .collect();
        let full = Rect {
            x: 0,
            y: 0,
            w: canvas.width,
            h: canvas.height,
        };
        // The featured participant of speaker / screen-share layouts (consenting only:
        // a "not recorded" tile is never made large).
        let featured = match settings.kind {
            LayoutKind::ScreenShare => visible
                .iter()
                .find(|(p, c)| p.screen_share && *c == TileContent::Video),
            LayoutKind::Speaker => {
                let want = settings.pinned.or(settings.active_speaker);
                visible
                    .iter()
                    .find(|(p, c)| Some(p.id) == want && *c != TileContent::NotRecorded)
                    .or_else(|| visible.iter().find(|(_, c)| *c != TileContent::NotRecorded))
            }
            LayoutKind::Grid | LayoutKind::Podium => None,
        }
        .map(|(p, c)| (p.id, *c));
        match featured {
            None => self.grid(&visible, full, settings.gap),
            Some((id, content)) => {
                let others: Vec<(&Participant, TileContent)> = visible
                    .iter()
                    .filter(|(p, _)| p.id != id)
                    .cloned()
                    .collect();
                let (main, strip, cols, rows) = if settings.kind == LayoutKind::ScreenShare {
                    let strip_w = canvas.width / 5;
                    let main = Rect {
                        x: 0,
                        y: 0,
                        w: canvas.width - strip_w,
                        h: canvas.height,
                    };
                    let strip = Rect {
                        x: canvas.width - strip_w,
                        y: 0,
                        w: strip_w,
                        h: canvas.height,
                    };
                    (main, strip, 1, (others.len() as u32).max(4))
                } else {
                    let strip_h = canvas.height / 4;
                    let main = Rect {
                        x: 0,
                        y: 0,
                        w: canvas.width,
                        h: canvas.height - strip_h,
                    };
                    let strip = Rect {
                        x: 0,
                        y: canvas.height - strip_h,
                        w: canvas.width,
                        h: strip_h,
                    };
                    (main, strip, (others.len() as u32).max(4), 1)
                };
                let mut out = vec![Placement {
                    id,
                    rect: Rect::fit_16_9(Rect {
                        x: main.x + settings.gap,
                        y: main.y + settings.gap,
                        w: main.w.saturating_sub(2 * settings.gap),
                        h: main.h.saturating_sub(2 * settings.gap),
                    }),
                    z: 0,
                    content,
                }];
                for ((p, c), cell) in others.iter().zip(cells(strip, cols, rows, settings.gap)) {
                    out.push(Placement {
                        id: p.id,
                        rect: Rect::fit_16_9(cell),
                        z: 1,
                        content: *c,
                    });
                }
                out
            }
        }
    }

    fn grid(
        &mut self,
        visible: &[(&Participant, TileContent)],
        area: Rect,
        gap: u32,
    ) -> Vec<Placement> {
        let (cols, rows) = grid_shape(visible.len());
        let capacity = (cols * rows) as usize;
        // Keep slots of those still visible; free the others.
        for slot in self.slots.iter_mut() {
            if slot.is_some_and(|id| !visible.iter().any(|(p, _)| p.id == id)) {
                *slot = None;
            }
        }
        if self.slots.len() != capacity {
            // Grid size changed: compact, keeping relative order.
            let kept: Vec<Uuid> = self.slots.iter().flatten().copied().collect();
            self.slots = kept
                .into_iter()
                .map(Some)
                .chain(std::iter::repeat(None))
                .take(capacity)
                .collect();
        }
        for (p, _) in visible {
            if !self.slots.contains(&Some(p.id)) {
                if let Some(free) = self.slots.iter_mut().find(|s| s.is_none()) {
                    *free = Some(p.id);
                }
            }
        }
        let cells = cells(area, cols, rows, gap);
        let mut out: Vec<Placement> = self
            .slots
            .iter()
            .zip(cells)
            .filter_map(|(slot, cell)| {
                let id = (*slot)?;
                let content = visible.iter().find(|(p, _)| p.id == id).map(|(_, c)| *c)?;
                Some(Placement {
                    id,
                    rect: Rect::fit_16_9(cell),
                    z: 0,
                    content,
                })
            })
            .collect();
        out.sort_by_key(|p| (p.rect.y, p.rect.x));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HD: Canvas = Canvas {
        width: 1280,
        height: 720,
    };

    fn people(n: usize) -> Vec<Participant> {
        (0..n)
            .map(|i| Participant {
                id: Uuid::from_u128(i as u128 + 1),
                has_video: true,
                screen_share: false,
                podium: i % 2 == 0,
                consent: true,
            })
            .collect()
    }

    fn settings(kind: LayoutKind) -> LayoutSettings {
        LayoutSettings {
            kind,
            pinned: None,
            active_speaker: None,
            non_consenting: NonConsenting::Hide,
            gap: 4,
        }
    }

    fn check_geometry(out: &[Placement], canvas: Canvas) {
        for (i, a) in out.iter().enumerate() {
            assert!(
                a.rect.x + a.rect.w <= canvas.width && a.rect.y + a.rect.h <= canvas.height,
                "{a:?} outside"
            );
            assert!(a.rect.w > 0 && a.rect.h > 0, "{a:?} empty");
            let ratio = a.rect.w as f64 / a.rect.h as f64;
            assert!((ratio - 16.0 / 9.0).abs() < 0.02, "{a:?} is not 16:9");
            for b in &out[i + 1..] {
                if a.z == b.z {
                    assert!(!a.rect.overlaps(&b.rect), "{a:?} overlaps {b:?}");
                }
            }
        }
    }

    #[test]
    fn grids_of_every_size_fit_without_overlap() {
        for canvas in [
            HD,
            Canvas {
                width: 1920,
                height: 1080,
            },
            Canvas {
                width: 640,
                height: 360,
            },
            Canvas {
                width: 720,
                height: 1280,
            },
        ] {
            for n in 0..=25 {
                let out =
                    LayoutEngine::new().layout(&people(n), &settings(LayoutKind::Grid), canvas);
                assert_eq!(out.len(), n);
                check_geometry(&out, canvas);
            }
        }
    }

    #[test]
    fn layouts_are_deterministic() {
        for kind in [
            LayoutKind::Grid,
            LayoutKind::Speaker,
            LayoutKind::ScreenShare,
            LayoutKind::Podium,
        ] {
            let a = LayoutEngine::new().layout(&people(7), &settings(kind), HD);
            let b = LayoutEngine::new().layout(&people(7), &settings(kind), HD);
            assert_eq!(a, b, "{kind:?}");
        }
    }

    #[test]
    fn tiles_keep_their_places_when_someone_leaves() {
        let mut engine = LayoutEngine::new();
        let all = people(6); // 3x2 grid
        let before = engine.layout(&all, &settings(LayoutKind::Grid), HD);
        let mut fewer = all.clone();
        fewer.remove(1); // 5 people still need a 3x2 grid
        let after = engine.layout(&fewer, &settings(LayoutKind::Grid), HD);
        for p in &after {
            let old = before.iter().find(|b| b.id == p.id).unwrap();
            assert_eq!(old.rect, p.rect, "{} moved", p.id);
        }
        // Someone joins: they take the free slot; nobody else moves.
        let mut more = fewer.clone();
        more.push(Participant {
            id: Uuid::from_u128(99),
            ..all[0].clone()
        });
        let again = engine.layout(&more, &settings(LayoutKind::Grid), HD);
        let newcomer = again.iter().find(|p| p.id == Uuid::from_u128(99)).unwrap();
        assert_eq!(
            newcomer.rect,
            before.iter().find(|b| b.id == all[1].id).unwrap().rect
        );
        for p in after {
            assert_eq!(again.iter().find(|a| a.id == p.id).unwrap().rect, p.rect);
        }
    }

    #[test]
    fn speaker_layout_features_the_pinned_or_active_speaker() {
        let ps = people(5);
        let mut s = settings(LayoutKind::Speaker);
        s.active_speaker = Some(ps[3].id);
        let out = LayoutEngine::new().layout(&ps, &s, HD);
        check_geometry(&out, HD);
        let biggest = out.iter().max_by_key(|p| p.rect.area()).unwrap();
        assert_eq!(biggest.id, ps[3].id);
        s.pinned = Some(ps[1].id);
        let out = LayoutEngine::new().layout(&ps, &s, HD);
        assert_eq!(
            out.iter().max_by_key(|p| p.rect.area()).unwrap().id,
            ps[1].id,
            "pin beats speaker"
        );
        assert_eq!(out.len(), 5);
    }

    #[test]
    fn screen_share_is_large_with_a_filmstrip() {
        let mut ps = people(4);
        ps[2].screen_share = true;
        let out = LayoutEngine::new().layout(&ps, &settings(LayoutKind::ScreenShare), HD);
        check_geometry(&out, HD);
        let biggest = out.iter().max_by_key(|p| p.rect.area()).unwrap();
        assert_eq!(biggest.id, ps[2].id);
        assert!(out
            .iter()
            .filter(|p| p.id != ps[2].id)
            .all(|p| p.rect.x >= HD.width * 4 / 5));
    }

    /// Found by the property test: 24 people in the screen-share strip of a 320×240
    /// canvas with 9 px gaps got 0×0 tiles (the gaps took all 240 px).
    #[test]
    fn a_crowded_strip_on_a_small_canvas_keeps_every_tile() {
        let mut ps = people(25);
        ps[0].screen_share = true;
        let small = Canvas {
            width: 320,
            height: 240,
        };
        let mut s = settings(LayoutKind::ScreenShare);
        s.gap = 9;
        let out = LayoutEngine::new().layout(&ps, &s, small);
        assert_eq!(out.len(), 25);
        for (i, a) in out.iter().enumerate() {
            assert!(a.rect.w > 0 && a.rect.h > 0, "{a:?} empty");
            assert!(a.rect.x + a.rect.w <= 320 && a.rect.y + a.rect.h <= 240);
            assert!(out[i + 1..]
                .iter()
                .all(|b| a.z != b.z || !a.rect.overlaps(&b.rect)));
        }
    }

    #[test]
    fn podium_shows_only_podium_members() {
        let ps = people(6);
        let out = LayoutEngine::new().layout(&ps, &settings(LayoutKind::Podium), HD);
        let shown: Vec<Uuid> = out.iter().map(|p| p.id).collect();
        let podium: Vec<Uuid> = ps.iter().filter(|p| p.podium).map(|p| p.id).collect();
        assert_eq!(shown.len(), podium.len());
        assert!(shown.iter().all(|id| podium.contains(id)));
        check_geometry(&out, HD);
    }

    #[test]
    fn non_consenting_participants_are_hidden_or_neutral_never_featured() {
        let mut ps = people(4);
        ps[0].consent = false;
        ps[2].has_video = false;
        let out = LayoutEngine::new().layout(&ps, &settings(LayoutKind::Grid), HD);
        assert!(out.iter().all(|p| p.id != ps[0].id), "hidden");
        assert_eq!(
            out.iter().find(|p| p.id == ps[2].id).unwrap().content,
            TileContent::Initials
        );
        let mut s = settings(LayoutKind::Speaker);
        s.non_consenting = NonConsenting::Placeholder;
        s.active_speaker = Some(ps[0].id);
        let out = LayoutEngine::new().layout(&ps, &s, HD);
        let tile = out.iter().find(|p| p.id == ps[0].id).unwrap();
        assert_eq!(tile.content, TileContent::NotRecorded);
        let biggest = out.iter().max_by_key(|p| p.rect.area()).unwrap();
        assert_ne!(
            biggest.id, ps[0].id,
            "a non-consenting speaker is never made large"
        );
    }
}
