//! How f32 matrix products are computed on CUDA (torch's `set_float32_matmul_precision`, HF's
//! `tf32` training argument): a process-wide setting read at each product.
//!
//! - [`F32MatmulPrecision::Highest`]: products of f32 operands in f32 (CUDA cores).
//! - [`F32MatmulPrecision::Tf32`]: cuBLASLt's `CUBLAS_COMPUTE_32F_FAST_TF32`: each operand
//!   rounded to TF32 (8-bit exponent, 10-bit mantissa) on the tensor cores, sums in f32. For
//!   `[m, k] · [k, n]` the relative error per product grows like `2⁻¹¹ · √k` instead of
//!   `2⁻²⁴ · √k`; bf16 inputs cast to f32 (LoRA's side path in bf16 training) are exact in
//!   TF32, so only the f32 factors are rounded.
//!
//! Only the CUDA path reads it; the portable paths compute in f32 whatever it says. The
//! starting value comes from `KINDLING_F32_MATMUL` (`tf32` or `highest`, read once), else
//! `Highest`; [`with_f32_matmul_precision`] overrides it for the products one thread issues.

use std::cell::Cell;
use std::sync::atomic::{AtomicU8, Ordering};

/// The precision of f32 × f32 products on CUDA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum F32MatmulPrecision {
    /// Full f32 products.
    Highest,
    /// TF32 tensor-core products with f32 accumulation.
    Tf32,
}

/// The environment variable that sets the starting value.
pub const ENV: &str = "KINDLING_F32_MATMUL";

const UNSET: u8 = 0;
const HIGHEST: u8 = 1;
const TF32: u8 = 2;

static PRECISION: AtomicU8 = AtomicU8::new(UNSET);

thread_local! {
    static SCOPED: Cell<Option<F32MatmulPrecision>> = const { Cell::new(None) };
}

impl F32MatmulPrecision {
    /// Parses `highest` or `tf32`.
    ///
    /// # Errors
    /// A message naming the value and the accepted ones.
    pub fn parse(value: &str) -> Result<Self, String> {
        match value {
            "highest" => Ok(Self::Highest),
            "tf32" => Ok(Self::Tf32),
            other => Err(format!("`{other}` is not an f32 matmul precision (highest, tf32)")),
        }
    }

    fn code(self) -> u8 {
        match self {
            Self::Highest => HIGHEST,
            Self::Tf32 => TF32,
        }
    }
}

/// Sets the precision for every later f32 product of the process.
pub fn set_f32_matmul_precision(precision: F32MatmulPrecision) {
    PRECISION.store(precision.code(), Ordering::Relaxed);
}

/// Runs `f` with `precision` for the products this thread issues (the process's setting is
/// untouched; the previous scope is restored after, also on panic).
pub fn with_f32_matmul_precision<R>(precision: F32MatmulPrecision, f: impl FnOnce() -> R) -> R {
    crate::thread_override::with_override(&SCOPED, precision, f)
}

/// The current precision: this thread's [`with_f32_matmul_precision`] scope, else the last
/// [`set_f32_matmul_precision`], else `KINDLING_F32_MATMUL`, else `Highest`.
///
/// # Panics
/// When `KINDLING_F32_MATMUL` holds another value than `highest` or `tf32` (a misspelt A/B
/// switch must not silently measure the other variant).
pub fn f32_matmul_precision() -> F32MatmulPrecision {
    if let Some(scoped) = SCOPED.with(Cell::get) {
        return scoped;
    }
    match PRECISION.load(Ordering::Relaxed) {
        HIGHEST => F32MatmulPrecision::Highest,
        TF32 => F32MatmulPrecision::Tf32,
        _ => {
            let from_env = match std::env::var(ENV) {
                Ok(v) => F32MatmulPrecision::parse(&v).unwrap_or_else(|e| panic!("{ENV}: {e}")),
                Err(_) => F32MatmulPrecision::Highest,
            };
            // A concurrent `set` wins over the environment's starting value.
            let _ = PRECISION.compare_exchange(UNSET, from_env.code(), Ordering::Relaxed, Ordering::Relaxed);
            f32_matmul_precision()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_two_names_and_names_a_bad_one() {
        assert_eq!(F32MatmulPrecision::parse("tf32"), Ok(F32MatmulPrecision::Tf32));
        assert_eq!(F32MatmulPrecision::parse("highest"), Ok(F32MatmulPrecision::Highest));
        let err = F32MatmulPrecision::parse("TF32").unwrap_err();
        assert!(err.contains("`TF32`") && err.contains("highest, tf32"), "{err}");
    }

    #[test]
    fn the_last_setting_holds_and_a_thread_scope_overrides_it() {
        set_f32_matmul_precision(F32MatmulPrecision::Tf32);
        assert_eq!(f32_matmul_precision(), F32MatmulPrecision::Tf32);
        set_f32_matmul_precision(F32MatmulPrecision::Highest);
        assert_eq!(f32_matmul_precision(), F32MatmulPrecision::Highest);
        let inner = with_f32_matmul_precision(F32MatmulPrecision::Tf32, || {
            let nested = with_f32_matmul_precision(F32MatmulPrecision::Highest, f32_matmul_precision);
            (nested, f32_matmul_precision())
        });
        assert_eq!(inner, (F32MatmulPrecision::Highest, F32MatmulPrecision::Tf32));
        assert_eq!(f32_matmul_precision(), F32MatmulPrecision::Highest, "the scope ends with its closure");
        let other =
            std::thread::spawn(|| with_f32_matmul_precision(F32MatmulPrecision::Tf32, || std::thread::spawn(f32_matmul_precision).join()));
        assert_eq!(other.join().expect("thread").expect("inner"), F32MatmulPrecision::Highest, "a scope is one thread's");
    }
}
