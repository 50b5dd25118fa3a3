//! The item list: filters, search, progress and a virtualized table (only visible rows are
//! laid out, so 100,000 items scroll as smoothly as 100).

use crate::gui::session::{Session, Show};
use crate::gui::settings::Blind;
use crate::gui::theme;
use egui_extras::{Column, TableBuilder};

#[derive(Default)]
pub struct ItemList {
    /// Scroll the table to the current item on the next frame (after keyboard moves).
    last_current: Option<usize>,
}

impl ItemList {
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        session: &mut Session,
        focus_search: &mut bool,
        blind: Blind,
    ) {
        let mut filter = session.filter.clone();
        ui.horizontal(|ui| {
            egui::ComboBox::new("show", "show")
                .selected_text(filter.show.label())
                .show_ui(ui, |ui| {
                    for show in Show::ALL {
                        ui.selectable_value(&mut filter.show, show, show.label());
                    }
                });
            let categories = session.categories();
            egui::ComboBox::new("category", "category")
                .selected_text(
                    filter
                        .category
                        .clone()
                        .unwrap_or_else(|| "every category".into()),
                )
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut filter.category, None, "every category");
                    for c in categories {
                        ui.selectable_value(&mut filter.category, Some(c.clone()), c);
                    }
                });
        });
        ui.horizontal(|ui| {
            let judges = session.judges();
            egui::ComboBox::new("disagrees", "judge")
                .selected_text(match &filter.judge_disagrees {
                    Some(j) => format!("{j} disagrees"),
                    None => "any judge".into(),
                })
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut filter.judge_disagrees, None, "any judge");
                    for j in judges {
                        let label = format!("{j} disagrees with the label");
                        ui.selectable_value(&mut filter.judge_disagrees, Some(j.clone()), label);
                    }
                });
            let search = ui.add(
                egui::TextEdit::singleline(&mut filter.search)
                    .hint_text("search (/)")
                    .desired_width(f32::INFINITY),
            );
            if std::mem::take(focus_search) {
                search.request_focus();
            }
            if search.has_focus() && ui.input(|i| i.key_pressed(egui::Key::Escape)) {
                search.surrender_focus();
            }
        });
        if filter != session.filter {
            session.set_filter(filter);
        }
        let (decided, disputes) = session.progress();
        let shown = session.visible().len();
        let position = session
            .position()
            .map_or("—".to_string(), |p| (p + 1).to_string());
        ui.label(format!(
            "{position} of {shown} shown · {decided} of {disputes} disputes decided"
        ));
        ui.separator();
        self.table(ui, session, blind);
    }

    fn table(&mut self, ui: &mut egui::Ui, session: &mut Session, blind: Blind) {
        let row_height = ui.text_style_height(&egui::TextStyle::Body) + 4.0;
        let scroll_to = if session.current != self.last_current {
            self.last_current = session.current;
            session.position()
        } else {
            None
        };
        let mut clicked = None;
        let mut table = TableBuilder::new(ui)
            .striped(true)
            .sense(egui::Sense::click())
            .column(Column::initial(90.0).at_least(50.0).clip(true))
            .column(Column::initial(90.0).clip(true))
            .column(Column::initial(110.0).clip(true))
            .column(Column::initial(60.0))
            .column(Column::remainder().at_least(50.0))
            .min_scrolled_height(0.0);
        if let Some(row) = scroll_to {
            table = table.scroll_to_row(row, Some(egui::Align::Center));
        }
        let visible = session.visible().to_vec();
        let current = session.current;
        table
            .header(row_height, |mut h| {
                for title in ["id", "category", "models", "MoJ", "decision"] {
                    h.col(|ui| {
                        ui.strong(title);
                    });
                }
            })
            .body(|body| {
                body.rows(row_height, visible.len(), |mut row| {
                    let index = visible[row.index()];
                    let item = &session.review.items()[index];
                    let consensus = &session.review.consensus()[index];
                    let (hide_decisions, hide_judges) = session.hidden(index, blind);
                    row.set_selected(Some(index) == current);
                    row.col(|ui| {
                        ui.label(&item.id);
                    });
                    row.col(|ui| {
                        ui.label(item.category.as_deref().unwrap_or(""));
                    });
                    row.col(|ui| {
                        if !blind.models {
                            ui.label(format!(
                                "{} / {}",
                                item.response_a.model, item.response_b.model
                            ));
                        }
                    });
                    row.col(|ui| {
                        if hide_judges {
                            return;
                        }
                        // One line: the badge never wraps under the label.
                        ui.horizontal(|ui| {
                            let label = consensus.outcome.map_or("—", |o| o.label());
                            ui.label(theme::outcome_text(label, consensus.outcome));
                            if consensus.is_dispute() {
                                let reasons: Vec<&str> =
                                    consensus.disputes.iter().map(|d| d.name()).collect();
                                ui.colored_label(theme::DISPUTE, "•")
                                    .on_hover_text(reasons.join(", "));
                            }
                        });
                    });
                    row.col(|ui| {
                        // Blind review shows only this person's own decision.
                        let shown = if hide_decisions {
                            session.review.my_decision(&item.id)
                        } else {
                            session
                                .review
                                .decision(&item.id)
                                .or_else(|| session.review.my_decision(&item.id))
                        };
                        ui.horizontal(|ui| {
                            if let Some(d) = shown {
                                ui.label(theme::outcome_text(d.verdict.label(), Some(d.verdict)));
                            }
                            if !hide_decisions
                                && session.review.is_escalated(index)
                                && !session.review.is_adjudicated(index)
                            {
                                ui.colored_label(theme::DISPUTE, "⚑")
                                    .on_hover_text("escalated: the annotators disagree");
                            }
                        });
                    });
                    if row.response().clicked() {
                        clicked = Some(index);
                    }
                });
            });
        if let Some(i) = clicked {
            session.select(i);
            self.last_current = Some(i);
        }
    }
}
