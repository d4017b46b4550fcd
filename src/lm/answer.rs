//! Turning logits into answers: candidate scoring and token sampling.

use super::ffi::Token;

/// One scored candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub text: String,
    /// Log-likelihood of the whole continuation under the LM.
    pub log_prob: f64,
    /// Probability normalised over the candidates.
    pub prob: f64,
}

/// log softmax in f64 (a vocabulary is too wide for f32 sums to be exact).
pub fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let sum: f64 = logits.iter().map(|&v| (v as f64 - max).exp()).sum();
    let log_z = max + sum.ln();
    logits.iter().map(|&v| v as f64 - log_z).collect()
}

pub fn choices(candidates: &[&str], log_probs: &[f64]) -> Vec<Choice> {
    let max = log_probs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let z: f64 = log_probs.iter().map(|l| (l - max).exp()).sum();
    candidates
        .iter()
        .zip(log_probs)
        .map(|(text, &log_prob)| Choice {
            text: text.to_string(),
            log_prob,
            prob: (log_prob - max).exp() / z,
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    /// 0 = greedy.
    pub temperature: f32,
    /// Sample among the k most likely tokens (0 = all); only with a
    /// temperature.
    pub top_k: usize,
    pub seed: u64,
    pub stop_at_newline: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 32,
            temperature: 0.0,
            top_k: 0,
            seed: 0,
            stop_at_newline: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    EndOfSequence,
    EndOfChunk,
    Newline,
    MaxTokens,
}

#[derive(Debug, Clone)]
pub struct Generated {
    pub text: String,
    pub tokens: Vec<Token>,
    pub stop: StopReason,
}

/// Greedy or temperature/top-k sampling with a seeded generator.
pub struct Sampler {
    temperature: f32,
    top_k: usize,
    state: u64,
}

impl Sampler {
    pub fn new(options: &GenerateOptions) -> Sampler {
        Sampler {
            temperature: options.temperature,
            top_k: options.top_k,
            state: options.seed ^ 0x9e37_79b9_7f4a_7c15,
        }
    }

    pub fn pick(&mut self, logits: &[f32]) -> Token {
        let argmax = || {
            Token(
                logits
                    .iter()
                    .enumerate()
                    .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                        if v > best.1 { (i, v) } else { best }
                    })
                    .0 as i32,
            )
        };
        if self.temperature <= 0.0 {
            return argmax();
        }
        let mut ranked: Vec<(usize, f32)> = logits.iter().cloned().enumerate().collect();
        if self.top_k > 0 && self.top_k < ranked.len() {
            ranked.select_nth_unstable_by(self.top_k - 1, |a, b| b.1.total_cmp(&a.1));
            ranked.truncate(self.top_k);
        }
        let max = ranked.iter().map(|r| r.1).fold(f32::NEG_INFINITY, f32::max);
        let weights: Vec<f64> = ranked
            .iter()
            .map(|r| (((r.1 - max) / self.temperature) as f64).exp())
            .collect();
        let total: f64 = weights.iter().sum();
        let mut target = self.uniform() * total;
        for (r, w) in ranked.iter().zip(&weights) {
            if target < *w {
                return Token(r.0 as i32);
            }
            target -= w;
        }
        argmax()
    }

    /// xorshift64*: uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let x = self.state.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_normalises() {
        let l = log_softmax(&[1.0, 2.0, 3.0]);
        let total: f64 = l.iter().map(|v| v.exp()).sum();
        assert!((total - 1.0).abs() < 1e-12);
        assert!((l[2] - l[1] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn choices_probabilities_sum_to_one_and_keep_order() {
        let c = choices(&["yes", "no"], &[-0.1, -2.4]);
        assert!((c[0].prob + c[1].prob - 1.0).abs() < 1e-12);
        assert!(c[0].prob > 0.9 && c[0].text == "yes");
    }

    #[test]
    fn greedy_takes_the_argmax_and_top_1_sampling_equals_greedy() {
        let logits = [0.5, 3.0, -1.0, 2.9];
        assert_eq!(
            Sampler::new(&GenerateOptions::default()).pick(&logits),
            Token(1)
        );
        let options = GenerateOptions {
            temperature: 1.0,
            top_k: 1,
            ..Default::default()
        };
        let mut s = Sampler::new(&options);
        assert!((0..50).all(|_| s.pick(&logits) == Token(1)));
    }

    #[test]
    fn sampling_follows_the_temperature() {
        let logits = [0.0, 1.0];
        let options = GenerateOptions {
            temperature: 1.0,
            seed: 7,
            ..Default::default()
        };
        let mut s = Sampler::new(&options);
        let ones = (0..4000).filter(|_| s.pick(&logits) == Token(1)).count() as f64 / 4000.0;
        let expected = 1.0f64.exp() / (1.0 + 1.0f64.exp()); // 0.731
        assert!((ones - expected).abs() < 0.03, "{ones} vs {expected}");
    }
}
