//! The judge models: the catalogue with sizes and memory estimates against this machine's free
//! memory, what is in the hub cache (size on disk), download and delete (on a worker thread),
//! and the devices this build can use.

use crate::engine::catalogue::{self, Dtype, DEFAULT_CONTEXT};
use crate::engine::device::{available_memory, DeviceChoice};
use crate::engine::hub::{format_bytes, CachedModel, Hub, HubSettings, RepoId};
use crate::gui::runner::Runner;
use crate::gui::settings::Settings;
use std::sync::mpsc::{self, Receiver};

#[derive(Default)]
pub struct Models {
    cached: Option<Result<Vec<CachedModel>, String>>,
    /// Free memory, read with the cache listing (not every frame).
    free: Option<u64>,
    /// Set by `pin_free_memory`: the figure shown instead of this machine's.
    pinned_free: Option<Option<u64>>,
    task: Option<(String, Receiver<Result<String, String>>)>,
    message: Option<String>,
}

impl Models {
    fn refresh(&mut self) {
        self.cached = Some(
            Hub::new(HubSettings::from_env())
                .cached_models()
                .map_err(|e| e.to_string()),
        );
        self.free = match self.pinned_free {
            Some(pinned) => pinned,
            None => available_memory(&candle_core::Device::Cpu),
        };
    }

    /// Shows `free` as the free memory instead of this machine's figure, so that a picture of
    /// the window is the same on every machine (the app's snapshot tests).
    pub fn pin_free_memory(&mut self, free: Option<u64>) {
        self.pinned_free = Some(free);
        self.cached = None;
    }

    fn spawn(
        &mut self,
        what: String,
        job: impl FnOnce() -> Result<String, String> + Send + 'static,
    ) {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(job());
        });
        self.task = Some((what, rx));
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, settings: &mut Settings, runner: &Runner) {
        if let Some((_, rx)) = &self.task {
            if let Ok(result) = rx.try_recv() {
                self.message = Some(result.unwrap_or_else(|e| e));
                self.task = None;
                self.cached = None;
            }
        }
        if self.cached.is_none() {
            self.refresh();
        }
        let free = self.free;
        ui.horizontal(|ui| {
            ui.label(format!(
                "Devices in this build: {}",
                DeviceChoice::built().join(", ")
            ));
            ui.separator();
            ui.label(format!(
                "free memory: {}",
                free.map_or("unknown".into(), format_bytes)
            ));
            if let Some(info) = &runner.loaded {
                ui.separator();
                ui.label(format!(
                    "loaded: {} ({}, {})",
                    info.name, info.precision, info.device
                ))
                // Which decoder code runs it, and why, on hover.
                .on_hover_text(format!("decoder: {}", info.route));
            }
        });
        if let Some(info) = &runner.loaded {
            ui.label(format!("decoder: {}", info.route));
        }
        if let Some((what, _)) = &self.task {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(format!(
                    "{what}… (progress in the judge panel when run from there)"
                ));
            });
        }
        if let Some(m) = &self.message {
            ui.label(m);
        }
        ui.heading("Catalogue");
        let cached: Vec<CachedModel> = match &self.cached {
            Some(Ok(c)) => c.clone(),
            _ => Vec::new(),
        };
        egui::Grid::new("catalogue").striped(true).show(ui, |ui| {
            for h in [
                "judge",
                "hub id",
                "download",
                "memory (bf16, 8k ctx)",
                "cached",
                "",
            ] {
                ui.strong(h);
            }
            ui.end_row();
            for e in catalogue::CATALOGUE {
                ui.label(e.short_name);
                ui.label(e.repo);
                ui.label(format_bytes(e.download_bytes()));
                let need = e.memory(Dtype::Bf16, DEFAULT_CONTEXT).total();
                let fits = free.is_none_or(|f| need <= f);
                let text = format!(
                    "{}{}",
                    format_bytes(need),
                    if fits { "" } else { " (more than free)" }
                );
                ui.label(text);
                let here = cached
                    .iter()
                    .find(|c| c.repo.to_string().eq_ignore_ascii_case(e.repo));
                ui.label(here.map_or("—".to_string(), |c| format_bytes(c.size_on_disk)));
                ui.horizontal(|ui| {
                    if ui.small_button("use").clicked() {
                        settings.model = e.repo.to_string();
                    }
                    let busy = self.task.is_some();
                    if here.is_none()
                        && ui
                            .add_enabled(!busy, egui::Button::new("download").small())
                            .clicked()
                    {
                        let repo = e.repo_id();
                        self.spawn(format!("downloading {repo}"), move || {
                            Hub::new(HubSettings::from_env())
                                .download(&repo, None, &mut |_| {})
                                .map(|m| format!("{repo} is ready in {}", m.dir.display()))
                                .map_err(|e| e.to_string())
                        });
                    }
                    if here.is_some()
                        && ui
                            .add_enabled(!busy, egui::Button::new("delete").small())
                            .clicked()
                    {
                        let repo = e.repo_id();
                        self.spawn(format!("deleting {repo}"), move || delete(&repo));
                    }
                });
                ui.end_row();
            }
        });
        ui.heading("In the hub cache");
        match &self.cached {
            Some(Err(e)) => {
                ui.colored_label(ui.visuals().error_fg_color, e);
            }
            _ if cached.is_empty() => {
                ui.label("nothing cached yet");
            }
            _ => {
                egui::Grid::new("cache").striped(true).show(ui, |ui| {
                    for c in &cached {
                        ui.label(c.repo.to_string());
                        ui.label(format_bytes(c.size_on_disk));
                        if ui.small_button("use").clicked() {
                            settings.model = c.repo.to_string();
                        }
                        ui.end_row();
                    }
                });
            }
        }
        if ui.button("refresh").clicked() {
            self.refresh();
        }
    }
}

fn delete(repo: &RepoId) -> Result<String, String> {
    Hub::new(HubSettings::from_env())
        .delete(repo)
        .map(|freed| format!("removed {repo} ({} freed)", format_bytes(freed)))
        .map_err(|e| e.to_string())
}
