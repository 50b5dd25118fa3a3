//! File dialogs that never fail silently. The system dialog comes from rfd (the xdg desktop
//! portal on Linux, zenity as its fallback); where neither exists, rfd only logs an error and
//! returns nothing, exactly as if the person had cancelled. So the app checks beforehand
//! whether a dialog can open at all, treats a dialog that "closes" at once as a failure, and in
//! both cases asks for the path in a window of its own, with a banner saying why.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What a dialog is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    OpenDataset,
    ExportLabels,
    ExportMetrics,
}

impl Purpose {
    pub fn title(self) -> &'static str {
        match self {
            Purpose::OpenDataset => "Open a dataset",
            Purpose::ExportLabels => "Export labels to",
            Purpose::ExportMetrics => "Export metrics (JSON) to",
        }
    }

    pub fn button(self) -> &'static str {
        match self {
            Purpose::OpenDataset => "Open",
            _ => "Save",
        }
    }

    fn default_name(self) -> &'static str {
        match self {
            Purpose::OpenDataset => "",
            Purpose::ExportLabels => "labels.jsonl",
            Purpose::ExportMetrics => "metrics.json",
        }
    }
}

/// How the app picks files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dialogs {
    /// The system's dialog (rfd).
    System,
    /// The app's own path window, and why the system's cannot be used.
    InApp(String),
}

impl Dialogs {
    /// The system dialog where one can open, otherwise the app's own window.
    pub fn detect() -> Dialogs {
        match unavailable(&|k| std::env::var_os(k)) {
            Some(why) => {
                tracing::warn!("no system file dialog: {why}");
                Dialogs::InApp(why)
            }
            None => Dialogs::System,
        }
    }
}

/// Why no system file dialog can open here, judged from the environment (`env` reads a
/// variable); `None` when one may. On Linux rfd needs an xdg desktop portal (reached over the
/// D-Bus session bus) or the `zenity` program; other systems always have a dialog.
pub fn unavailable(env: &dyn Fn(&str) -> Option<OsString>) -> Option<String> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let bus = env("DBUS_SESSION_BUS_ADDRESS").is_some_and(|v| !v.is_empty());
    let zenity = env("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| is_executable(&dir.join("zenity")))
    });
    if bus || zenity {
        None
    } else {
        Some(
            "this desktop has neither an xdg desktop portal (no D-Bus session) nor zenity, so no \
             file dialog can open; type the path instead (installing xdg-desktop-portal-gtk or \
             zenity brings the dialog back)"
                .to_string(),
        )
    }
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

/// What the system dialog gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Picked {
    Path(PathBuf),
    Cancelled,
    /// It could not open: the app asks for the path itself.
    Failed(String),
}

/// No person closes a dialog this fast: a dialog that returns nothing sooner never opened.
const TOO_FAST: Duration = Duration::from_millis(150);

/// Shows the system dialog for `purpose` (blocking, as rfd's dialogs are).
pub fn pick(purpose: Purpose) -> Picked {
    let started = Instant::now();
    let dialog = rfd::FileDialog::new();
    let chosen = match purpose {
        Purpose::OpenDataset => dialog
            .add_filter("datasets", &["jsonl", "json", "gz", "parquet"])
            .pick_file(),
        _ => dialog.set_file_name(purpose.default_name()).save_file(),
    };
    match chosen {
        Some(path) => Picked::Path(path),
        None if started.elapsed() < TOO_FAST => Picked::Failed(
            "the system file dialog could not open (no xdg desktop portal or zenity answered); \
             type the path instead"
                .to_string(),
        ),
        None => Picked::Cancelled,
    }
}

/// The app's own path window: a text field and a button.
#[derive(Debug, Clone, PartialEq)]
pub struct PathPrompt {
    pub purpose: Purpose,
    pub text: String,
}

impl PathPrompt {
    pub fn new(purpose: Purpose, folder: Option<&Path>) -> PathPrompt {
        let text = match folder {
            Some(dir) => dir.join(purpose.default_name()).display().to_string(),
            None => purpose.default_name().to_string(),
        };
        PathPrompt { purpose, text }
    }

    /// Draws the window; returns the path once confirmed, and clears `open` when closed.
    pub fn ui(&mut self, ctx: &egui::Context, open: &mut bool) -> Option<PathBuf> {
        let mut chosen = None;
        let mut keep = true;
        egui::Window::new(self.purpose.title())
            .collapsible(false)
            .open(&mut keep)
            .show(ctx, |ui| {
                ui.label("Path:");
                let field = ui.add(
                    egui::TextEdit::singleline(&mut self.text)
                        .desired_width(480.0)
                        .hint_text("/path/to/file"),
                );
                let entered = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                ui.horizontal(|ui| {
                    let go = ui.button(self.purpose.button()).clicked() || entered;
                    if go && !self.text.trim().is_empty() {
                        chosen = Some(PathBuf::from(self.text.trim()));
                    }
                    if ui.button("Cancel").clicked() {
                        *open = false;
                    }
                });
            });
        if !keep || chosen.is_some() {
            *open = false;
        }
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_bus_and_no_zenity_means_no_dialog() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().as_os_str().to_os_string();
        let none = |k: &str| (k == "PATH").then(|| empty.clone());
        let why = unavailable(&none).expect("nothing can open a dialog");
        assert!(why.contains("zenity") && why.contains("portal"), "{why}");

        let bus = |k: &str| match k {
            "DBUS_SESSION_BUS_ADDRESS" => Some(OsString::from("unix:path=/run/bus")),
            "PATH" => Some(empty.clone()),
            _ => None,
        };
        assert_eq!(unavailable(&bus), None);

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let zenity = dir.path().join("zenity");
            std::fs::write(&zenity, "#!/bin/sh\n").expect("write");
            // Not executable yet: still no dialog.
            assert!(unavailable(&none).is_some());
            std::fs::set_permissions(&zenity, std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
            assert_eq!(unavailable(&none), None);
        }
    }
}
