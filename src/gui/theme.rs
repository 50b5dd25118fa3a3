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
