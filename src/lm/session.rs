//! A conditioned LM session: one llama.cpp sequence whose residual stream
//! the adapter's blocks edit, fed interleaved prompts, answering by choice
//! scoring or generation.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use super::adapter::Adapter;
use super::answer::{self, Choice, GenerateOptions, Generated, StopReason};
use super::error::{HookError, LmError};
use super::ffi::{Context, ContextOptions, Model, Pool, SavedState, Token};
use super::hook::ResidualHook;
use super::prompt::{Chunk, Prompt};
use super::xattn::{Blocks, MediaKv, Visual};

/// What the hook needs while llama.cpp decodes: the blocks and the media
/// the tokens of the current batch attend to.
struct Shared {
    blocks: Blocks,
    current: Option<Arc<MediaKv>>,
}

struct XattnHook {
    shared: Rc<RefCell<Shared>>,
    /// LM layers whose *output* the blocks edit (block layer - 1).
    edited: Vec<usize>,
}

impl ResidualHook for XattnHook {
    fn layers(&self) -> Vec<usize> {
        self.edited.clone()
    }

    fn edit(&mut self, layer: usize, rows: &mut [f32], _n_embd: usize) -> Result<(), HookError> {
        let Some(block) = self.edited.iter().position(|&l| l == layer) else {
            return Ok(());
        };
        let mut shared = self.shared.borrow_mut();
        let Some(media) = shared.current.clone() else {
            // Tokens before any media are left untouched.
            return Ok(());
        };
        shared.blocks.apply(block, rows, &media)
    }
}

/// A session's state after a prefix, to come back to for each query.
pub struct Prefix {
    state: SavedState,
    history: Vec<Option<Arc<MediaKv>>>,
    tokens: Vec<Token>,
}

impl Prefix {
    pub fn n_tokens(&self) -> usize {
        self.tokens.len()
    }

    pub fn bytes(&self) -> usize {
        self.state.bytes()
    }
}

pub struct Session<'m> {
    ctx: Context<'m>,
    shared: Option<Rc<RefCell<Shared>>>,
    /// Per decoded token: its id and the media it attends to.
    tokens: Vec<Token>,
    media_of: Vec<Option<Arc<MediaKv>>>,
    /// Logits after the last decoded token.
    last: Option<Vec<f32>>,
    marker: Vec<Token>,
    end_of_chunk: Vec<Token>,
}

impl<'m> Session<'m> {
    /// A session on `model`, conditioned by `adapter` when given (checked
    /// against the model first).
    pub fn new(
        model: &'m Model,
        adapter: Option<Arc<Adapter>>,
        options: &ContextOptions,
    ) -> Result<Session<'m>, LmError> {
        let pool = Rc::new(Pool::new(options.threads.max(1) as usize)?);
        Session::with_pool(model, adapter, options, pool)
    }

    /// A session computing on `pool`, which sessions on one thread should
    /// share: each pool keeps worker threads that spin briefly after every
    /// compute, and two pools' workers would fight over the cores.
    pub fn with_pool(
        model: &'m Model,
        adapter: Option<Arc<Adapter>>,
        options: &ContextOptions,
        pool: Rc<Pool>,
    ) -> Result<Session<'m>, LmError> {
        let (shared, hook, marker, end_of_chunk) = match adapter {
            Some(adapter) => {
                adapter.check_lm(model)?;
                let c = adapter.config();
                let marker = model.tokenize_with(&c.media_marker, false, false)?;
                let end_of_chunk = model.tokenize_with(&c.end_of_chunk, false, false)?;
                let edited = c.layers.iter().map(|l| l - 1).collect();
                let shared = Rc::new(RefCell::new(Shared {
                    blocks: Blocks::new(adapter, Rc::clone(&pool)),
                    current: None,
                }));
                let hook: Box<dyn ResidualHook> = Box::new(XattnHook {
                    shared: Rc::clone(&shared),
                    edited,
                });
                (Some(shared), Some(hook), marker, end_of_chunk)
            }
            None => (None, None, Vec::new(), Vec::new()),
        };
        Ok(Session {
            ctx: Context::with_pool(model, options, hook, pool)?,
            shared,
            tokens: Vec::new(),
            media_of: Vec::new(),
            last: None,
            marker,
            end_of_chunk,
        })
    }

    pub fn model(&self) -> &Model {
        self.ctx.model()
    }

    /// Computes the K/V of one media chunk for every block, once; the
    /// result can go into any number of prompts.
    pub fn media(&self, visual: Visual<'_>) -> Result<Arc<MediaKv>, LmError> {
        let shared = self.shared.as_ref().ok_or(LmError::NoAdapter)?;
        Ok(Arc::new(shared.borrow_mut().blocks.media_kv(visual)?))
    }

    /// How many times the blocks' hook saw each LM layer's output (indexed
    /// by layer; empty without an adapter).
    pub fn hook_edits(&self) -> Vec<u64> {
        self.ctx.hook_edits()
    }

    /// Tokens decoded so far.
    pub fn tokens(&self) -> &[Token] {
        &self.tokens
    }

    /// For each decoded token, which media it attends to, as an index into
    /// the distinct media of the sequence in order of appearance (-1: none).
    pub fn media_indices(&self) -> Vec<i64> {
        let mut seen: Vec<*const MediaKv> = Vec::new();
        self.media_of
            .iter()
            .map(|m| match m {
                None => -1,
                Some(m) => {
                    let p = Arc::as_ptr(m);
                    match seen.iter().position(|&s| s == p) {
                        Some(i) => i as i64,
                        None => {
                            seen.push(p);
                            seen.len() as i64 - 1
                        }
                    }
                }
            })
            .collect()
    }

    /// Appends a prompt to the sequence. Returns the logits of the last
    /// token of each text chunk (in order).
    pub fn feed(&mut self, prompt: &Prompt) -> Result<Vec<Vec<f32>>, LmError> {
        let mut out = Vec::new();
        for chunk in prompt.chunks() {
            let (tokens, media) = match chunk {
                Chunk::Text(text) => (
                    self.model().tokenize_with(text, false, true)?,
                    self.current(),
                ),
                Chunk::Media(media) => {
                    if self.shared.is_none() {
                        return Err(LmError::NoAdapter);
                    }
                    (self.marker.clone(), Some(Arc::clone(media)))
                }
                Chunk::EndOfChunk => (self.end_of_chunk.clone(), self.current()),
            };
            self.decode(&tokens, media)?;
            if matches!(chunk, Chunk::Text(_)) {
                out.extend(self.last.clone());
            }
        }
        Ok(out)
    }

    /// Appends tokens as they are (e.g. a generated token), attending to
    /// the latest media of the sequence.
    pub fn feed_tokens(&mut self, tokens: &[Token]) -> Result<(), LmError> {
        let media = self.current();
        self.decode(tokens, media)
    }

    /// Decodes `tokens` attending to `media` and keeps the last token's
    /// logits. Prepends BOS at the start of a sequence when the model wants
    /// one.
    fn decode(&mut self, tokens: &[Token], media: Option<Arc<MediaKv>>) -> Result<(), LmError> {
        let mut tokens = tokens.to_vec();
        if self.tokens.is_empty()
            && let Some(bos) = self.model().bos()
        {
            tokens.insert(0, bos);
        }
        if tokens.is_empty() {
            return Ok(());
        }
        self.set_current(media.clone());
        let mut logits = self.ctx.decode_rows(&tokens, &[tokens.len() - 1])?;
        self.tokens.extend_from_slice(&tokens);
        self.media_of
            .extend(std::iter::repeat_n(media, tokens.len()));
        self.last = logits.pop();
        Ok(())
    }

    fn current(&self) -> Option<Arc<MediaKv>> {
        self.media_of.last().cloned().flatten()
    }

    fn set_current(&self, media: Option<Arc<MediaKv>>) {
        if let Some(shared) = &self.shared {
            shared.borrow_mut().current = media;
        }
    }

    /// Logits after the last decoded token; an error after a truncation or
    /// restore, until something is fed.
    pub fn last_logits(&self) -> Result<&[f32], LmError> {
        self.last.as_deref().ok_or(LmError::NoLogitsYet)
    }

    /// Cuts the sequence back to its first `n` tokens.
    pub fn truncate(&mut self, n: usize) {
        if n < self.tokens.len() {
            self.ctx.truncate(n);
            self.tokens.truncate(n);
            self.media_of.truncate(n);
            self.last = None;
        }
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.ctx.clear();
        self.tokens.clear();
        self.media_of.clear();
        self.last = None;
    }

    /// Saves the sequence so far (e.g. few-shot examples) for
    /// [`Session::restore`].
    pub fn save(&self) -> Result<Prefix, LmError> {
        Ok(Prefix {
            state: self.ctx.save_state()?,
            history: self.media_of.clone(),
            tokens: self.tokens.clone(),
        })
    }

    /// Puts the sequence back to a saved prefix.
    pub fn restore(&mut self, prefix: &Prefix) -> Result<(), LmError> {
        self.ctx.restore_state(&prefix.state)?;
        self.tokens = prefix.tokens.clone();
        self.media_of = prefix.history.clone();
        self.last = None;
        Ok(())
    }

    /// Log-likelihood of each candidate continuation of the sequence, with
    /// probabilities normalised over the candidates. The sequence is left
    /// as it was. Single-token candidates need no decode at all, and tokens
    /// every candidate starts with (" 3" is " " + "3" in many vocabularies)
    /// are decoded once for all of them.
    pub fn score(&mut self, candidates: &[&str]) -> Result<Vec<Choice>, LmError> {
        if candidates.is_empty() {
            return Err(LmError::NoCandidates);
        }
        let n = self.tokens.len();
        let first = answer::log_softmax(self.last_logits()?);
        let mut tokenized = Vec::with_capacity(candidates.len());
        for candidate in candidates {
            let tokens = self.model().tokenize_with(candidate, false, false)?;
            if tokens.is_empty() {
                return Err(LmError::EmptyCandidate(candidate.to_string()));
            }
            tokenized.push(tokens);
        }
        // The shared prefix, leaving each candidate at least one token.
        let shortest = tokenized.iter().map(Vec::len).min().unwrap_or(0);
        let mut common = 0;
        while common + 1 < shortest && tokenized.iter().all(|t| t[common] == tokenized[0][common]) {
            common += 1;
        }
        let result = self.score_after_prefix(&tokenized, common, first);
        // Whatever happened, the sequence goes back to what it was.
        self.ctx.truncate(n);
        let log_probs = result?;
        Ok(answer::choices(candidates, &log_probs))
    }

    fn score_after_prefix(
        &mut self,
        tokenized: &[Vec<Token>],
        common: usize,
        first: Vec<f64>,
    ) -> Result<Vec<f64>, LmError> {
        let media = self.current();
        let (base, next) = if common == 0 {
            (0.0, first)
        } else {
            let prefix = &tokenized[0][..common];
            self.set_current(media.clone());
            let rows: Vec<usize> = (0..common).collect();
            let logits = self.ctx.decode_rows(prefix, &rows)?;
            let mut base = first[prefix[0].index()];
            for (row, token) in prefix.iter().enumerate().skip(1) {
                base += answer::log_softmax(&logits[row - 1])[token.index()];
            }
            (base, answer::log_softmax(&logits[common - 1]))
        };
        let start = self.tokens.len() + common;
        let mut log_probs = Vec::with_capacity(tokenized.len());
        for tokens in tokenized {
            let rest = &tokens[common..];
            let mut total = base + next[rest[0].index()];
            if rest.len() > 1 {
                // Logits of every candidate token but the last predict the
                // next one; the candidate is cut off again afterwards.
                self.set_current(media.clone());
                let rows: Vec<usize> = (0..rest.len() - 1).collect();
                let logits = self.ctx.decode_rows(rest, &rows);
                self.ctx.truncate(start);
                for (row, logits) in logits?.iter().enumerate() {
                    total += answer::log_softmax(logits)[rest[row + 1].index()];
                }
            }
            log_probs.push(total);
        }
        Ok(log_probs)
    }

    /// Generates a continuation (decoded into the sequence).
    pub fn generate(&mut self, options: &GenerateOptions) -> Result<Generated, LmError> {
        let mut sampler = answer::Sampler::new(options);
        let media = self.current();
        let mut text = String::new();
        let mut tokens = Vec::new();
        let stop = loop {
            if tokens.len() >= options.max_tokens {
                break StopReason::MaxTokens;
            }
            let token = sampler.pick(self.last_logits()?);
            if self.model().is_end_of_generation(token) {
                break StopReason::EndOfSequence;
            }
            let piece = self.model().piece(token);
            if options.stop_at_newline && piece.contains('\n') {
                text.push_str(piece.split('\n').next().unwrap_or_default());
                break StopReason::Newline;
            }
            text.push_str(&piece);
            tokens.push(token);
            self.decode(&[token], media.clone())?;
            if !self.end_of_chunk.is_empty() && tokens.ends_with(&self.end_of_chunk) {
                let marker = self.adapter_end_of_chunk();
                if let Some(cut) = text.rfind(&marker) {
                    text.truncate(cut);
                }
                break StopReason::EndOfChunk;
            }
        };
        Ok(Generated { text, tokens, stop })
    }

    fn adapter_end_of_chunk(&self) -> String {
        self.shared
            .as_ref()
            .map(|s| s.borrow().blocks.adapter().config().end_of_chunk.clone())
            .unwrap_or_default()
    }
}
