//! The crate's error type.

/// Everything that can go wrong while quantizing, dequantizing or (de)serializing 4-bit tensors.
///
/// Every variant names the tensor, field or index at fault so that a failing checkpoint load
/// points at the entry to inspect.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A blocksize that bitsandbytes does not accept for 4-bit quantization.
    #[error("invalid blocksize {blocksize}: bitsandbytes accepts 32, 64, 128, 256, 512, 1024, 2048 or 4096")]
    InvalidBlocksize {
        /// The rejected blocksize.
        blocksize: usize,
    },

    /// An input value is ±inf or NaN, which has no 4-bit code.
    #[error("cannot quantize {what}: value {value} at flat index {index} is not finite")]
    NonFinite {
        /// What was being quantized (a tensor name or a role such as "absmax").
        what: String,
        /// Flat (row-major) index of the offending value.
        index: usize,
        /// The offending value.
        value: f32,
    },

    /// A buffer does not have the length its shape or quant state implies.
    #[error("{what}: expected {expected} elements, got {actual}")]
    LengthMismatch {
        /// Which buffer (tensor name or role).
        what: String,
        /// Length implied by the shape / quant state.
        expected: usize,
        /// Length actually given.
        actual: usize,
    },

    /// A tensor shape that cannot be used where it was given.
    #[error("{what}: invalid shape {shape:?}: {reason}")]
    InvalidShape {
        /// Which tensor.
        what: String,
        /// The rejected shape.
        shape: Vec<usize>,
        /// Why it was rejected.
        reason: String,
    },

    /// A required tensor of the HF bitsandbytes layout is absent.
    #[error("missing tensor `{name}` (HF bitsandbytes 4-bit layout)")]
    MissingTensor {
        /// Full tensor name that was looked up.
        name: String,
    },

    /// A tensor of the HF bitsandbytes layout has the wrong dtype, shape or size.
    #[error("malformed tensor `{name}`: {reason}")]
    MalformedTensor {
        /// Full tensor name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The packed JSON quant state (`*.quant_state.bitsandbytes__nf4`) is unreadable or inconsistent.
    #[error("malformed quant state `{name}`: {reason}")]
    MalformedQuantState {
        /// Full tensor name of the packed quant state.
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A field of a `quantization_config` block is missing, unsupported or of the wrong type.
    #[error("quantization_config: field `{field}`: {reason}")]
    QuantizationConfig {
        /// The JSON field name.
        field: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Reading a tensor back from a burn device failed.
    #[error("reading `{what}` back from the device failed: {reason}")]
    TensorRead {
        /// Which tensor.
        what: String,
        /// The backend's message.
        reason: String,
    },
}

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;
