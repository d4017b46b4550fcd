//! The scheduler's eval callback: how a [`ResidualHook`] edits a layer's
//! output inside llama.cpp's graph, between graph splits.

use std::ffi::{CStr, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};

use llama_cpp_sys_2 as sys;

use crate::lm::error::HookError;
use crate::lm::hook::{ResidualHook, layer_of};

/// What the eval callback works with; boxed so its address is stable for
/// llama.cpp, and owned by the context that registered it.
pub(super) struct HookState {
    pub(super) hook: Box<dyn ResidualHook>,
    pub(super) wanted: Vec<bool>,
    pub(super) n_embd: usize,
    pub(super) scratch: Vec<f32>,
    /// Times each layer's output was edited.
    pub(super) edits: Vec<u64>,
    pub(super) error: Option<HookError>,
}

/// The scheduler's eval callback. With `ask`, it says whether it wants a
/// tensor (only the `l_out-N` of hooked layers); without, it gets that
/// tensor computed, edits it in place and lets the graph continue.
pub(super) unsafe extern "C" fn eval_callback(
    t: *mut sys::ggml_tensor,
    ask: bool,
    user_data: *mut c_void,
) -> bool {
    if t.is_null() || user_data.is_null() {
        return !ask;
    }
    // SAFETY: user_data is the HookState registered by Context::new, alive
    // until after llama_free; only this decoding thread touches it while
    // llama_decode runs.
    let state = unsafe { &mut *(user_data as *mut HookState) };
    // SAFETY: `t` is non-null (checked above), a valid tensor of the graph
    // being computed, and nothing else touches it during the callback.
    let tensor = unsafe { &mut *t };
    let outcome = catch_unwind(AssertUnwindSafe(|| edit_tensor(state, tensor, ask)));
    match outcome {
        Ok(Ok(answer)) => answer,
        Ok(Err(error)) => {
            state.error = Some(error);
            false
        }
        Err(_) => {
            state.error = Some(HookError::Panicked);
            false
        }
    }
}

fn edit_tensor(
    state: &mut HookState,
    t: &mut sys::ggml_tensor,
    ask: bool,
) -> Result<bool, HookError> {
    // SAFETY: ggml keeps tensor names NUL-terminated within the array.
    let name = unsafe { CStr::from_ptr(t.name.as_ptr()) }.to_string_lossy();
    let Some(layer) = layer_of(&name).filter(|&l| l < state.wanted.len() && state.wanted[l]) else {
        // Not ours: do not ask for it; if handed it anyway, carry on.
        return Ok(!ask);
    };
    if ask {
        return Ok(true);
    }
    let n_embd = state.n_embd;
    if t.type_ != sys::GGML_TYPE_F32
        || t.ne[0] as usize != n_embd
        || t.nb[0] != 4
        || t.nb[1] != 4 * n_embd
    {
        return Err(HookError::Layout {
            name: name.into_owned(),
            n_embd,
            type_: t.type_ as i64,
            ne: t.ne,
            nb: t.nb,
        });
    }
    // SAFETY: `t` is a valid, computed tensor; nbytes is its exact size.
    let bytes = unsafe { sys::ggml_nbytes(t) };
    let values = bytes / 4;
    state.scratch.resize(values, 0.0);
    // SAFETY: scratch holds exactly `bytes` bytes; the tensor is computed
    // (ask == false) and its backend buffer may be read and written here,
    // between graph splits, before any node that reads it runs.
    unsafe {
        sys::ggml_backend_tensor_get(t, state.scratch.as_mut_ptr() as *mut c_void, 0, bytes);
    }
    state.hook.edit(layer, &mut state.scratch, n_embd)?;
    // SAFETY: as above.
    unsafe {
        sys::ggml_backend_tensor_set(t, state.scratch.as_ptr() as *const c_void, 0, bytes);
    }
    state.edits[layer] += 1;
    Ok(true)
}
