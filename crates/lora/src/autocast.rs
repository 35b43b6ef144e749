//! The side path's compute dtype when bf16 activations meet f32 factors: a process-wide setting
//! (with a per-thread override) read at each adapter's forward.
//!
//! - off (default, peft without autocast, the Python anchor's loop): the input is cast to f32,
//!   `Δy = s · (dropout(x) · Aᵀ) · Bᵀ` in f32, joined to the bf16 base output with one rounding
//!   ([`gpu_kernels::add_cast`]).
//! - on (bf16 autocast, what HF's Trainer runs with `bf16=True`): the factors are cast to bf16
//!   for the products, the input stays bf16, `x·Aᵀ` is rounded to bf16 before `·Bᵀ`, and the
//!   second product accumulates onto the base output (`base + h·Bᵀ` in f32, rounded once to
//!   bf16: [`gpu_kernels::gemm_add`]; autocast rounds `Δy` to bf16 first, then the sum). The
//!   optimizer updates f32 factors (in training, masters whose bf16 copies the model holds:
//!   bf16 factors take this path as they are). On the H200 this moves half the side
//!   path's bytes (all-linear r64 4×512: +10 % tokens/s, and +4 % more from the accumulating
//!   product; `docs/benchmarks.md`).
//!
//! Training sets it from `TrainingArgs::lora_autocast`; it starts off.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

static SETTING: AtomicBool = AtomicBool::new(false);

thread_local! {
    static SCOPED: Cell<Option<bool>> = const { Cell::new(None) };
}

/// Sets whether later adapter forwards of the process compute bf16 inputs through bf16 copies
/// of their f32 factors.
pub fn set_bf16_side_path(on: bool) {
    SETTING.store(on, Ordering::Relaxed);
}

/// Runs `f` with the setting `on` for the forwards this thread runs (the process's setting is
/// untouched; the previous scope is restored after, also on panic).
pub fn with_bf16_side_path<R>(on: bool, f: impl FnOnce() -> R) -> R {
    gpu_kernels::thread_override::with_override(&SCOPED, on, f)
}

/// The current setting: this thread's [`with_bf16_side_path`] scope, else the last
/// [`set_bf16_side_path`] (off until set).
pub fn bf16_side_path() -> bool {
    SCOPED.with(Cell::get).unwrap_or_else(|| SETTING.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_scope_overrides_the_process_setting_and_ends_with_its_closure() {
        let outer = bf16_side_path();
        let inner = with_bf16_side_path(!outer, || (bf16_side_path(), with_bf16_side_path(outer, bf16_side_path)));
        assert_eq!(inner, (!outer, outer));
        assert_eq!(bf16_side_path(), outer);
        let other = with_bf16_side_path(!outer, || std::thread::spawn(bf16_side_path).join().expect("thread"));
        assert_eq!(other, outer, "a scope is one thread's");
    }
}
