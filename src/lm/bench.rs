//! `vigil bench lm`: plain llama.cpp against the same model with the
//! adapter's blocks, in the same process, same prompt, same threads.
//!
//! Prompt speed: a fresh sequence, the media marker, then `prompt_tokens`
//! text tokens timed (with the adapter every one of them runs through the
//! blocks; plain, the marker is ordinary text). Generation: `gen_tokens`
//! single-token decodes after that prompt. Each figure is the median of
//! `runs`; the two setups alternate run by run so that drift (heat, other
//! load) hits both alike.

use std::io::Write;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Adapter, ContextOptions, LmError, Model, Pool, Prompt, Session, Token, Visual};

pub struct BenchOptions {
    pub lm: PathBuf,
    pub adapter: PathBuf,
    pub threads: usize,
    pub runs: usize,
    pub prompt_tokens: usize,
    pub gen_tokens: usize,
}

const TEXT: &str = "A camera watches the path by the barn. People walk past, a van parks, \
    bicycles go by and the light changes through the day. ";
const QUESTION: &str = " Question: Is anyone on the path right now? Answer yes or no. Answer:";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Deterministic visual tokens with unit variance.
fn visual_tokens(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32 * 3f32.sqrt()
        })
        .collect()
}

pub fn run(options: &BenchOptions, out: &mut dyn Write) -> Result<(), LmError> {
    let model = Model::load(&options.lm)?;
    let adapter = Arc::new(Adapter::load(&options.adapter)?);
    adapter.check_lm(&model)?;
    let config = adapter.config().clone();
    let context = ContextOptions {
        n_ctx: (options.prompt_tokens + options.gen_tokens + 64).next_multiple_of(256) as u32,
        n_batch: options.prompt_tokens.max(64) as u32,
        threads: options.threads as i32,
    };
    // One thread pool for both setups, as the daemon's single inference
    // worker would have.
    let pool = Rc::new(Pool::new(options.threads)?);
    let mut plain = Session::with_pool(&model, None, &context, Rc::clone(&pool))?;
    let mut conditioned = Session::with_pool(&model, Some(Arc::clone(&adapter)), &context, pool)?;
    let n_visual = 64;
    let pixels = visual_tokens(n_visual * config.visual_dim, 1);
    let visual = Visual {
        data: &pixels,
        n_tokens: n_visual,
        dim: config.visual_dim,
    };
    let media = conditioned.media(visual)?;

    let mut text_tokens: Vec<Token> = Vec::new();
    while text_tokens.len() < options.prompt_tokens {
        text_tokens.extend(model.tokenize_with(TEXT, false, false)?);
    }
    text_tokens.truncate(options.prompt_tokens);
    let marker = config.media_marker.clone();

    let runs = options.runs.max(1);
    let (mut prompt_plain, mut prompt_adapter) = (Vec::new(), Vec::new());
    let (mut gen_plain, mut gen_adapter) = (Vec::new(), Vec::new());
    // One warm-up round, then the timed ones.
    for round in 0..=runs {
        for with_adapter in [false, true] {
            let session = if with_adapter {
                &mut conditioned
            } else {
                &mut plain
            };
            session.clear();
            if with_adapter {
                session.feed(&Prompt::new().media(&media))?;
            } else {
                session.feed(&Prompt::new().text(marker.clone()))?;
            }
            let start = Instant::now();
            session.feed_tokens(&text_tokens)?;
            let prompt = start.elapsed();
            let start = Instant::now();
            for _ in 0..options.gen_tokens {
                let next = argmax(session.last_logits()?);
                session.feed_tokens(&[next])?;
            }
            let generation = start.elapsed();
            if round > 0 {
                let (p, g) = if with_adapter {
                    (&mut prompt_adapter, &mut gen_adapter)
                } else {
                    (&mut prompt_plain, &mut gen_plain)
                };
                p.push(prompt);
                g.push(generation);
            }
        }
    }
    let tps = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    let prompt_tps_plain = tps(options.prompt_tokens, median(prompt_plain));
    let prompt_tps_adapter = tps(options.prompt_tokens, median(prompt_adapter));
    let gen_tps_plain = tps(options.gen_tokens, median(gen_plain));
    let gen_tps_adapter = tps(options.gen_tokens, median(gen_adapter));

    // One yes/no question over a fresh 64-token clip: the clip's K/V, the
    // media marker and question, and the two candidates' scores.
    let mut question_tokens = 0;
    let (mut yes_no, mut yes_no_cached, mut plain_question) = (Vec::new(), Vec::new(), Vec::new());
    let mut answer = String::new();
    for round in 0..=runs {
        let clip = visual_tokens(n_visual * config.visual_dim, 100 + round as u64);
        let start = Instant::now();
        let media = conditioned.media(Visual {
            data: &clip,
            n_tokens: n_visual,
            dim: config.visual_dim,
        })?;
        conditioned.clear();
        conditioned.feed(&Prompt::new().media(&media).text(QUESTION))?;
        let choices = conditioned.score(&[" yes", " no"])?;
        let fresh = start.elapsed();
        question_tokens = conditioned.tokens().len();
        let start = Instant::now();
        conditioned.clear();
        conditioned.feed(&Prompt::new().media(&media).text(QUESTION))?;
        conditioned.score(&[" yes", " no"])?;
        let cached = start.elapsed();
        let start = Instant::now();
        plain.clear();
        plain.feed(&Prompt::new().text(marker.clone()).text(QUESTION))?;
        plain.score(&[" yes", " no"])?;
        let plain_time = start.elapsed();
        if round > 0 {
            yes_no.push(fresh);
            yes_no_cached.push(cached);
            plain_question.push(plain_time);
        }
        answer = format!("{} {:.3}", choices[0].text.trim(), choices[0].prob);
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let lines = [
        ("threads", options.threads.to_string()),
        ("blocks", config.layers.len().to_string()),
        ("prompt_tokens", options.prompt_tokens.to_string()),
        ("prompt_tps_plain", format!("{prompt_tps_plain:.1}")),
        ("prompt_tps_adapter", format!("{prompt_tps_adapter:.1}")),
        (
            "prompt_ratio",
            format!("{:.3}", prompt_tps_adapter / prompt_tps_plain),
        ),
        ("gen_tokens", options.gen_tokens.to_string()),
        ("gen_tps_plain", format!("{gen_tps_plain:.1}")),
        ("gen_tps_adapter", format!("{gen_tps_adapter:.1}")),
        (
            "gen_ratio",
            format!("{:.3}", gen_tps_adapter / gen_tps_plain),
        ),
        ("question_tokens", question_tokens.to_string()),
        ("yes_no_ms", format!("{:.1}", ms(median(yes_no)))),
        (
            "yes_no_cached_clip_ms",
            format!("{:.1}", ms(median(yes_no_cached))),
        ),
        (
            "yes_no_plain_ms",
            format!("{:.1}", ms(median(plain_question))),
        ),
        ("yes_no_answer", answer),
    ];
    for (name, value) in lines {
        writeln!(out, "{name}: {value}").map_err(LmError::Report)?;
    }
    Ok(())
}

fn argmax(logits: &[f32]) -> Token {
    Token(
        logits
            .iter()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |b, (i, &v)| if v > b.1 { (i, v) } else { b },
            )
            .0 as i32,
    )
}
