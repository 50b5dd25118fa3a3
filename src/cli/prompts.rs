//! `arbiter prompts`: list the judge prompt templates, show one, or render one for an item
//! exactly as the model will see it (before the model's chat template is applied).

use super::table::Table;
use super::DatasetArgs;
use crate::prompts::{
    output_name, resolve_preference, Library, RenderOptions, Side, Source, PREFERENCE_PRESETS,
};
use anyhow::Context;
use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct PromptsArgs {
    #[command(subcommand)]
    pub command: PromptsCommand,
}

#[derive(Subcommand, Debug)]
pub enum PromptsCommand {
    /// List every template, what it asks for and where it comes from.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print a template's source text.
    Show { name: String },
    /// Render a template for one item of a dataset.
    Render(RenderArgs),
}

#[derive(Args, Debug)]
pub struct RenderArgs {
    /// The template's name (`arbiter prompts list`).
    pub name: String,
    /// The item to render.
    #[arg(long)]
    pub item: String,
    #[command(flatten)]
    pub data: DatasetArgs,
    /// Show response B in A's place and A in B's (the swapped order).
    #[arg(long)]
    pub swap: bool,
    /// For single-answer templates: which response to show.
    #[arg(long, value_parser = ["A", "B", "a", "b"], default_value = "A")]
    pub side: String,
    /// Append a style preference to a pairwise template: a preset name (detailed, concise,
    /// plain-language) or a sentence of your own.
    #[arg(long)]
    pub preference: Option<String>,
}

fn source_label(s: &Source) -> String {
    match s {
        Source::Embedded => "built in".to_string(),
        Source::User(p) => format!("user: {}", p.display()),
        Source::Overridden(p) => format!("user (overrides built-in): {}", p.display()),
    }
}

pub fn run(args: PromptsArgs) -> anyhow::Result<i32> {
    let library = Library::load()?;
    match args.command {
        PromptsCommand::List { json } => {
            let list = library.list();
            if json {
                let rows: Vec<serde_json::Value> = list
                    .iter()
                    .map(|t| {
                        serde_json::json!({
                            "name": t.name,
                            "kind": t.kind.name(),
                            "output": output_name(t.output),
                            "description": t.description,
                            "placeholders": t.placeholders,
                            "source": source_label(&t.source),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(0);
            }
            let mut t = Table::new(["name", "kind", "output", "source", "description"]);
            for info in &list {
                t.row([
                    info.name.clone(),
                    info.kind.name().to_string(),
                    output_name(info.output).to_string(),
                    source_label(&info.source),
                    info.description.clone(),
                ]);
            }
            print!("{}", t.render());
            match Library::user_dir() {
                Some(dir) => println!(
                    "\nA file NAME.txt in {} overrides or adds a template.",
                    dir.display()
                ),
                None => println!(
                    "\nNo user config folder found; set ARBITER_PROMPTS_DIR to add templates."
                ),
            }
            let presets: Vec<&str> = PREFERENCE_PRESETS.iter().map(|(n, _)| *n).collect();
            println!(
                "Style preferences for pairwise templates (--preference): {}",
                presets.join(", ")
            );
            Ok(0)
        }
        PromptsCommand::Show { name } => {
            let template = library.get(&name)?;
            print!("{}", template.source_text());
            Ok(0)
        }
        PromptsCommand::Render(r) => {
            let template = library.get(&r.name)?;
            let dataset = crate::dataset::load(
                &r.data.dataset,
                &crate::dataset::LoadOptions {
                    format: r.data.format,
                    skip_bad_lines: r.data.skip_bad_lines,
                },
            )
            .with_context(|| format!("opening {}", r.data.dataset.display()))?;
            let item = dataset.get(&r.item).with_context(|| {
                format!(
                    "item {:?} is not in {}; `arbiter inspect` lists what is there",
                    r.item,
                    r.data.dataset.display()
                )
            })?;
            let opts = RenderOptions {
                swap: r.swap,
                side: if r.side.eq_ignore_ascii_case("b") {
                    Side::B
                } else {
                    Side::A
                },
                preference: r.preference.as_deref().map(resolve_preference),
            };
            print!("{}", template.render(item, &opts)?);
            Ok(0)
        }
    }
}
