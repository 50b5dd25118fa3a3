//! Colours and small widgets the panels share, so a verdict looks the same everywhere.

use crate::critique::FieldState;
use crate::verdict::Outcome;
use egui::{Color32, RichText};

pub fn outcome_color(o: Option<Outcome>) -> Color32 {
    match o {
        Some(Outcome::A) => Color32::from_rgb(70, 140, 230),
        Some(Outcome::B) => Color32::from_rgb(230, 140, 50),
        Some(Outcome::Tie) => Color32::from_rgb(150, 150, 150),
        None => Color32::from_rgb(200, 60, 60),
    }
}

/// A verdict as a coloured label: `A`, `B>>A`, `tie`, or `—` when there is none.
pub fn outcome_text(label: &str, o: Option<Outcome>) -> RichText {
    RichText::new(label).strong().color(outcome_color(o))
}

pub const DISPUTE: Color32 = Color32::from_rgb(210, 70, 70);
pub const SAVED: Color32 = Color32::from_rgb(60, 170, 90);

/// The mark shown beside a critique field's name.
pub fn field_mark(state: FieldState) -> &'static str {
    match state {
        FieldState::Absent => "·",
        FieldState::Filling => "…",
        FieldState::Complete => "•",
    }
}

/// Draws the few icons that widgets Arbiter uses print as characters no bundled font has:
/// the copy (U+1F5D0) and copied (U+2714) marks of markdown code blocks. Without it they
/// would show as empty boxes wherever the system has no font for them. A fallback: a font
/// that has them wins.
pub fn icon_glyphs() -> egui::epaint::text::GlyphRasterizer {
    use egui::epaint::text::{
        GlyphBitmap, GlyphRasterizer, GlyphRasterizerRequest, RasterizedGlyph,
    };
    GlyphRasterizer::new(
        "arbiter::theme::icon_glyphs",
        |request: &GlyphRasterizerRequest<'_>| {
            // Segments in a unit box (x right, y down), stroked with anti-aliased edges.
            let segments: &[[f32; 4]] = match request.cluster {
                // Two pages: the back one's hidden edges are left out.
                "\u{1F5D0}" => &[
                    [0.38, 0.05, 0.92, 0.05],
                    [0.92, 0.05, 0.92, 0.62],
                    [0.38, 0.05, 0.38, 0.30],
                    [0.70, 0.62, 0.92, 0.62],
                    [0.08, 0.30, 0.70, 0.30],
                    [0.70, 0.30, 0.70, 0.95],
                    [0.70, 0.95, 0.08, 0.95],
                    [0.08, 0.95, 0.08, 0.30],
                ],
                "\u{2714}" => &[[0.08, 0.55, 0.38, 0.88], [0.38, 0.88, 0.95, 0.12]],
                _ => return None,
            };
            let size = request.font_size_px.max(4.0);
            let side = (size * 0.8).ceil().max(4.0) as usize;
            let half_width = (size / 20.0).max(0.5);
            let scale = side as f32 - 1.0;
            let pixels = (0..side * side)
                .map(|i| {
                    let (px, py) = ((i % side) as f32, (i / side) as f32);
                    let distance = segments
                        .iter()
                        .map(|&[x0, y0, x1, y1]| {
                            segment_distance(
                                px,
                                py,
                                [x0 * scale, y0 * scale, x1 * scale, y1 * scale],
                            )
                        })
                        .fold(f32::INFINITY, f32::min);
                    let coverage = (half_width + 0.5 - distance).clamp(0.0, 1.0);
                    let a = (coverage * 255.0).round() as u8;
                    Color32::from_rgba_premultiplied(a, a, a, a)
                })
                .collect();
            Some(RasterizedGlyph {
                bitmap: GlyphBitmap {
                    image: egui::ColorImage::new([side, side], pixels),
                    offset_px: egui::vec2(size * 0.08, -(side as f32)),
                    is_color: false,
                },
                advance_px: side as f32 + size * 0.16,
            })
        },
    )
}

/// Distance from a point to a segment `[x0, y0, x1, y1]`.
fn segment_distance(px: f32, py: f32, [x0, y0, x1, y1]: [f32; 4]) -> f32 {
    let (dx, dy) = (x1 - x0, y1 - y0);
    let length2 = dx * dx + dy * dy;
    let t = if length2 > 0.0 {
        (((px - x0) * dx + (py - y0) * dy) / length2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (cx, cy) = (x0 + t * dx - px, y0 + t * dy - py);
    (cx * cx + cy * cy).sqrt()
}
