//! DeepSeek-R1's win counts per JudgerBenchV2 category: the ground truth the reference
//! evaluator (`R1_Score_MAP` in OpenCompass) hard-codes for the released data, out of 100
//! prompts per tested model.

/// The ten tested models, in code-point order.
pub const MODELS: [&str; 10] = [
    "DeepSeek-R1-Distill-Llama-70B",
    "DeepSeek-R1-Distill-Qwen-32B",
    "Llama-3.1-70B-Instruct",
    "Llama-3.3-70B-Instruct",
    "Qwen2.5-32B-Instruct",
    "Qwen2.5-72B-Instruct",
    "deepseek-v2_5-1210-turbomind",
    "gemma-2-27b-it-turbomind",
    "mixtral-large-instruct-2407-lmdeploy",
    "nvidia-Llama-3.1-Nemotron-70B-Instruct-HF",
];

/// The ten categories under their file names, in the order the paper's table lists them, each
/// with R1's wins per model in the order of `MODELS`.
pub const WINS: [(&str, [usize; 10]); 10] = [
    ("Knowledge", [58, 56, 28, 46, 55, 80, 79, 44, 72, 76]),
    ("Longtext", [58, 52, 26, 37, 45, 77, 73, 65, 63, 54]),
    (
        "Reason_and_analysis",
        [63, 66, 23, 45, 60, 78, 85, 46, 56, 68],
    ),
    ("safe", [55, 55, 55, 64, 72, 83, 72, 72, 69, 76]),
    ("Hallucination", [61, 60, 50, 48, 78, 74, 66, 65, 76, 75]),
    ("chatQA", [53, 48, 25, 34, 39, 68, 70, 56, 55, 69]),
    ("IF", [50, 41, 35, 37, 34, 48, 63, 38, 47, 62]),
    ("LanTask", [60, 71, 29, 46, 62, 74, 75, 53, 48, 69]),
    ("Creation", [66, 64, 34, 36, 40, 67, 73, 55, 43, 73]),
    ("Code_and_AI", [56, 43, 32, 43, 44, 60, 64, 34, 51, 62]),
];

/// The file-name key of a category as records spell it: the records say `Reason & Analysis`
/// and `Code & AI` where the files (and the table) say `Reason_and_analysis` and `Code_and_AI`;
/// the reference maps exactly these two.
pub fn canonical(category: &str) -> &str {
    match category {
        "Reason & Analysis" => "Reason_and_analysis",
        "Code & AI" => "Code_and_AI",
        other => other,
    }
}

/// Position of a category in the paper's order, if it is one of the ten.
pub fn position(category: &str) -> Option<usize> {
    let key = canonical(category);
    WINS.iter().position(|(c, _)| *c == key)
}

/// R1's wins for a category, as (model, wins) pairs.
pub fn wins(category: &str) -> Option<impl Iterator<Item = (&'static str, usize)>> {
    let (_, row) = WINS[position(category)?];
    Some(MODELS.iter().copied().zip(row))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_are_in_code_point_order_and_records_spellings_resolve() {
        assert!(MODELS.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(position("Reason & Analysis"), Some(2));
        assert_eq!(position("Code & AI"), Some(9));
        assert_eq!(position("Code_and_AI"), Some(9));
        assert_eq!(position("Math"), None);
        let k: Vec<(&str, usize)> = wins("Knowledge").expect("known").collect();
        assert_eq!(k[5], ("Qwen2.5-72B-Instruct", 80));
        assert_eq!(k.iter().map(|(_, w)| w).sum::<usize>(), 594);
    }
}
