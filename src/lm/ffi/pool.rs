//! The ggml thread pool a session computes on.

use std::ptr::NonNull;

use llama_cpp_sys_2 as sys;

use super::init_backend;
use crate::lm::error::LmError;

/// A ggml thread pool kept for the life of a session: llama.cpp's graph
/// and the cross-attention blocks both compute on it. Without one, ggml
/// spawns and joins its worker threads on every graph compute, and the
/// eval callback splits each decode into one compute per hooked layer.
///
/// Computes on one pool must never overlap. A pool is neither `Send` nor
/// `Sync` (it is shared through `Rc`), so everything that computes on it
/// runs on one thread, one compute at a time: llama.cpp inside
/// llama_decode, and the blocks' graphs from the eval callback (between
/// llama.cpp's computes) or outside any decode.
pub struct Pool {
    ptr: NonNull<sys::ggml_threadpool>,
    threads: usize,
}

impl Pool {
    pub fn new(threads: usize) -> Result<Pool, LmError> {
        init_backend();
        let threads = threads.max(1);
        // SAFETY: default params are plain data; a null return is handled.
        let ptr = unsafe {
            let mut params = sys::ggml_threadpool_params_default(threads as i32);
            sys::ggml_threadpool_new(&mut params)
        };
        let ptr = NonNull::new(ptr)
            .ok_or_else(|| LmError::Context(format!("no ggml thread pool of {threads} threads")))?;
        Ok(Pool { ptr, threads })
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    pub(super) fn raw(&self) -> *mut sys::ggml_threadpool {
        self.ptr.as_ptr()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: freed once; contexts that use it hold an Rc and free
        // themselves first.
        unsafe { sys::ggml_threadpool_free(self.ptr.as_ptr()) }
    }
}
