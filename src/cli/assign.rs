//! `arbiter assign`: split a dataset's disputes between annotators and write the split beside
//! the dataset, where `arbiter disputes --mine` and the app's "my queue" read it.

use super::{open_reviewed, DatasetArgs, PanelArgs};
use crate::assignment::Assignment;
use clap::Args;

#[derive(Args, Debug)]
pub struct AssignArgs {
    #[command(flatten)]
    pub data: DatasetArgs,
    #[command(flatten)]
    pub panel: PanelArgs,
    /// The annotators, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "A,B,C", required = true)]
    pub annotators: Vec<String>,
    /// The share of the disputes given to two annotators, to measure how far they agree.
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    pub overlap: f64,
    /// The seed of the shuffle: the same seed gives the same split.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Split every item, not only the disputes.
    #[arg(long)]
    pub all_items: bool,
}

pub fn run(args: AssignArgs) -> anyhow::Result<i32> {
    let review = open_reviewed(&args.data, &args.panel)?;
    let items: Vec<String> = review
        .items()
        .iter()
        .zip(review.consensus())
        .filter(|(_, c)| args.all_items || c.is_dispute())
        .map(|(i, _)| i.id.clone())
        .collect();
    let plan = Assignment::plan(&items, &args.annotators, args.overlap, args.seed)?;
    let path = plan.write(&args.data.dataset)?;
    let doubled = plan.items.values().filter(|p| p.len() > 1).count();
    println!(
        "assigned {} {} to {} annotators ({doubled} to two people) in {}",
        plan.items.len(),
        if args.all_items { "items" } else { "disputes" },
        plan.annotators.len(),
        path.display()
    );
    for name in &plan.annotators {
        println!("  {name}: {}", plan.queue(name).count());
    }
    Ok(0)
}
