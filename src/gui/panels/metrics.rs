//! The judges scored against the final labels (human decisions first): accuracy, the
//! JudgerBenchV2 score, the AlpacaEval win rate, agreement (Cohen's kappa as a heat map, Fleiss' kappa,
//! Krippendorff's alpha), position
//! consistency and the per-model win counts, as charts with the numbers beside them; and how
//! far the annotators agree with each other.

use crate::gui::session::Session;
use crate::metrics::{Report, ScoreOptions};
use egui_plot::{Bar, BarChart, GridMark, Plot};

#[derive(Default)]
pub struct Metrics {
    /// The report and the session generation it was computed at.
    cached: Option<(u64, Result<Report, String>)>,
}

/// A figure that is already in percent.
fn pct(x: Option<f64>) -> String {
    x.map_or("—".into(), |v| format!("{v:.1}"))
}

/// Bar-chart ticks named after the bars (judges, models), only at whole positions.
fn names_axis(names: Vec<String>) -> impl Fn(GridMark, &std::ops::RangeInclusive<f64>) -> String {
    move |mark, _| {
        let i = mark.value.round();
        if (mark.value - i).abs() > 1e-6 || i < 0.0 {
            return String::new();
        }
        names.get(i as usize).cloned().unwrap_or_default()
    }
}

fn num(x: Option<f64>) -> String {
    x.map_or("—".into(), |v| format!("{v:.2}"))
}

/// Colour of a kappa in [-1, 1]: red for disagreement, white for chance, green for agreement.
fn kappa_color(k: Option<f64>) -> egui::Color32 {
    match k {
        None => egui::Color32::from_gray(90),
        Some(k) if k >= 0.0 => {
            let t = k.min(1.0) as f32;
            egui::Color32::from_rgb(
                (230.0 - 170.0 * t) as u8,
                (230.0 - 50.0 * t) as u8,
                (230.0 - 140.0 * t) as u8,
            )
        }
        Some(k) => {
            let t = (-k).min(1.0) as f32;
            egui::Color32::from_rgb(230, (230.0 - 160.0 * t) as u8, (230.0 - 160.0 * t) as u8)
        }
    }
}

/// The JudgeBench (ScalerLab) scores: per source group and overall, one row per judge.
fn judge_bench_grid(ui: &mut egui::Ui, jb: &crate::metrics::judge_bench::JudgeBenchReport) {
    ui.heading("JudgeBench");
    ui.label(
        egui::RichText::new(format!(
            "{} labelled pairs; a pair is correct when its right decisions outnumber the flipped ones",
            jb.pairs
        ))
        .weak(),
    );
    egui::Grid::new("judge-bench").striped(true).show(ui, |ui| {
        ui.strong("judge");
        for (group, _) in crate::dataset::judge_bench::GROUPS {
            ui.strong(group);
        }
        ui.strong("overall");
        ui.strong("pairs");
        ui.end_row();
        for j in &jb.judges {
            ui.label(&j.judge);
            for g in &j.groups {
                ui.label(num(g.score));
            }
            ui.strong(num(j.overall.score));
            ui.label(j.overall.pairs.to_string());
            ui.end_row();
        }
    });
}

/// Agreement between the annotators: Cohen's kappa per pair on the items the pair shares,
/// Krippendorff's alpha over everyone.
fn humans_grid(ui: &mut egui::Ui, h: &crate::metrics::agreement::HumanAgreement) {
    ui.heading("Agreement between annotators");
    ui.label(
        egui::RichText::new(format!(
            "{} items decided by two or more people (adjudicators' decisions not counted)",
            h.shared_items
        ))
        .weak(),
    );
    egui::Grid::new("humans").striped(true).show(ui, |ui| {
        ui.strong("annotators");
        ui.strong("shared items");
        ui.strong("agreed");
        ui.strong("Cohen's κ");
        ui.end_row();
        for p in &h.pairs {
            ui.label(format!("{} / {}", p.judge_a, p.judge_b));
            ui.label(p.items.to_string());
            ui.label(p.agreed.to_string());
            ui.colored_label(kappa_color(p.kappa), num(p.kappa));
            ui.end_row();
        }
    });
    ui.label(format!(
        "Krippendorff's α of {}: {} over {} items",
        h.annotators.join(", "),
        num(h.alpha.alpha),
        h.alpha.items
    ));
    ui.separator();
}

impl Metrics {
    fn report(&mut self, session: &Session) -> &Result<Report, String> {
        let generation = session.generation();
        if self.cached.as_ref().is_none_or(|(g, _)| *g != generation) {
            let report = Report::build(
                session.review.items(),
                &session.review.final_labels(),
                &ScoreOptions::default(),
            )
            .map(|mut r| {
                r.humans = session.review.human_agreement();
                r
            })
            .map_err(|e| e.to_string());
            self.cached = Some((generation, report));
        }
        &self
            .cached
            .as_ref()
            .expect("invariant: the report was computed just above")
            .1
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, session: Option<&Session>) {
        let Some(session) = session else {
            ui.label("Open a dataset first.");
            return;
        };
        let report = match self.report(session) {
            Ok(r) => r.clone(),
            Err(e) => {
                ui.colored_label(ui.visuals().error_fg_color, e);
                return;
            }
        };
        egui::ScrollArea::vertical().show(ui, |ui| {
            ui.label(format!(
                "{} items, {} with a final label (A {}, B {}, tie {}).",
                report.items, report.labelled, report.labels.a, report.labels.b, report.labels.tie
            ));
            for w in &report.warnings {
                ui.label(egui::RichText::new(w).weak());
            }
            if let Some(h) = &report.humans {
                humans_grid(ui, h);
            }
            if report.judges.is_empty() {
                ui.label("No judges yet: run one from the judge panel.");
                return;
            }
            ui.heading("Accuracy against the final labels");
            ui.columns(2, |cols| {
                let bars: Vec<Bar> = report
                    .accuracy
                    .iter()
                    .enumerate()
                    .map(|(i, a)| Bar::new(i as f64, a.accuracy.unwrap_or(0.0)).name(&a.judge))
                    .collect();
                // Judge names are long: the bars are numbered, the table beside names them.
                let names = (1..=report.accuracy.len())
                    .map(|i| format!("#{i}"))
                    .collect();
                Plot::new("accuracy")
                    .x_axis_formatter(names_axis(names))
                    .include_y(100.0)
                    .height(160.0)
                    .allow_drag(false)
                    .allow_zoom(false)
                    .allow_scroll(false)
                    .show(&mut cols[0], |p| {
                        p.bar_chart(BarChart::new("accuracy %", bars))
                    });
                egui::Grid::new("acc")
                    .striped(true)
                    .show(&mut cols[1], |ui| {
                        ui.strong("judge");
                        ui.strong("acc %");
                        ui.strong("compared");
                        ui.strong("unreadable");
                        ui.end_row();
                        for (i, a) in report.accuracy.iter().enumerate() {
                            ui.label(format!("#{} {}", i + 1, a.judge));
                            ui.label(pct(a.accuracy));
                            ui.label(a.counts.compared.to_string());
                            ui.label(a.counts.unparsed.to_string());
                            ui.end_row();
                        }
                    });
            });
            if let Some(jb) = &report.judgerbench {
                ui.heading("JudgerBenchV2");
                egui::Grid::new("jb").striped(true).show(ui, |ui| {
                    for h in [
                        "judge",
                        "accuracy",
                        "rank diff",
                        "score diff",
                        "normalized diff",
                        "final",
                    ] {
                        ui.strong(h);
                    }
                    ui.end_row();
                    for j in &jb.judges {
                        ui.label(&j.judge);
                        ui.label(num(j.mean.accuracy));
                        ui.label(num(j.mean.rank_diff));
                        ui.label(num(j.mean.score_diff));
                        ui.label(num(j.mean.normalized_diff));
                        ui.strong(num(j.mean.final_score));
                        ui.end_row();
                    }
                });
            }
            if let Some(jb) = &report.judge_bench {
                judge_bench_grid(ui, jb);
            }
            if let Some(rates) = report.alpaca_eval.as_deref().filter(|w| !w.is_empty()) {
                ui.heading("AlpacaEval win rate (vs. the baseline)");
                egui::Grid::new("alpaca-eval").striped(true).show(ui, |ui| {
                    for h in [
                        "annotator",
                        "model",
                        "baseline",
                        "win rate %",
                        "std err",
                        "wins / base / draws",
                        "discrete %",
                    ] {
                        ui.strong(h);
                    }
                    ui.end_row();
                    for w in rates {
                        ui.label(&w.judge);
                        ui.label(&w.model);
                        ui.label(&w.baseline);
                        ui.strong(num(w.win_rate));
                        ui.label(num(w.standard_error));
                        ui.label(format!("{} / {} / {}", w.n_wins, w.n_wins_base, w.n_draws));
                        ui.label(num(w.discrete_win_rate));
                        ui.end_row();
                    }
                });
            }
            ui.heading("Agreement (Cohen's kappa)");
            self.heat_map(ui, &report);
            if let Some(f) = &report.agreement.fleiss {
                ui.label(format!(
                    "Fleiss' kappa over {} items: {}",
                    f.items,
                    num(f.kappa)
                ));
            }
            if let Some(k) = &report.agreement.krippendorff {
                ui.label(format!(
                    "Krippendorff's alpha (nominal) over {} items: {}",
                    k.items,
                    num(k.alpha)
                ))
                .on_hover_text("unlike Fleiss' kappa, it keeps items where a judge's verdict is missing or unreadable");
            }
            if !report.position_consistency.is_empty() {
                ui.heading("Position consistency (both orders)");
                egui::Grid::new("pc").striped(true).show(ui, |ui| {
                    for h in [
                        "judge",
                        "consistent %",
                        "pairs",
                        "prefers first",
                        "prefers second",
                    ] {
                        ui.strong(h);
                    }
                    ui.end_row();
                    for c in &report.position_consistency {
                        ui.label(&c.judge);
                        ui.label(pct(c.rate));
                        ui.label(c.pairs.to_string());
                        ui.label(c.first_position.to_string());
                        ui.label(c.second_position.to_string());
                        ui.end_row();
                    }
                });
            }
            ui.heading("Win counts by model (final labels)");
            ui.columns(2, |cols| {
                let bars: Vec<Bar> = report
                    .leaderboard
                    .labels
                    .iter()
                    .enumerate()
                    .map(|(i, m)| Bar::new(i as f64, m.wins as f64).name(&m.model))
                    .collect();
                let names = report
                    .leaderboard
                    .labels
                    .iter()
                    .map(|m| m.model.clone())
                    .collect();
                Plot::new("wins")
                    .x_axis_formatter(names_axis(names))
                    .height(160.0)
                    .allow_drag(false)
                    .allow_zoom(false)
                    .allow_scroll(false)
                    .show(&mut cols[0], |p| p.bar_chart(BarChart::new("wins", bars)));
                egui::Grid::new("wins-table")
                    .striped(true)
                    .show(&mut cols[1], |ui| {
                        for h in ["model", "wins", "losses", "ties"] {
                            ui.strong(h);
                        }
                        ui.end_row();
                        for m in &report.leaderboard.labels {
                            ui.label(&m.model);
                            ui.label(m.wins.to_string());
                            ui.label(m.losses.to_string());
                            ui.label(m.ties.to_string());
                            ui.end_row();
                        }
                    });
            });
        });
    }

    fn heat_map(&self, ui: &mut egui::Ui, report: &Report) {
        let judges = &report.judges;
        let kappa = |a: &str, b: &str| -> Option<f64> {
            report
                .agreement
                .cohen
                .iter()
                .find(|p| (p.judge_a == a && p.judge_b == b) || (p.judge_a == b && p.judge_b == a))
                .and_then(|p| p.kappa)
        };
        egui::Grid::new("kappa").spacing([2.0, 2.0]).show(ui, |ui| {
            ui.label("");
            for (i, _) in judges.iter().enumerate() {
                ui.strong(format!("J{}", i + 1));
            }
            ui.end_row();
            for (i, a) in judges.iter().enumerate() {
                ui.label(format!("J{} {a}", i + 1));
                for b in judges {
                    let k = if a == b { Some(1.0) } else { kappa(a, b) };
                    let (rect, resp) =
                        ui.allocate_exact_size(egui::vec2(54.0, 22.0), egui::Sense::hover());
                    ui.painter().rect_filled(rect, 2.0, kappa_color(k));
                    ui.painter().text(
                        rect.center(),
                        egui::Align2::CENTER_CENTER,
                        num(k),
                        egui::FontId::monospace(12.0),
                        egui::Color32::BLACK,
                    );
                    resp.on_hover_text(format!("{a} vs {b}"));
                }
                ui.end_row();
            }
        });
    }
}
