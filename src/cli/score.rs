//! `arbiter score`: judge metrics against the final labels.
use super::ScoreArgs;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum LabelsFrom {
    Auto,
}

pub fn run(_args: ScoreArgs) -> anyhow::Result<i32> {
    anyhow::bail!("not wired yet")
}
