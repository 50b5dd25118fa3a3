#![no_main]
//! Fuzz target for the dataset loader: arbitrary bytes (plain, gzip or Parquet when they start
//! with its magic number) are loaded with format detection and with every format forced, with and without
//! `--skip-bad-lines`. Loading may fail with an error but must never panic.
use arbiter::dataset::{load_bytes, Format, LoadOptions};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

const FORMATS: &[Option<Format>] = &[
    None,
    Some(Format::Native),
    Some(Format::Judgerbench),
    Some(Format::Opencompass),
    Some(Format::Rewardbench),
    Some(Format::Arena),
    Some(Format::MtBench),
    Some(Format::JudgeBench),
    Some(Format::AlpacaEval),
    Some(Format::ArenaHard),
];

fuzz_target!(|data: &[u8]| {
    // The first byte picks the options so one input explores one path deeply.
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let format = FORMATS[usize::from(pick) % FORMATS.len()];
    let skip_bad_lines = pick & 0x80 != 0;
    let path = Path::new("results/model_judged-by--judge/fuzz.json");
    let opts = LoadOptions {
        format,
        skip_bad_lines,
    };
    if let Ok(dataset) = load_bytes(path, bytes, &opts) {
        // A loaded dataset is internally consistent: every id is found where it is.
        for (i, item) in dataset.items.iter().enumerate() {
            assert_eq!(dataset.position(&item.id), Some(i));
        }
    }
});
