//! The one table of keyboard shortcuts: the app dispatches from it and the help overlay is
//! generated from it, so the two can never disagree.

/// Something a key does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    DecideA,
    DecideB,
    DecideTie,
    Undo,
    Next,
    Previous,
    NextUndecidedDispute,
    Search,
    ToggleHelp,
    SwapSides,
    ToggleBlind,
    RunJudge,
    StopJudge,
    Note,
    ToggleMetrics,
    ToggleModels,
}

/// A key and what it does.
#[derive(Debug, Clone, Copy)]
pub struct Binding {
    pub key: egui::Key,
    /// Shown in the help overlay (`1`, `Tab`, `/`...).
    pub label: &'static str,
    pub action: Action,
    pub help: &'static str,
}

/// Every shortcut. Keys act only while no text field has focus (typing a note never decides).
pub const KEYMAP: &[Binding] = &[
    Binding {
        key: egui::Key::Num1,
        label: "1",
        action: Action::DecideA,
        help: "A is better",
    },
    Binding {
        key: egui::Key::Num2,
        label: "2",
        action: Action::DecideB,
        help: "B is better",
    },
    Binding {
        key: egui::Key::Num3,
        label: "3",
        action: Action::DecideTie,
        help: "tie",
    },
    Binding {
        key: egui::Key::U,
        label: "u",
        action: Action::Undo,
        help: "undo the decision on this item",
    },
    Binding {
        key: egui::Key::N,
        label: "n",
        action: Action::Next,
        help: "next item",
    },
    Binding {
        key: egui::Key::J,
        label: "j",
        action: Action::Next,
        help: "next item",
    },
    Binding {
        key: egui::Key::ArrowDown,
        label: "Down",
        action: Action::Next,
        help: "next item",
    },
    Binding {
        key: egui::Key::P,
        label: "p",
        action: Action::Previous,
        help: "previous item",
    },
    Binding {
        key: egui::Key::K,
        label: "k",
        action: Action::Previous,
        help: "previous item",
    },
    Binding {
        key: egui::Key::ArrowUp,
        label: "Up",
        action: Action::Previous,
        help: "previous item",
    },
    Binding {
        key: egui::Key::Tab,
        label: "Tab",
        action: Action::NextUndecidedDispute,
        help: "next item waiting for you (your queue; escalations when you adjudicate)",
    },
    Binding {
        key: egui::Key::Slash,
        label: "/",
        action: Action::Search,
        help: "search items",
    },
    Binding {
        key: egui::Key::Questionmark,
        label: "?",
        action: Action::ToggleHelp,
        help: "show or hide this help",
    },
    Binding {
        key: egui::Key::S,
        label: "s",
        action: Action::SwapSides,
        help: "show the responses the other way round",
    },
    Binding {
        key: egui::Key::B,
        label: "b",
        action: Action::ToggleBlind,
        help: "hide or show model names (blind review)",
    },
    Binding {
        key: egui::Key::R,
        label: "r",
        action: Action::RunJudge,
        help: "run the selected judge on this item",
    },
    Binding {
        key: egui::Key::Escape,
        label: "Esc",
        action: Action::StopJudge,
        help: "stop the running judge",
    },
    Binding {
        key: egui::Key::Enter,
        label: "Enter",
        action: Action::Note,
        help: "write a note for the next decision",
    },
    Binding {
        key: egui::Key::M,
        label: "m",
        action: Action::ToggleMetrics,
        help: "show or hide the metrics window",
    },
    Binding {
        key: egui::Key::L,
        label: "l",
        action: Action::ToggleModels,
        help: "show or hide the models window (catalogue, cache, devices)",
    },
];

/// The help overlay's lines: each action once, with all its keys.
pub fn help_lines() -> Vec<(String, &'static str)> {
    let mut lines: Vec<(String, &'static str, Action)> = Vec::new();
    for b in KEYMAP {
        match lines.iter_mut().find(|(_, _, a)| *a == b.action) {
            Some(line) => {
                line.0.push_str(" / ");
                line.0.push_str(b.label);
            }
            None => lines.push((b.label.to_string(), b.help, b.action)),
        }
    }
    lines.into_iter().map(|(k, h, _)| (k, h)).collect()
}

/// The actions whose keys were pressed this frame.
pub fn pressed(input: &egui::InputState) -> Vec<Action> {
    let mut actions = Vec::new();
    for event in &input.events {
        match event {
            egui::Event::Key {
                key,
                pressed: true,
                modifiers,
                ..
            } if !modifiers.ctrl && !modifiers.alt && !modifiers.command => {
                if let Some(b) = KEYMAP.iter().find(|b| b.key == *key) {
                    if !actions.contains(&b.action) {
                        actions.push(b.action);
                    }
                }
            }
            // `?` arrives as text on most layouts (shift+/).
            egui::Event::Text(t) if t == "?" && !actions.contains(&Action::ToggleHelp) => {
                actions.retain(|a| *a != Action::Search);
                actions.push(Action::ToggleHelp);
            }
            _ => {}
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_has_help_and_no_key_is_bound_twice() {
        let lines = help_lines();
        assert!(lines
            .iter()
            .any(|(k, h)| k == "n / j / Down" && *h == "next item"));
        let mut keys: Vec<_> = KEYMAP.iter().map(|b| b.key).collect();
        keys.sort_by_key(|k| format!("{k:?}"));
        let n = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), n, "a key is bound twice");
    }
}
