//! Judge metrics: accuracy against final labels, the JudgerBenchV2 score, agreement (kappa),
//! position consistency, per-category breakdowns. Pure computation, no I/O.
pub const DEFAULT_BASE_MODEL: &str = "gpt-4o-mini-2024-07-18";
