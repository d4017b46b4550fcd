//! A llama.cpp batch that owns its memory: allocated by `llama_batch_init`,
//! freed once when dropped, filled one chunk of a sequence at a time.

use llama_cpp_sys_2 as sys;

use super::Token;

/// A batch of up to `capacity` positions of one sequence (id 0): token ids,
/// or rows of `n_embd` embedding values.
pub(super) struct Batch {
    raw: sys::llama_batch,
    capacity: usize,
    /// 0 for a token batch.
    n_embd: usize,
}

/// What one chunk of a batch holds.
pub(super) enum Chunk<'a> {
    Tokens(&'a [Token]),
    /// `n_embd` values per position.
    Embeddings(&'a [f32]),
}

impl Chunk<'_> {
    fn positions(&self, n_embd: usize) -> usize {
        match self {
            Chunk::Tokens(t) => t.len(),
            Chunk::Embeddings(v) => v.len() / n_embd.max(1),
        }
    }
}

impl Batch {
    /// A token batch of `capacity` positions.
    pub(super) fn tokens(capacity: usize) -> Batch {
        Batch::new(capacity, 0)
    }

    /// An embedding batch of `capacity` rows of `n_embd` values.
    pub(super) fn embeddings(capacity: usize, n_embd: usize) -> Batch {
        Batch::new(capacity, n_embd)
    }

    fn new(capacity: usize, n_embd: usize) -> Batch {
        // SAFETY: allocates `capacity` positions (token ids, or `n_embd`
        // floats each) with one sequence id each; freed once, in Drop.
        let raw = unsafe { sys::llama_batch_init(capacity as i32, n_embd as i32, 1) };
        Batch {
            raw,
            capacity,
            n_embd,
        }
    }

    /// Fills the batch with `chunk` at positions `first_pos..` of sequence
    /// 0; `logits(i)` says whether position i of the chunk needs its
    /// logits. Returns the batch to hand to `llama_decode`, which reads it
    /// and does not keep it.
    pub(super) fn fill(
        &mut self,
        chunk: Chunk<'_>,
        first_pos: usize,
        logits: impl Fn(usize) -> bool,
    ) -> sys::llama_batch {
        let len = chunk.positions(self.n_embd);
        assert!(
            len <= self.capacity,
            "{len} positions in a batch of {}",
            self.capacity
        );
        let b = &mut self.raw;
        // SAFETY: the batch was allocated with room for `capacity` positions
        // of its kind and one sequence id each, and len <= capacity
        // (asserted). A token chunk goes only into a token batch and an
        // embedding chunk only into an embedding batch (asserted below by
        // the pointer being non-null, as llama_batch_init leaves the other
        // one null).
        unsafe {
            match chunk {
                Chunk::Tokens(tokens) => {
                    assert!(!b.token.is_null(), "tokens in an embedding batch");
                    // Token is a transparent llama_token.
                    std::ptr::copy_nonoverlapping(tokens.as_ptr().cast(), b.token, len);
                }
                Chunk::Embeddings(values) => {
                    assert!(!b.embd.is_null(), "embeddings in a token batch");
                    std::ptr::copy_nonoverlapping(values.as_ptr(), b.embd, len * self.n_embd);
                }
            }
            for i in 0..len {
                *b.pos.add(i) = (first_pos + i) as i32;
                *b.n_seq_id.add(i) = 1;
                *(*b.seq_id.add(i)) = 0;
                *b.logits.add(i) = logits(i) as i8;
            }
        }
        b.n_tokens = len as i32;
        *b
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        // SAFETY: allocated by llama_batch_init in `new`, freed once here;
        // the copies `fill` returned are not kept by llama.cpp.
        unsafe { sys::llama_batch_free(self.raw) }
    }
}
