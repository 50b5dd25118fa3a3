//! What the app remembers between runs: recent files, theme, text size, review options (who is
//! deciding, as adjudicator or not, what blind review hides) and the last judge picked. Stored by eframe's persistence as one JSON string.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The key under which settings are stored.
pub const STORAGE_KEY: &str = "arbiter.settings";
const MAX_RECENT: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Theme {
    /// Follow the system's dark/light setting.
    #[default]
    System,
    Dark,
    Light,
}

impl Theme {
    pub fn label(self) -> &'static str {
        match self {
            Theme::System => "follow the system",
            Theme::Dark => "dark",
            Theme::Light => "light",
        }
    }

    pub fn preference(self) -> egui::ThemePreference {
        match self {
            Theme::System => egui::ThemePreference::System,
            Theme::Dark => egui::ThemePreference::Dark,
            Theme::Light => egui::ThemePreference::Light,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub recent: Vec<PathBuf>,
    pub theme: Theme,
    /// Zoom factor of the whole UI (text size).
    pub zoom: f32,
    /// Hide model names (blind review).
    pub blind: bool,
    /// Who is deciding: recorded with every decision and naming their journal. Empty until
    /// the app has asked.
    pub annotator: String,
    /// This person's decisions settle items the annotators disagree on.
    pub adjudicator: bool,
    /// Hide other people's decisions on an item until this person has decided it.
    pub blind_decisions: bool,
    /// Also hide the judges' verdicts and the panel's consensus until this person has decided.
    pub blind_judges: bool,
    /// The judge model to run: catalogue name, hub id, folder or `.gguf` path.
    pub model: String,
    pub template: String,
    pub device: String,
    pub max_new_tokens: usize,
    /// Keep the judge's answer inside the template's answer grammar.
    pub constrain: bool,
    /// The panel file of the last batch run (as typed or chosen).
    pub batch_panel: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            recent: Vec::new(),
            theme: Theme::System,
            zoom: 1.0,
            blind: false,
            annotator: String::new(),
            adjudicator: false,
            blind_decisions: false,
            blind_judges: false,
            model: crate::engine::catalogue::DEFAULT_JUDGE.to_string(),
            template: "cj2-critical-thinking".to_string(),
            device: crate::engine::device::DeviceChoice::best_available().to_string(),
            max_new_tokens: 1024,
            constrain: true,
            batch_panel: String::new(),
        }
    }
}

/// What blind review hides, from the settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Blind {
    /// Model names.
    pub models: bool,
    /// Other people's decisions, until this person has decided the item.
    pub decisions: bool,
    /// Judges' verdicts and the consensus, until this person has decided the item.
    pub judges: bool,
}

impl Settings {
    pub fn blind(&self) -> Blind {
        Blind {
            models: self.blind,
            decisions: self.blind_decisions,
            judges: self.blind_judges,
        }
    }

    /// Reads stored settings; anything unreadable falls back to the defaults (settings are a
    /// convenience, never a reason not to start).
    pub fn from_json(text: &str) -> Settings {
        serde_json::from_str(text).unwrap_or_default()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Puts `path` first in the recent files.
    pub fn remember(&mut self, path: PathBuf) {
        self.recent.retain(|p| p != &path);
        self.recent.insert(0, path);
        self.recent.truncate(MAX_RECENT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_bad_json_gives_defaults() {
        let mut s = Settings::default();
        s.remember("a.jsonl".into());
        s.remember("b.jsonl".into());
        s.remember("a.jsonl".into());
        assert_eq!(
            s.recent,
            vec![PathBuf::from("a.jsonl"), PathBuf::from("b.jsonl")]
        );
        s.theme = Theme::Dark;
        assert_eq!(Settings::from_json(&s.to_json()), s);
        assert_eq!(Settings::from_json("{not json"), Settings::default());
        // A field added later is filled in from the defaults.
        assert_eq!(Settings::from_json(r#"{"zoom": 1.5}"#).zoom, 1.5);
        // Settings saved before teams read with nobody named yet, so the app asks.
        let old = Settings::from_json(r#"{"zoom": 1.5, "blind": true}"#);
        assert_eq!(old.annotator, "");
        assert!(!old.adjudicator && !old.blind_decisions && !old.blind_judges);
        s.annotator = "ann".into();
        s.blind_judges = true;
        assert_eq!(Settings::from_json(&s.to_json()), s);
    }
}
