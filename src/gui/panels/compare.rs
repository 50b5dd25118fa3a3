//! The item itself: the question or whole conversation, then the two responses in columns of
//! equal width, rendered as markdown. "Swap sides" only moves the columns: each keeps its own
//! A or B label, colour and model name, so a swapped view never confuses which is which.

use crate::dataset::{Item, Message, Response};
use crate::gui::session::Session;
use crate::gui::settings::Blind;
use crate::gui::theme;
use crate::verdict::Outcome;
use egui_commonmark::{CommonMarkCache, CommonMarkViewer};

#[derive(Default)]
pub struct Compare {
    md: CommonMarkCache,
}

fn turn(ui: &mut egui::Ui, md: &mut CommonMarkCache, m: &Message) {
    ui.label(egui::RichText::new(m.role.to_uppercase()).small().weak());
    CommonMarkViewer::new().show(ui, md, &m.content);
}

impl Compare {
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        session: &mut Session,
        blind: Blind,
        swapped: &mut bool,
        focus_note: &mut bool,
    ) {
        let Some(index) = session.current else {
            ui.centered_and_justified(|ui| ui.label("No item matches the filter."));
            return;
        };
        let item = session.review.items()[index].clone();
        let consensus = session.review.consensus()[index].clone();
        let (hide_decisions, hide_judges) = session.hidden(index, blind);
        let decision = session.review.my_decision(&item.id).cloned();
        let others: Vec<crate::journal::Decision> = session
            .review
            .human_decisions(&item.id)
            .into_iter()
            .filter(|d| Some(d.annotator.as_str()) != session.review.annotator())
            .cloned()
            .collect();
        let escalated = session.review.is_escalated(index);
        let settled = session
            .review
            .decision(&item.id)
            .filter(|d| d.adjudicator)
            .cloned();
        ui.horizontal_wrapped(|ui| {
            ui.heading(&item.id);
            if let Some(c) = &item.category {
                ui.label(egui::RichText::new(c).weak());
            }
            if let Some(l) = &item.language {
                ui.label(egui::RichText::new(l).weak());
            }
            ui.separator();
            if hide_judges {
                ui.label(egui::RichText::new("MoJ hidden until you decide").weak());
            } else {
                ui.label("MoJ:");
                ui.label(theme::outcome_text(
                    consensus.outcome.map_or("no consensus", |o| o.label()),
                    consensus.outcome,
                ));
            }
            if consensus.is_dispute() && !hide_judges {
                let reasons: Vec<&str> = consensus.disputes.iter().map(|d| d.name()).collect();
                ui.colored_label(theme::DISPUTE, format!("dispute: {}", reasons.join(", ")));
            }
            ui.toggle_value(swapped, "swap sides (s)");
        });
        self.decision_bar(ui, session, decision.as_ref(), focus_note);
        if !others.is_empty() {
            ui.horizontal_wrapped(|ui| {
                if hide_decisions {
                    ui.label(
                        egui::RichText::new(format!(
                            "{} other decision(s) hidden until you decide (blind review)",
                            others.len()
                        ))
                        .weak(),
                    );
                    return;
                }
                ui.label("Other decisions:");
                for d in &others {
                    let role = if d.adjudicator { " (adjudicator)" } else { "" };
                    ui.label(theme::outcome_text(
                        &format!("{}{role} {}", d.annotator, d.verdict.label()),
                        Some(d.verdict),
                    ));
                }
                match &settled {
                    Some(d) => {
                        ui.colored_label(
                            theme::SAVED,
                            format!("settled: {} by {}", d.verdict.label(), d.annotator),
                        );
                    }
                    None if escalated => {
                        ui.colored_label(
                            theme::DISPUTE,
                            "escalated: the annotators disagree; an adjudicator settles it",
                        );
                    }
                    None => {}
                }
            });
        }
        ui.separator();
        egui::ScrollArea::vertical()
            .id_salt("compare")
            .auto_shrink(false)
            .show(ui, |ui| {
                egui::CollapsingHeader::new(if item.context.len() > 1 {
                    "Conversation"
                } else {
                    "Question"
                })
                .default_open(true)
                .show(ui, |ui| {
                    for m in &item.context {
                        turn(ui, &mut self.md, m);
                    }
                });
                ui.add_space(6.0);
                let sides = if *swapped {
                    [
                        ("B", &item.response_b, Outcome::B),
                        ("A", &item.response_a, Outcome::A),
                    ]
                } else {
                    [
                        ("A", &item.response_a, Outcome::A),
                        ("B", &item.response_b, Outcome::B),
                    ]
                };
                ui.columns(2, |cols| {
                    for (col, (label, response, outcome)) in cols.iter_mut().zip(sides) {
                        self.response(col, &item, label, response, outcome, blind.models);
                    }
                });
            });
    }

    fn response(
        &mut self,
        ui: &mut egui::Ui,
        item: &Item,
        label: &str,
        response: &Response,
        outcome: Outcome,
        blind: bool,
    ) {
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.horizontal_wrapped(|ui| {
                ui.label(
                    theme::outcome_text(&format!("Response {label}"), Some(outcome)).heading(),
                );
                if !blind && !response.model.is_empty() {
                    ui.label(egui::RichText::new(&response.model).weak());
                }
                ui.label(
                    egui::RichText::new(format!("{} chars", response.text.chars().count()))
                        .small()
                        .weak(),
                );
            });
            for m in &response.prior_turns {
                turn(ui, &mut self.md, m);
            }
            ui.push_id((&item.id, label), |ui| {
                CommonMarkViewer::new().show(ui, &mut self.md, &response.text);
            });
        });
    }

    fn decision_bar(
        &mut self,
        ui: &mut egui::Ui,
        session: &mut Session,
        decision: Option<&crate::journal::Decision>,
        focus_note: &mut bool,
    ) {
        ui.horizontal_wrapped(|ui| {
            ui.label("Your verdict:");
            let mut chosen = None;
            for (key, outcome, text) in [
                ("1", Outcome::A, "A better"),
                ("2", Outcome::B, "B better"),
                ("3", Outcome::Tie, "tie"),
            ] {
                let selected = decision.is_some_and(|d| d.verdict == outcome);
                if ui
                    .selectable_label(
                        selected,
                        theme::outcome_text(&format!("{key}  {text}"), Some(outcome)),
                    )
                    .clicked()
                {
                    chosen = Some(outcome);
                }
            }
            let undo = ui
                .add_enabled(decision.is_some(), egui::Button::new("u  undo"))
                .clicked();
            let note = ui.add(
                egui::TextEdit::singleline(&mut session.note)
                    .hint_text("note for the decision (Enter)")
                    .desired_width(220.0),
            );
            if std::mem::take(focus_note) {
                note.request_focus();
            }
            if note.has_focus() && ui.input(|i| i.key_pressed(egui::Key::Escape)) {
                note.surrender_focus();
            }
            match decision {
                Some(d) => {
                    let by = if d.annotator.is_empty() {
                        String::new()
                    } else if d.adjudicator {
                        format!(" by {} (adjudicator)", d.annotator)
                    } else {
                        format!(" by {}", d.annotator)
                    };
                    ui.colored_label(
                        theme::SAVED,
                        format!("decided {}{by} · saved", d.verdict.label()),
                    );
                    if let Some(n) = &d.note {
                        ui.label(egui::RichText::new(format!("“{n}”")).italics());
                    }
                }
                None => {
                    ui.label(egui::RichText::new("undecided").weak());
                }
            }
            let result = match (chosen, undo) {
                (Some(o), _) => session.decide(o).map(|_| ()),
                (None, true) => session.undo(),
                _ => Ok(()),
            };
            match result {
                // Without a name the app asks for one (`Session::pending`), then records it.
                Ok(()) | Err(crate::review::ReviewError::NoAnnotator) => {}
                Err(e) => {
                    ui.colored_label(ui.visuals().error_fg_color, format!("not saved: {e}"));
                }
            }
        });
    }
}
