//! `arbiter export`: every item with its consensus, human decision, final label and dispute
//! reasons, as JSON Lines.

use super::{open_reviewed, ExportArgs};
use anyhow::Context;
use std::io::Write;

pub fn export(args: ExportArgs) -> anyhow::Result<i32> {
    let review = open_reviewed(&args.data, &args.panel)?;
    let file = std::fs::File::create(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let mut out = std::io::BufWriter::new(file);
    if args.as_dataset {
        crate::dataset::write_native(review.items(), &mut out)
            .and_then(|()| out.flush())
            .with_context(|| format!("writing {}", args.output.display()))?;
        let judgments: usize = review.items().iter().map(|i| i.judgments.len()).sum();
        eprintln!(
            "wrote {} items with {judgments} judgments to {}",
            review.items().len(),
            args.output.display()
        );
        return Ok(0);
    }
    let n = review
        .export_labels(&mut out)
        .with_context(|| format!("writing {}", args.output.display()))?;
    out.flush()
        .with_context(|| format!("writing {}", args.output.display()))?;
    let labelled = review.final_labels().iter().flatten().count();
    eprintln!(
        "wrote {n} items to {} ({labelled} with a final label, {} without)",
        args.output.display(),
        n - labelled
    );
    Ok(0)
}
