//! What the judges said about the current item: one card per judgment (verdict, strength, the
//! critique as structured fields when the output has them, raw text on demand), the panel's
//! consensus, and the "Run a judge" box whose critique streams in field by field.

use crate::critique::{Critique, CritiqueParser};
use crate::dataset::Judgment;
use crate::engine::catalogue;
use crate::engine::device::DeviceChoice;
use crate::gui::runner::Runner;
use crate::gui::session::Session;
use crate::gui::settings::Settings;
use crate::gui::theme;
use crate::prompts::Library;
use crate::verdict::OutputFormat;
use std::collections::HashSet;

/// A judgment's critique with the output length it was parsed from.
type ParsedOutput = (usize, Critique);

#[derive(Default)]
pub struct Judges {
    /// Cards showing their raw output, by (item, judge, swapped).
    raw: HashSet<(String, String, bool)>,
    templates: Option<Vec<String>>,
    /// The parsed critiques of the item on screen, by judgment index: parsing every output on
    /// every frame would cost more than drawing it. Keyed by item and output length, so a new
    /// item or a new judgment re-parses.
    parsed: Option<(String, Vec<Option<ParsedOutput>>)>,
}

/// Draws the fields of a critique with their state marks.
pub fn critique_fields(ui: &mut egui::Ui, critique: &Critique) {
    for f in critique.fields.iter().filter(|f| !f.superseded) {
        ui.horizontal_wrapped(|ui| {
            ui.label(theme::field_mark(f.state))
                .on_hover_text(format!("{:?}", f.state));
            ui.strong(&f.key);
        });
        if !f.text.is_empty() {
            ui.label(&f.text);
        }
    }
}

impl Judges {
    /// Returns true when Run was pressed.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        session: &mut Session,
        runner: &mut Runner,
        settings: &mut Settings,
        blocked: Option<&str>,
    ) -> bool {
        let mut run = false;
        egui::ScrollArea::vertical()
            .id_salt("judges")
            .auto_shrink(false)
            .show(ui, |ui| {
                run = self.run_box(ui, runner, settings, blocked);
                ui.separator();
                let Some(index) = session.current else {
                    return;
                };
                let item = session.review.items()[index].clone();
                let consensus = session.review.consensus()[index].clone();
                ui.horizontal(|ui| {
                    ui.heading("Judges");
                    ui.label(format!("({})", item.judgments.len()));
                });
                ui.horizontal_wrapped(|ui| {
                    ui.label("Consensus:");
                    ui.label(theme::outcome_text(
                        consensus.outcome.map_or("none", |o| o.label()),
                        consensus.outcome,
                    ));
                    ui.label(format!(
                        "votes A {} · B {} · tie {}",
                        consensus.counts.a, consensus.counts.b, consensus.counts.tie
                    ));
                });
                for d in &consensus.disputes {
                    ui.colored_label(theme::DISPUTE, d.describe());
                }
                if item.judgments.is_empty() {
                    ui.label(egui::RichText::new("No judgments yet: run a judge above.").weak());
                }
                for (n, j) in item.judgments.iter().enumerate() {
                    ui.push_id(n, |ui| self.card(ui, &item.id, n, j));
                }
            });
        run
    }

    fn critique(&mut self, item: &str, index: usize, output: &str) -> &Critique {
        if self.parsed.as_ref().is_none_or(|(i, _)| i != item) {
            self.parsed = Some((item.to_string(), Vec::new()));
        }
        let (_, list) = self.parsed.as_mut().expect("invariant: set just above");
        if list.len() <= index {
            list.resize_with(index + 1, || None);
        }
        let slot = &mut list[index];
        if slot.as_ref().is_none_or(|(len, _)| *len != output.len()) {
            let mut parser = CritiqueParser::new(OutputFormat::Auto);
            parser.feed(output.as_bytes());
            *slot = Some((output.len(), parser.finish()));
        }
        &slot.as_ref().expect("invariant: filled just above").1
    }

    fn card(&mut self, ui: &mut egui::Ui, item: &str, index: usize, j: &Judgment) {
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.horizontal_wrapped(|ui| {
                ui.strong(&j.judge);
                if j.swapped {
                    ui.label(egui::RichText::new("B/A order").small()).on_hover_text(
                        "judged with the responses swapped; the verdict is shown for the item's own A and B",
                    );
                }
                match j.verdict {
                    // A graded preference (AlpacaEval's weighted annotators) is shown beside the
                    // side it leans to: "B (0.93)".
                    Some(v) => match j.preference {
                        Some(p) => {
                            let text = format!("{} ({p:.2})", v.label());
                            ui.label(theme::outcome_text(&text, Some(v.outcome)))
                                .on_hover_text("graded preference for B: 0 = A, 0.5 = tie, 1 = B");
                        }
                        None => {
                            ui.label(theme::outcome_text(v.label(), Some(v.outcome)));
                        }
                    },
                    None => {
                        ui.colored_label(theme::DISPUTE, "no verdict");
                    }
                }
            });
            if let Some(run) = run_summary(&j.run) {
                ui.label(egui::RichText::new(run).small().weak());
            }
            if let Some(p) = &j.problem {
                ui.label(egui::RichText::new(p.describe()).small().color(theme::DISPUTE));
            }
            if let Some(output) = &j.output {
                let critique = self.critique(item, index, output);
                critique_fields(ui, critique);
                if let Some(rule) = critique.rule {
                    ui.label(
                        egui::RichText::new(format!("read by: {}", rule.describe()))
                            .small()
                            .weak(),
                    )
                    .on_hover_text("the rule that decided the verdict when the output was read (see `arbiter parse`)");
                } else if let Some(labels) = &critique.conflicting {
                    ui.label(
                        egui::RichText::new(format!("conflicting labels: {labels}"))
                            .small()
                            .color(theme::DISPUTE),
                    );
                }
                let key = (item.to_string(), j.judge.clone(), j.swapped);
                let mut show_raw = self.raw.contains(&key);
                if ui.toggle_value(&mut show_raw, "raw output").changed() {
                    if show_raw {
                        self.raw.insert(key.clone());
                    } else {
                        self.raw.remove(&key);
                    }
                }
                if show_raw {
                    ui.add(egui::TextEdit::multiline(&mut output.as_str()).code_editor().desired_width(f32::INFINITY));
                }
            }
        });
    }

    /// `blocked`: why Run must wait (a batch run holds the engine).
    fn run_box(
        &mut self,
        ui: &mut egui::Ui,
        runner: &mut Runner,
        settings: &mut Settings,
        blocked: Option<&str>,
    ) -> bool {
        let mut run = false;
        ui.heading("Run a judge");
        egui::Grid::new("run").num_columns(2).show(ui, |ui| {
            let label = ui.label("Model");
            ui.horizontal(|ui| {
                ui.add(egui::TextEdit::singleline(&mut settings.model).desired_width(220.0))
                    .labelled_by(label.id)
                    .on_hover_text(
                        "a catalogue name, a hub id owner/name, a model folder or a .gguf file",
                    );
            });
            ui.end_row();
            ui.label("");
            ui.horizontal(|ui| {
                egui::ComboBox::new("catalogue", "catalogue")
                    .selected_text("pick")
                    .show_ui(ui, |ui| {
                        for e in catalogue::CATALOGUE {
                            ui.selectable_value(
                                &mut settings.model,
                                e.repo.to_string(),
                                e.short_name,
                            );
                        }
                    });
                if ui.small_button("file…").clicked() {
                    if let Some(p) = rfd::FileDialog::new()
                        .add_filter("GGUF", &["gguf"])
                        .pick_file()
                    {
                        settings.model = p.display().to_string();
                    }
                }
            });
            ui.end_row();
            ui.label("");
            let templates = self.templates.get_or_insert_with(|| {
                Library::load()
                    .map(|l| {
                        l.list()
                            .into_iter()
                            .filter(|t| t.kind == crate::prompts::TemplateKind::Pairwise)
                            .map(|t| t.name)
                            .collect()
                    })
                    .unwrap_or_default()
            });
            egui::ComboBox::new("template", "template")
                .selected_text(settings.template.clone())
                .show_ui(ui, |ui| {
                    for t in templates.iter() {
                        ui.selectable_value(&mut settings.template, t.clone(), t);
                    }
                });
            ui.end_row();
            ui.label("");
            egui::ComboBox::new("device", "device")
                .selected_text(settings.device.clone())
                .show_ui(ui, |ui| {
                    for d in DeviceChoice::built() {
                        ui.selectable_value(&mut settings.device, d.to_string(), d);
                    }
                });
            ui.end_row();
            let label = ui.label("Max new tokens");
            ui.add(egui::DragValue::new(&mut settings.max_new_tokens).range(16..=8192))
                .labelled_by(label.id);
            ui.end_row();
            ui.label("");
            ui.checkbox(&mut settings.constrain, "Constrain to the template's grammar")
                .on_hover_text(
                    "Only tokens that keep the answer in the template's shape are sampled: every field is filled and the verdict always fits in the token budget",
                );
            ui.end_row();
        });
        ui.horizontal(|ui| {
            if runner.is_busy() {
                if ui.button("Stop (Esc)").clicked() {
                    runner.stop();
                }
            } else if ui
                .add_enabled(blocked.is_none(), egui::Button::new("Run on this item (r)"))
                .on_disabled_hover_text(blocked.unwrap_or_default())
                .clicked()
            {
                run = true;
            }
            if let Some(info) = &runner.loaded {
                ui.label(
                    egui::RichText::new(format!(
                        "{} · {} · {}",
                        info.name, info.precision, info.device
                    ))
                    .small(),
                );
            }
        });
        if let Some(load) = &runner.loading {
            match load.fraction() {
                Some(f) => {
                    ui.add(egui::ProgressBar::new(f).text(load.describe()));
                }
                None => {
                    ui.horizontal(|ui| {
                        ui.spinner();
                        ui.label(load.describe());
                    });
                }
            }
        }
        if let Some(active) = &runner.active {
            egui::Frame::group(ui.style()).show(ui, |ui| {
                ui.set_width(ui.available_width());
                ui.horizontal_wrapped(|ui| {
                    ui.strong(active.judge());
                    ui.label(format!("on {}", active.item));
                    ui.spinner();
                    let rate = active
                        .rate()
                        .map_or("…".to_string(), |r| format!("{r:.1} tok/s"));
                    ui.label(format!(
                        "{} prompt tokens · {rate} · {:.1} s",
                        active.prompt_tokens,
                        active.elapsed_s()
                    ));
                    if active.stopping {
                        ui.label("stopping…");
                    }
                });
                let critique = active.critique();
                critique_fields(ui, critique);
                if let Some(v) = critique.verdict {
                    ui.horizontal(|ui| {
                        ui.label("Verdict:");
                        ui.label(theme::outcome_text(v.label(), Some(v.outcome)));
                    });
                }
            });
        } else if let Some(last) = &runner.last {
            let verdict = last
                .verdict
                .map_or("no verdict".to_string(), |v| v.label().to_string());
            let saved = if last.saved {
                "saved to the journal"
            } else {
                "not saved"
            };
            ui.label(format!(
                "{} on {}: {verdict}, {} tokens at {:.1} tok/s ({}), {saved}",
                last.judge,
                last.item,
                last.tokens,
                last.tokens_per_s,
                last.finish.label()
            ));
        }
        run
    }
}

/// One line on how a judgment was produced, from its run metadata: model, precision and
/// device, sampling, tokens and time. `None` when nothing is known (judgments from a file).
fn run_summary(run: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    let text = |k: &str| run.get(k).and_then(|v| v.as_str());
    let mut parts = Vec::new();
    if let Some(model) = text("model") {
        let how: Vec<&str> = [text("precision"), text("device")]
            .into_iter()
            .flatten()
            .collect();
        if how.is_empty() {
            parts.push(model.to_string());
        } else {
            parts.push(format!("{model} ({})", how.join(", ")));
        }
    }
    if let Some(s) = run.get("sampling") {
        let temperature = s.get("temperature").and_then(|v| v.as_f64()).unwrap_or(0.0);
        let mut how = if temperature == 0.0 {
            "greedy".to_string()
        } else {
            format!("temperature {temperature}")
        };
        if let Some(p) = s.get("repeat_penalty").and_then(|v| v.as_f64()) {
            how.push_str(&format!(", repeat penalty {p:.2}"));
        }
        match text("constrain") {
            Some("grammar") => how.push_str(", constrained"),
            Some(mode @ ("json_schema" | "json_object")) => how.push_str(&format!(", {mode}")),
            _ => {}
        }
        parts.push(how);
    }
    let timing = run.get("timing");
    let number = |k: &str| timing.and_then(|t| t.get(k)).and_then(|v| v.as_f64());
    if let Some(n) = number("generated_tokens") {
        parts.push(format!("{n:.0} tokens"));
    }
    if let Some(ms) = number("total_ms") {
        parts.push(format!("{:.1} s", ms / 1000.0));
    }
    if let Some(rate) = number("decode_tokens_per_s").filter(|r| *r > 0.0) {
        parts.push(format!("{rate:.0} tok/s"));
    }
    (!parts.is_empty()).then(|| parts.join(" · "))
}

#[cfg(test)]
mod tests {
    use super::run_summary;
    use serde_json::json;

    #[test]
    fn the_run_line_names_model_sampling_tokens_and_time() {
        let run = json!({
            "model": "SmolLM2-135M-Instruct.Q4_1.gguf", "precision": "Q4_1", "device": "cpu",
            "sampling": {"temperature": 0.0, "seed": 1, "max_new_tokens": 300, "repeat_penalty": 1.15},
            "timing": {"generated_tokens": 45, "total_ms": 4100.0, "decode_tokens_per_s": 52.4},
        });
        let line = run_summary(run.as_object().unwrap()).unwrap();
        assert_eq!(
            line,
            "SmolLM2-135M-Instruct.Q4_1.gguf (Q4_1, cpu) · greedy, repeat penalty 1.15 · 45 tokens · 4.1 s · 52 tok/s"
        );
        let mut constrained = run.clone();
        constrained["constrain"] = json!("grammar");
        let line = run_summary(constrained.as_object().unwrap()).unwrap();
        assert!(
            line.contains("greedy, repeat penalty 1.15, constrained ·"),
            "{line}"
        );
        assert_eq!(run_summary(&Default::default()), None);
    }
}
