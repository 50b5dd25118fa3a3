//! Splitting a dataset's disputes between annotators: which person gets which item, with a
//! share of the items given to two people so that their agreement can be measured. The plan is
//! deterministic for a seed and kept in the team folder beside the dataset
//! (`<dataset>.arbiter/assignments.json`), where every annotator's app reads its own queue.

use crate::journal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The file name of the plan inside the team folder.
pub const FILE_NAME: &str = "assignments.json";

#[derive(Debug, thiserror::Error)]
pub enum AssignmentError {
    #[error("no annotators given; name them with --annotators a,b,c")]
    NoAnnotators,
    #[error("annotator {0:?} is named twice in --annotators")]
    Duplicate(String),
    #[error(transparent)]
    Annotator(#[from] journal::JournalError),
    #[error("--overlap must be between 0 and 1 (a share of the items), got {0}")]
    Overlap(f64),
    #[error("an overlap needs at least two annotators to give an item to two people; add annotators or use --overlap 0")]
    OverlapNeedsTwo,
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not a readable assignment ({source}); run `arbiter assign` again to rewrite it"
    )]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Who decides which item.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub seed: u64,
    /// The share of the items given to two annotators.
    pub overlap: f64,
    pub annotators: Vec<String>,
    /// Item id -> the one or two annotators who decide it, in the order items were dealt.
    pub items: BTreeMap<String, Vec<String>>,
}

/// SplitMix64: a few lines of our own rather than a crate, so that a seed gives the same plan
/// in every Arbiter version (a library's generator may change between releases).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), by rejection so that no index is favoured.
    fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let x = self.next();
            if x < zone {
                return x % n;
            }
        }
    }
}

impl Assignment {
    /// Deals `items` (the disputes, in dataset order) to `annotators`: the items are shuffled
    /// with `seed`, the first `round(overlap * n)` of them need two people and the rest one,
    /// and places are handed out round-robin so that everyone's load differs by at most one
    /// and no item goes twice to the same person.
    pub fn plan(
        items: &[String],
        annotators: &[String],
        overlap: f64,
        seed: u64,
    ) -> Result<Assignment, AssignmentError> {
        if annotators.is_empty() {
            return Err(AssignmentError::NoAnnotators);
        }
        let mut names = Vec::with_capacity(annotators.len());
        let mut seen = HashSet::new();
        for a in annotators {
            let name = journal::check_annotator(a)?;
            if !seen.insert(name.clone()) {
                return Err(AssignmentError::Duplicate(name));
            }
            names.push(name);
        }
        if !(0.0..=1.0).contains(&overlap) || overlap.is_nan() {
            return Err(AssignmentError::Overlap(overlap));
        }
        if overlap > 0.0 && names.len() < 2 {
            return Err(AssignmentError::OverlapNeedsTwo);
        }
        let mut order: Vec<&String> = items.iter().collect();
        let mut rng = SplitMix64(seed);
        for i in (1..order.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            order.swap(i, j);
        }
        let doubled = (overlap * order.len() as f64).round() as usize;
        let mut next = 0usize;
        let mut dealt = BTreeMap::new();
        for (k, id) in order.into_iter().enumerate() {
            let places = if k < doubled { 2 } else { 1 };
            let people: Vec<String> = (0..places)
                .map(|p| names[(next + p) % names.len()].clone())
                .collect();
            next = (next + places) % names.len();
            dealt.insert(id.clone(), people);
        }
        Ok(Assignment {
            seed,
            overlap,
            annotators: names,
            items: dealt,
        })
    }

    /// The items of `annotator`, as ids.
    pub fn queue<'a>(&'a self, annotator: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.items
            .iter()
            .filter(move |(_, people)| people.iter().any(|p| p == annotator))
            .map(|(id, _)| id.as_str())
    }

    /// Whether `item` is one of `annotator`'s.
    pub fn is_assigned(&self, item: &str, annotator: &str) -> bool {
        self.items
            .get(item)
            .is_some_and(|people| people.iter().any(|p| p == annotator))
    }

    /// Where the plan of `dataset` lives.
    pub fn path(dataset: &Path) -> PathBuf {
        journal::team_dir(dataset).join(FILE_NAME)
    }

    /// Reads the plan of `dataset`; `None` when there is none.
    pub fn read(dataset: &Path) -> Result<Option<Assignment>, AssignmentError> {
        let path = Assignment::path(dataset);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(AssignmentError::Io {
                    action: "read",
                    path,
                    source,
                })
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| AssignmentError::Parse { path, source })
    }

    /// Writes the plan beside `dataset`, replacing any earlier one in one step (a temporary
    /// file renamed over it), so that an app reading it never sees half a plan.
    pub fn write(&self, dataset: &Path) -> Result<PathBuf, AssignmentError> {
        let path = Assignment::path(dataset);
        let io = |action: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| AssignmentError::Io {
                action,
                path,
                source,
            }
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io("create the folder of", &path))?;
        }
        let tmp = path.with_extension("json.tmp");
        let mut text =
            serde_json::to_vec_pretty(self).map_err(|source| AssignmentError::Parse {
                path: path.clone(),
                source,
            })?;
        text.push(b'\n');
        let mut file = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
        file.write_all(&text).map_err(io("write", &tmp))?;
        file.sync_all().map_err(io("flush to disk", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("replace", &path))?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("q{i}")).collect()
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn deterministic_balanced_and_overlapping() {
        let team = names(&["ann", "bo", "cy"]);
        let a = Assignment::plan(&ids(50), &team, 0.2, 7).expect("plans");
        assert_eq!(a, Assignment::plan(&ids(50), &team, 0.2, 7).expect("plans"));
        assert_ne!(
            a.items,
            Assignment::plan(&ids(50), &team, 0.2, 8)
                .expect("plans")
                .items
        );
        assert_eq!(a.items.len(), 50);
        let doubled: Vec<_> = a.items.values().filter(|p| p.len() == 2).collect();
        assert_eq!(doubled.len(), 10);
        assert!(doubled.iter().all(|p| p[0] != p[1]));
        // 60 places over three people: 20 each.
        for name in &team {
            assert_eq!(a.queue(name).count(), 20, "{name}");
        }
    }

    #[test]
    fn bad_plans_are_refused_with_a_reason() {
        let one = names(&["ann"]);
        assert!(matches!(
            Assignment::plan(&ids(3), &one, 0.5, 1),
            Err(AssignmentError::OverlapNeedsTwo)
        ));
        assert!(Assignment::plan(&ids(3), &one, 0.0, 1).is_ok());
        assert!(matches!(
            Assignment::plan(&ids(3), &names(&["a", "a"]), 0.0, 1),
            Err(AssignmentError::Duplicate(_))
        ));
        assert!(matches!(
            Assignment::plan(&ids(3), &names(&["a", "b"]), 1.5, 1),
            Err(AssignmentError::Overlap(_))
        ));
        assert!(matches!(
            Assignment::plan(&ids(3), &names(&["a/b"]), 0.0, 1),
            Err(AssignmentError::Annotator(_))
        ));
    }

    #[test]
    fn written_plan_reads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("d.jsonl");
        assert_eq!(Assignment::read(&data).expect("reads"), None);
        let a = Assignment::plan(&ids(5), &names(&["ann", "bo"]), 0.4, 3).expect("plans");
        let path = a.write(&data).expect("writes");
        assert!(path.ends_with("d.jsonl.arbiter/assignments.json"));
        assert_eq!(Assignment::read(&data).expect("reads"), Some(a));
    }
}
