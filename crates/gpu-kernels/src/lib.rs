//! Fast paths for burn tensors on CUDA, with portable fallbacks.
//!
//! - [`linear`] / [`gemm`]: `y = x · Wᵀ` and `op(A) · op(B)` on cuBLASLt (bf16 with f32
//!   accumulation) on CUDA devices, with a hand-written backward that also runs on cuBLASLt;
//!   [`bmm`] the same over a batch (strided-batched cuBLASLt).
//! - [`attention`]: causal scaled dot-product attention from batched GEMMs and an f32 softmax,
//!   over blocks of queries ([`attention_blocks`]) so that no whole score matrix is kept for
//!   the backward, which recomputes each block.
//! - [`nf4_dequantize`]: bitsandbytes-layout packed NF4/FP4 weights ([`PackedNf4`], optionally
//!   double-quantized) to a dense weight, by one CubeCL kernel on CUDA.
//! - [`nf4_linear`]: `x · Wᵀ` for a packed weight whose backward dequantizes again instead of
//!   keeping the dense weight alive (QLoRA's memory budget); [`nf4_linear_gradient_only`] the
//!   same backward under a value of zeros, for a recomputed product whose value is never read;
//!   [`nf4_lora_linear`] such a product with its LoRA adapter as one op, whose backward joins
//!   the two input gradients inside the base's product.
//! - [`rms_norm`], [`rope_heads`], [`scaled_softmax`], [`swiglu`]: the layer's element-wise
//!   chains (RMSNorm, RoPE with the head transpose, attention's scaled causal softmax, the MLP
//!   gate), one kernel forward and one backward each on CUDA.
//! - [`cross_entropy`]: per-row cross-entropy over a large vocabulary that never materializes
//!   f32 logits (one kernel each way on CUDA); [`linear_cross_entropy`] the vocabulary
//!   projection and the cross-entropy together, over chunks of rows, so that the logits never
//!   exist whole.
//! - [`nf4_gemv_fused`]: batch-1 decoding products of one row with up to three packed weights,
//!   the RMSNorm before and SwiGLU / a residual add after folded in (one launch on CUDA).
//! - [`decode_attention_at`] / [`advance_decoding`]: one decoded position's attention at a
//!   position held in a device buffer, and the step's bookkeeping (next input id, history, the
//!   position advanced) in place, so that [`StepGraph`] — a step recorded once as a CUDA graph
//!   and replayed — serves every position; [`start_decoding`] / [`copy_positions`] start such
//!   a step over for a new prompt, in place, so one recording serves many generations.
//! - [`add_cast`]: a sum of two float dtypes in f32, rounded once (a LoRA adapter's f32 output
//!   joining its base's bf16 output), one kernel on CUDA.
//! - [`dropout::fused_dropout`]: inverted dropout fused with a cast, its mask regenerated from a
//!   counter hash in the backward instead of kept (CUDA training).
//! - [`adamw_update`] / [`squared_norm`]: AdamW's update and the gradients' squared norm, one
//!   kernel per parameter tensor on CUDA; [`adamw_update_all`] / [`squared_norm_grouped`] one
//!   kernel per group of [`UPDATE_GROUP`] tensors.
//! - [`HostRows`]: rows of a host-resident table (frozen token embeddings) gathered by the
//!   device from pinned, mapped pages, with no read-back of the ids (CUDA).
//! - [`gradient_root`]: a root for `backward()` that hands a known gradient to a tensor (a
//!   recomputed block's output), with nothing run over the tensor on CUDA.
//! - [`set_f32_matmul_precision`]: f32 products on CUDA in f32 or on TF32 tensor cores.
//!
//! # Invariant
//! Every function computes the same mathematical result on every device: the CUDA paths are
//! taken only on CUDA devices with the `cuda` feature, and otherwise the functions are burn's
//! own ops (and, for [`nf4_dequantize`], bit-identical to the host codec on every path).
//! [`gradient_root`] is the one exception by design: only its gradients are specified (the
//! same on every device), not its value.
//! [`StepGraph`] alone exists only on CUDA (elsewhere it says so with an error).
//! Libraries call these with backend-generic `Tensor`s; the binary's features pick the device.
//!
//! # Features
//! - `cuda`: burn's CUDA backend with NVRTC as CubeCL's compiler and cuBLASLt (dlopened from
//!   `libcublasLt.so.13`; put `/usr/local/cuda/lib64` on `LD_LIBRARY_PATH`).
//!   Requires burn's `fusion` feature to be off (the CubeCL primitive must be a plain tensor);
//!   enabling it is a compile error here, not a silent slow path.
#![warn(missing_docs)]

pub mod add_cast;
pub mod attention;
pub mod attention_blocks;
pub mod counter_hash;
pub mod cross_entropy;
pub mod decode;
pub mod decode_position;
pub mod dropout;
pub mod env_switch;
mod error;
#[cfg(any(test, feature = "cuda"))]
pub mod extension;
pub mod gemm;
pub mod gemv_tuning;
pub mod gradient_root;
pub mod host_rows;
pub mod linear;
pub mod linear_cross_entropy;
pub mod lora_nf4;
pub mod nf4;
pub mod norm;
pub mod optim;
pub mod precision;
pub mod rope;
mod row_chunks;
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
mod server_debug;
pub mod softmax;
pub mod step_graph;
pub mod stochastic_round;
pub mod swiglu;
pub mod thread_override;

#[cfg(feature = "cuda")]
pub mod cuda;

pub use add_cast::add_cast;
pub use attention::attention;
pub use cross_entropy::cross_entropy;
pub use decode::{GemvEpilogue, decode_attention, nf4_gemv_fused};
pub use decode_position::{advance_decoding, copy_positions, decode_attention_at, start_decoding};
pub use error::{Error, Result};
pub use gemm::{bmm, gemm, gemm_add, is_cuda};
pub use gemv_tuning::{GemvTuning, gemv_tuning, set_gemv_tuning};
pub use gradient_root::gradient_root;
pub use host_rows::HostRows;
pub use linear::{linear, portable_linear};
pub use linear_cross_entropy::linear_cross_entropy;
pub use lora_nf4::nf4_lora_linear;
pub use nf4::{HostScales, Nf4Meta, PackedNf4, nf4_dequantize, nf4_dequantize_unfused, nf4_linear, nf4_linear_gradient_only};
pub use norm::rms_norm;
pub use optim::{AdamWOutputs, AdamWStep, UPDATE_GROUP, adamw_update, adamw_update_all, squared_norm, squared_norm_grouped};
pub use precision::{F32MatmulPrecision, f32_matmul_precision, set_f32_matmul_precision, with_f32_matmul_precision};
pub use rope::rope_heads;
pub use softmax::scaled_softmax;
pub use step_graph::StepGraph;
pub use swiglu::swiglu;
