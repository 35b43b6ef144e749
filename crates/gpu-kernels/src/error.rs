//! The crate's error type.

/// Errors of `gpu-kernels`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor or buffer has the wrong shape or length.
    #[error("{what}: {reason}")]
    Shape {
        /// Which argument.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A dtype the operation does not handle.
    #[error("{what}: unsupported dtype {dtype:?}")]
    DType {
        /// Which argument.
        what: &'static str,
        /// The dtype it had.
        dtype: burn::tensor::DType,
    },
    /// The CUDA driver or cuBLASLt refused a call.
    #[error("CUDA: {call} failed: {reason}")]
    Cuda {
        /// The call that failed.
        call: &'static str,
        /// The status it returned.
        reason: String,
    },
    /// The operation needs a CUDA device (and this crate's `cuda` feature).
    #[error("{0}")]
    NotCuda(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
