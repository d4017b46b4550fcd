//! Runs every item of a dataset through encoder → resampler → LM + adapter.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::dataset::{Dataset, Item};
use super::error::{EvalError, ItemError};
use super::report::{Outcome, Report};
use crate::lm::{Adapter, ContextOptions, MediaKv, Model, Prompt, Session, Visual};
use crate::ring::Features;
use crate::vision::{Encoder, Precision, Resampler};
use crate::watch::{self, example_text, query_text};

pub struct EvalOptions {
    pub lm: PathBuf,
    pub adapter: PathBuf,
    pub encoder: PathBuf,
    pub resampler: PathBuf,
    pub threads: u32,
    /// Evaluate only the first N items (0: all).
    pub limit: usize,
}

/// Answers every item and returns the figures. Progress goes to `progress`.
pub fn evaluate(
    options: &EvalOptions,
    dataset: &Dataset,
    progress: &mut dyn Write,
) -> Result<Report, EvalError> {
    let encoder = Encoder::load(&options.encoder)?;
    let resampler = Resampler::load(&options.resampler)?;
    resampler.check_fits(&encoder)?;
    let model = Model::load(&options.lm)?;
    let adapter = Arc::new(Adapter::load(&options.adapter)?);
    let mut session = Session::new(
        &model,
        Some(adapter),
        &ContextOptions {
            n_ctx: 1024,
            threads: options.threads.max(1) as i32,
            ..ContextOptions::default()
        },
    )?;
    let mut runner = Runner {
        dir: &dataset.dir,
        encoder: &encoder,
        resampler: &resampler,
        features: HashMap::new(),
    };
    let items: Vec<&Item> = match options.limit {
        0 => dataset.items.iter().collect(),
        n => dataset.items.iter().take(n).collect(),
    };
    let started = Instant::now();
    let mut outcomes = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let answer = runner
            .answer(&mut session, item)
            .map_err(|source| EvalError::Item {
                item: item.id.clone(),
                source: Box::new(source),
            })?;
        outcomes.push(Outcome::of(item, answer));
        if (i + 1) % 50 == 0 || i + 1 == items.len() {
            let _ = writeln!(
                progress,
                "# {}/{} items, {:.0} s",
                i + 1,
                items.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(Report::new(outcomes, started.elapsed()))
}

struct Runner<'a> {
    dir: &'a Path,
    encoder: &'a Encoder,
    resampler: &'a Resampler,
    /// Encoded images by path: few-shot examples recur across items.
    features: HashMap<PathBuf, Arc<Features>>,
}

impl Runner<'_> {
    fn features(&mut self, image: &Path) -> Result<Arc<Features>, ItemError> {
        if let Some(f) = self.features.get(image) {
            return Ok(Arc::clone(f));
        }
        let path = self.dir.join(image);
        let frame = crate::picture::load_rgb(&path).map_err(|source| ItemError::Image {
            path: path.clone(),
            source,
        })?;
        let features = Arc::new(
            self.encoder
                .encode(&frame, Precision::F32)
                .map_err(|source| ItemError::Encode { path, source })?,
        );
        // Bounded: a dataset's images are few, but a huge one must not grow
        // without limit.
        if self.features.len() >= 4096 {
            self.features.clear();
        }
        self.features
            .insert(image.to_path_buf(), Arc::clone(&features));
        Ok(features)
    }

    fn media(
        &mut self,
        session: &Session<'_>,
        images: &[PathBuf],
    ) -> Result<Arc<MediaKv>, ItemError> {
        let features = images
            .iter()
            .map(|p| self.features(p))
            .collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<&Features> = features.iter().map(|f| f.as_ref()).collect();
        let tokens = self
            .resampler
            .resample(&refs)
            .map_err(ItemError::Resample)?;
        Ok(session.media(Visual {
            data: &tokens.data,
            n_tokens: tokens.n,
            dim: tokens.dim,
        })?)
    }

    fn answer(
        &mut self,
        session: &mut Session<'_>,
        item: &Item,
    ) -> Result<watch::Answer, ItemError> {
        session.clear();
        let mut prompt = Prompt::new();
        for example in &item.examples {
            let kv = self.media(session, std::slice::from_ref(&example.image))?;
            prompt = prompt.example(&kv, example_text(&item.question, &example.answer));
        }
        let kv = self.media(session, &item.frames)?;
        prompt = prompt.media(&kv).text(query_text(&item.question));
        session.feed(&prompt)?;
        Ok(watch::answer(session, &item.answer_type)?)
    }
}
