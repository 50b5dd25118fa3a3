//! Per-category breakdown: each judge's accuracy within each category of items.

use super::accuracy::{accuracy, AccuracyOptions, JudgeAccuracy};
use crate::dataset::Item;
use crate::verdict::Outcome;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One category's figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CategoryBreakdown {
    /// `None` for the items that have no category.
    pub category: Option<String>,
    pub items: usize,
    /// Items with a final label.
    pub labelled: usize,
    pub accuracy: Vec<JudgeAccuracy>,
}

/// Accuracy of each judge per category, categories in name order, the uncategorised last.
pub fn by_category(
    items: &[Item],
    labels: &[Option<Outcome>],
    judges: &[String],
    opts: AccuracyOptions,
) -> Vec<CategoryBreakdown> {
    let mut groups: BTreeMap<(bool, Option<&str>), Vec<usize>> = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let c = item.category.as_deref();
        groups.entry((c.is_none(), c)).or_default().push(i);
    }
    groups
        .into_iter()
        .map(|((_, category), members)| CategoryBreakdown {
            category: category.map(str::to_string),
            items: members.len(),
            labelled: members
                .iter()
                .filter(|&&i| labels.get(i).copied().flatten().is_some())
                .count(),
            accuracy: judges
                .iter()
                .map(|j| {
                    accuracy(
                        members
                            .iter()
                            .map(|&i| (&items[i], labels.get(i).copied().flatten())),
                        j,
                        opts,
                    )
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use Outcome::*;

    #[test]
    fn groups_by_category_and_sums_to_the_whole() {
        let mut items = vec![
            item("1", vec![judged("j", Some(A), false)]),
            item("2", vec![judged("j", Some(B), false)]),
            item("3", vec![judged("j", Some(A), false)]),
            item("4", vec![judged("j", Some(A), false)]),
        ];
        items[0].category = Some("math".into());
        items[1].category = Some("code".into());
        items[2].category = Some("math".into());
        let labels = [Some(A), Some(A), Some(B), None];
        let judges = vec!["j".to_string()];
        let r = by_category(&items, &labels, &judges, AccuracyOptions::default());
        let names: Vec<Option<&str>> = r.iter().map(|c| c.category.as_deref()).collect();
        assert_eq!(names, [Some("code"), Some("math"), None]);
        assert_eq!(r[1].items, 2);
        assert_eq!(r[1].accuracy[0].accuracy, Some(50.0));
        assert_eq!(r[0].accuracy[0].accuracy, Some(0.0));
        assert_eq!(r[2].labelled, 0);
        let whole = accuracy(items.iter().zip(labels), "j", AccuracyOptions::default());
        let correct: usize = r.iter().map(|c| c.accuracy[0].counts.correct).sum();
        let compared: usize = r.iter().map(|c| c.accuracy[0].counts.compared).sum();
        assert_eq!(
            (correct, compared),
            (whole.counts.correct, whole.counts.compared)
        );
    }
}
