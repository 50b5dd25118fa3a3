//! What a run has left to do: every selected item, in each requested order, for each judge,
//! minus what the journal already holds for that judge with the same settings. The journal
//! file is read afresh each time, so a plan made after an interruption (Ctrl-C, `kill -9`, a
//! lost network) resumes exactly where the last durable judgment left off.

use super::panel_file::{JudgeKind, PanelFile, PanelJudge};
use super::BatchError;
use crate::dataset::Format;
use crate::engine::judge::{JudgeSpec, JudgeTask};
use crate::engine::ConstrainMode;
use crate::journal::{self, JudgmentRecord};
use crate::prompts::{resolve_preference, Library, Template};
use crate::remote::ApiKey;
use crate::review::{Review, ReviewError};
use crate::verdict::Orders;
use std::collections::HashSet;

/// Which part of the dataset and of the panel to run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scope {
    /// Only these items (empty: all), in this order.
    pub items: Vec<String>,
    /// At most this many items (after `items`).
    pub limit: Option<usize>,
    /// Both orders of every item.
    pub swap: bool,
    /// Judge again what is already judged with the same settings.
    pub force: bool,
    /// Only this judge of the panel.
    pub judge: Option<String>,
    /// Constrained decoding for the whole run: `None` each judge's own setting (the panel
    /// file's `constrain`, else the default for its template), `Some(false)` off for every
    /// judge, `Some(true)` on (a judge whose template declares no grammar is an error).
    pub constrain: Option<bool>,
}

/// One judge's share of a run.
#[derive(Debug, Clone)]
pub struct JudgePlan {
    pub judge: PanelJudge,
    pub spec: JudgeSpec,
    /// `JudgeSpec::settings_key` of this judge: what its journal records are matched on.
    pub settings_key: String,
    /// The judgments to make, in dataset order (the original order of an item before its
    /// swapped one).
    pub tasks: Vec<JudgeTask>,
    /// Judgments skipped because the journal already has them.
    pub already_done: usize,
    /// The API key, read from the variable the panel file names.
    pub api_key: Option<ApiKey>,
}

/// A whole run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub judges: Vec<JudgePlan>,
    /// Items selected.
    pub items: usize,
}

impl Plan {
    /// Judgments to make, over all judges.
    pub fn remaining(&self) -> usize {
        self.judges.iter().map(|j| j.tasks.len()).sum()
    }
}

/// The template a judge uses when it names none: JudgerBenchV2's own for its files, else
/// CompassJudger-2's critical-thinking prompt.
pub fn default_template(format: Format, library: &Library) -> String {
    if format == Format::Judgerbench && library.get("judgerbench-v2").is_ok() {
        "judgerbench-v2".to_string()
    } else {
        "cj2-critical-thinking".to_string()
    }
}

/// How `judge` keeps answers of `template` in shape: the run's override, else the panel
/// file's `constrain`, else the default: a local judge follows the template's grammar; a
/// remote judge sends a JSON answer's schema as `response_format` (which OpenAI, vLLM, SGLang
/// and llama.cpp's server take) and leaves other answers free (servers disagree on where a
/// grammar goes: say it with `constrain = "grammar"` and `grammar_field`).
pub fn constrain_mode(
    judge: &PanelJudge,
    template: &Template,
    run: Option<bool>,
) -> Result<ConstrainMode, String> {
    let has = template.has_answer_grammar();
    if run == Some(false) {
        return Ok(ConstrainMode::None);
    }
    let mode = match judge.constrain {
        Some(mode) => mode,
        None if !has => ConstrainMode::None,
        None if !judge.kind.is_remote() => ConstrainMode::Grammar,
        None => match template.answer_for(None).and_then(|a| a.as_object()) {
            Some(_) => ConstrainMode::JsonSchema,
            None if run == Some(true) => ConstrainMode::Grammar,
            None => ConstrainMode::None,
        },
    };
    if mode.is_on() && !has {
        return Err(format!(
            "template {} declares no answer grammar, so its answers cannot be constrained: add an `answer:` line to its header, or set constrain = \"none\"",
            template.name()
        ));
    }
    if matches!(mode, ConstrainMode::JsonSchema | ConstrainMode::JsonObject)
        && template
            .answer_for(None)
            .and_then(|a| a.as_object())
            .is_none()
    {
        return Err(format!(
            "constrain = \"{mode}\" sends a JSON schema, but template {} asks for an answer that is not one JSON object: use constrain = \"grammar\" (with the server's `grammar_field`) or \"none\"",
            template.name()
        ));
    }
    if run == Some(true) && !mode.is_on() {
        return Err(
            "the run asks for constrained answers but the panel file sets constrain = \"none\" for this judge"
                .to_string(),
        );
    }
    Ok(mode)
}

/// The items a run covers: `wanted` (checked against the dataset) or all, cut to `limit`.
pub fn select_items(
    review: &Review,
    wanted: &[String],
    limit: Option<usize>,
) -> Result<Vec<String>, ReviewError> {
    let mut items: Vec<String> = if wanted.is_empty() {
        review.items().iter().map(|i| i.id.clone()).collect()
    } else {
        if let Some(id) = wanted.iter().find(|id| review.dataset.get(id).is_none()) {
            return Err(ReviewError::UnknownItem {
                item: id.clone(),
                dataset: review.dataset.path.clone(),
            });
        }
        wanted.to_vec()
    };
    if let Some(n) = limit {
        items.truncate(n);
    }
    Ok(items)
}

/// The (item, swapped) pairs `records` already hold for `judge` made with `settings_key`.
pub fn already_judged(
    records: &[JudgmentRecord],
    judge: &str,
    settings_key: &str,
) -> HashSet<(String, bool)> {
    records
        .iter()
        .filter(|r| {
            r.judgment.judge == judge
                && r.run.get("settings_key").and_then(|v| v.as_str()) == Some(settings_key)
        })
        .map(|r| (r.item.clone(), r.judgment.swapped))
        .collect()
}

/// The same over a dataset's judgments: those its file ships with their `run` record and those
/// replayed from its journal.
pub fn judged_in_dataset(
    items: &[crate::dataset::Item],
    judge: &str,
    settings_key: &str,
) -> HashSet<(String, bool)> {
    items
        .iter()
        .flat_map(|item| item.judgments.iter().map(move |j| (item, j)))
        .filter(|(_, j)| {
            j.judge == judge
                && j.run.get("settings_key").and_then(|v| v.as_str()) == Some(settings_key)
        })
        .map(|(item, j)| (item.id.clone(), j.swapped))
        .collect()
}

/// Plans a run of `panel` over `review`'s dataset. Renders every prompt now, so a template
/// that cannot be filled fails before any request is sent, and reads each remote judge's API
/// key from its variable.
pub fn plan(
    review: &Review,
    panel: &PanelFile,
    library: &Library,
    scope: &Scope,
) -> Result<Plan, BatchError> {
    let judges: Vec<&PanelJudge> = match &scope.judge {
        Some(name) => vec![panel
            .judges
            .iter()
            .find(|j| &j.name == name)
            .ok_or_else(|| BatchError::UnknownJudge {
                judge: name.clone(),
                panel: panel.path.clone(),
                known: panel.names().join(", "),
            })?],
        None => panel.judges.iter().collect(),
    };
    let items = select_items(review, &scope.items, scope.limit)?;
    let path = review.journal_path();
    let records = if path.exists() {
        journal::read(path, &review.dataset)
            .map_err(ReviewError::from)?
            .judgments
    } else {
        Vec::new()
    };
    let orders = Orders::from_swap_flag(scope.swap);
    let mut plans = Vec::new();
    for judge in judges {
        let template_name = judge
            .template
            .clone()
            .unwrap_or_else(|| default_template(review.dataset.format, library));
        let template = library.get(&template_name).map_err(|e| BatchError::Judge {
            judge: judge.name.clone(),
            message: e.to_string(),
        })?;
        let preference = judge.preference.as_deref().map(resolve_preference);
        let model = match &judge.kind {
            JudgeKind::Local { model, .. } | JudgeKind::Remote { model, .. } => model.clone(),
        };
        let constrain = constrain_mode(judge, template, scope.constrain).map_err(|message| {
            BatchError::Judge {
                judge: judge.name.clone(),
                message,
            }
        })?;
        let spec = JudgeSpec {
            model,
            template: template_name,
            preference: preference.clone(),
            sampling: judge.sampling.clone(),
            constrain,
        };
        let settings_key = spec.settings_key(&judge.kind.source(), template.source_text());
        let done = if scope.force {
            HashSet::new()
        } else {
            let mut done = already_judged(&records, &judge.name, &settings_key);
            done.extend(judged_in_dataset(
                review.items(),
                &judge.name,
                &settings_key,
            ));
            done
        };
        let mut tasks = Vec::new();
        let mut already_done = 0;
        for id in &items {
            let item = review
                .dataset
                .get(id)
                .expect("invariant: select_items returns only ids of the dataset");
            for &order in orders.list() {
                if done.contains(&(id.clone(), order.is_swapped())) {
                    already_done += 1;
                    continue;
                }
                let task =
                    JudgeTask::new(template, item, order, preference.as_deref()).map_err(|e| {
                        BatchError::Judge {
                            judge: judge.name.clone(),
                            message: format!("rendering the prompt of {id}: {e}"),
                        }
                    })?;
                tasks.push(task);
            }
        }
        let api_key = match &judge.kind {
            JudgeKind::Remote {
                api_key_env: Some(var),
                ..
            } => Some(ApiKey::from_env(var).ok_or_else(|| BatchError::MissingKey {
                judge: judge.name.clone(),
                var: var.clone(),
            })?),
            _ => None,
        };
        plans.push(JudgePlan {
            judge: judge.clone(),
            spec,
            settings_key,
            tasks,
            already_done,
            api_key,
        });
    }
    Ok(Plan {
        judges: plans,
        items: items.len(),
    })
}
