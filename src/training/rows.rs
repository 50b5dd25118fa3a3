//! The rows written, one JSON object per line, in the conversational layouts TRL documents
//! for its trainers: `messages` for SFT (language modelling), `prompt`/`chosen`/`rejected`
//! lists of messages for DPO and reward modelling (preference with an explicit prompt). The
//! columns after those are metadata the trainers ignore.

use super::PromptSource;
use crate::dataset::Message;
use crate::moj::LabelSource;
use crate::verdict::{Order, Outcome};
use serde::{Deserialize, Serialize};

/// A critique whose verdict matches the item's final label, as a conversation: the messages
/// the judge was sent, then its output as the assistant turn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SftRow {
    pub messages: Vec<Message>,
    pub item: String,
    pub judge: String,
    pub order: Order,
    pub template: String,
    /// The judge's verdict as it reads in the item's order (`A>B`, `tie`...).
    pub verdict: String,
    pub label: Outcome,
    pub label_source: LabelSource,
    pub prompt_source: PromptSource,
}

/// A critique that matches the final label (`chosen`) and one that does not (`rejected`), for
/// the same prompt: the same item, template and order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DpoRow {
    pub prompt: Vec<Message>,
    pub chosen: Vec<Message>,
    pub rejected: Vec<Message>,
    pub item: String,
    pub template: String,
    pub order: Order,
    pub chosen_judge: String,
    pub rejected_judge: String,
    pub label: Outcome,
    pub label_source: LabelSource,
    pub prompt_source: PromptSource,
}

/// An item's two responses, the one its final label prefers as `chosen`: the conversation up
/// to the last user turn as `prompt`, each side's own turns after it as its completion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PreferenceRow {
    pub prompt: Vec<Message>,
    pub chosen: Vec<Message>,
    pub rejected: Vec<Message>,
    pub item: String,
    pub chosen_model: String,
    pub rejected_model: String,
    pub label: Outcome,
    pub label_source: LabelSource,
}

/// Writes `rows` as JSON Lines.
pub fn write_rows<T: Serialize>(rows: &[T], out: &mut dyn std::io::Write) -> std::io::Result<()> {
    for row in rows {
        serde_json::to_writer(&mut *out, row)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// One assistant turn.
pub(super) fn assistant(text: &str) -> Vec<Message> {
    vec![Message::new("assistant", text)]
}
