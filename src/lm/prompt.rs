//! Interleaved prompts: text and media chunks in any order, as in Flamingo.
//!
//! A media chunk is written into the token stream as the adapter's media
//! marker text (`<image>` by default); from its first token on, every token
//! attends to that media until the next one. Few-shot examples end with the
//! adapter's end-of-chunk text (`<|endofchunk|>`), which also stops
//! generation.

use std::sync::Arc;

use super::xattn::MediaKv;

#[derive(Clone)]
pub enum Chunk {
    Text(String),
    Media(Arc<MediaKv>),
    /// The end-of-chunk marker (closes a few-shot example's answer).
    EndOfChunk,
}

#[derive(Clone, Default)]
pub struct Prompt {
    chunks: Vec<Chunk>,
}

impl Prompt {
    pub fn new() -> Prompt {
        Prompt::default()
    }

    pub fn text(mut self, text: impl Into<String>) -> Prompt {
        self.chunks.push(Chunk::Text(text.into()));
        self
    }

    pub fn media(mut self, media: &Arc<MediaKv>) -> Prompt {
        self.chunks.push(Chunk::Media(Arc::clone(media)));
        self
    }

    pub fn end_of_chunk(mut self) -> Prompt {
        self.chunks.push(Chunk::EndOfChunk);
        self
    }

    /// A few-shot example: media, then the question and answer text, then
    /// the end-of-chunk marker.
    pub fn example(self, media: &Arc<MediaKv>, text: impl Into<String>) -> Prompt {
        self.media(media).text(text).end_of_chunk()
    }

    pub fn chunks(&self) -> &[Chunk] {
        &self.chunks
    }
}
