//! Choosing the next token from the logits: greedy by default (a judgment should be
//! reproducible), or temperature sampling with top-k / top-p and a seed, and an optional
//! repeat penalty.

use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

/// How tokens are chosen and how many. Recorded with every judgment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    pub seed: u64,
    pub max_new_tokens: usize,
    /// Off unless set; > 1 discourages tokens among the last `repeat_last_n`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_penalty: Option<f32>,
    #[serde(default = "default_repeat_last_n")]
    pub repeat_last_n: usize,
}

fn default_repeat_last_n() -> usize {
    64
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_p: None,
            top_k: None,
            seed: 299_792_458,
            max_new_tokens: 1024,
            repeat_penalty: None,
            repeat_last_n: default_repeat_last_n(),
        }
    }
}

impl SamplingParams {
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }
}

/// SplitMix64: small, fast, and the same sequence on every platform and version, so a seed
/// reproduces a sampled judgment.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Picks tokens according to [`SamplingParams`].
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: SplitMix64,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Sampler {
        let rng = SplitMix64(params.seed);
        Sampler { params, rng }
    }

    /// Greedy without a repeat penalty: the choice is the plain argmax of the logits.
    pub fn is_plain_greedy(&self) -> bool {
        self.params.is_greedy() && self.params.repeat_penalty.is_none_or(|p| p == 1.0)
    }

    /// The next token given f32 logits (vocab,) and the tokens generated so far.
    pub fn sample(&mut self, logits: &Tensor, history: &[u32]) -> Result<u32> {
        let penalty = self.params.repeat_penalty.filter(|p| *p != 1.0);
        if self.params.is_greedy() && penalty.is_none() {
            // Argmax where the logits are: no copy of the vocabulary off the device.
            return super::model::argmax(logits);
        }
        let mut values: Vec<f32> = logits.to_vec1()?;
        if let Some(p) = penalty {
            let start = history.len().saturating_sub(self.params.repeat_last_n);
            let mut seen = std::collections::HashSet::new();
            for &t in &history[start..] {
                if seen.insert(t) {
                    if let Some(v) = values.get_mut(t as usize) {
                        *v = if *v >= 0.0 { *v / p } else { *v * p };
                    }
                }
            }
        }
        Ok(self.pick(&values))
    }

    fn pick(&mut self, logits: &[f32]) -> u32 {
        let argmax = || {
            logits
                .iter()
                .enumerate()
                .fold((0usize, f32::NEG_INFINITY), |best, (i, &v)| {
                    if v > best.1 {
                        (i, v)
                    } else {
                        best
                    }
                })
                .0 as u32
        };
        if self.params.is_greedy() {
            return argmax();
        }
        let t = self.params.temperature as f32;
        let mut order: Vec<u32> = (0..logits.len() as u32).collect();
        order.sort_unstable_by(|a, b| logits[*b as usize].total_cmp(&logits[*a as usize]));
        if let Some(k) = self.params.top_k.filter(|k| *k > 0) {
            order.truncate(k);
        }
        let max = logits[order[0] as usize];
        let mut probs: Vec<f64> = order
            .iter()
            .map(|&i| (((logits[i as usize] - max) / t) as f64).exp())
            .collect();
        let sum: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= sum);
        if let Some(top_p) = self.params.top_p.filter(|p| *p < 1.0) {
            let mut cum = 0.0;
            let mut keep = probs.len();
            for (i, p) in probs.iter().enumerate() {
                cum += p;
                if cum >= top_p {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep);
            order.truncate(keep);
            let sum: f64 = probs.iter().sum();
            probs.iter_mut().for_each(|p| *p /= sum);
        }
        let mut r = self.rng.next_f64();
        for (i, p) in probs.iter().enumerate() {
            if r < *p {
                return order[i];
            }
            r -= p;
        }
        order[probs.len() - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn logits(v: &[f32]) -> Tensor {
        Tensor::new(v, &Device::Cpu).expect("tensor")
    }

    #[test]
    fn greedy_takes_the_largest() {
        let mut s = Sampler::new(SamplingParams::default());
        assert_eq!(
            s.sample(&logits(&[0.1, 3.0, -1.0, 2.9]), &[])
                .expect("sample"),
            1
        );
    }

    #[test]
    fn repeat_penalty_moves_greedy_off_a_repeated_token() {
        let mut s = Sampler::new(SamplingParams {
            repeat_penalty: Some(2.0),
            ..SamplingParams::default()
        });
        assert_eq!(
            s.sample(&logits(&[0.1, 3.0, -1.0, 2.0]), &[1])
                .expect("sample"),
            3
        );
    }

    #[test]
    fn same_seed_same_tokens_and_top_k_one_is_greedy() {
        let params = SamplingParams {
            temperature: 1.0,
            seed: 7,
            ..SamplingParams::default()
        };
        let l = logits(&[1.0, 1.1, 0.9, 1.05, 0.2]);
        let run = |p: SamplingParams| {
            let mut s = Sampler::new(p);
            (0..32)
                .map(|_| s.sample(&l, &[]).expect("sample"))
                .collect::<Vec<_>>()
        };
        let a = run(params.clone());
        assert_eq!(a, run(params.clone()));
        assert!(
            a.iter().collect::<std::collections::HashSet<_>>().len() > 1,
            "sampling varies"
        );
        let k1 = run(SamplingParams {
            top_k: Some(1),
            ..params.clone()
        });
        assert!(k1.iter().all(|t| *t == 1));
        let p_small = run(SamplingParams {
            top_p: Some(0.01),
            ..params
        });
        assert!(p_small.iter().all(|t| *t == 1));
    }
}
