//! Decoding at a position held on the device, so that one recorded step (a CUDA graph,
//! [`crate::StepGraph`]) serves every position.
//!
//! The position is a one-element integer tensor `p` (i32/i64). [`decode_attention_at`] is
//! [`crate::decode_attention`] reading `p` on the device and the RoPE rows at `p` from tables
//! of every position (`[1, capacity, d_h]`); [`advance_decoding`] ends a step: `ids ← chosen`
//! (the next step's input), `history[p − base] ← chosen`, `p ← p + 1`, in place on CUDA.
//!
//! Other backends run the same arithmetic through the separate ops, reading `p` back to the
//! host (a synchronization per call: correct, not fast).

use burn::tensor::{Int, Tensor};

use crate::decode::portable_decode_attention;

/// The most positions the CUDA decoding attention scores in one launch (its scores live in
/// shared memory as f32: 32 KiB); past it, [`decode_attention_at`] cannot run on CUDA.
pub const MAX_POSITIONS: usize = 8192;

/// The position's value, read back to the host.
fn host_position(position: &Tensor<1, Int>) -> usize {
    let values = position.clone().into_data().convert::<i64>().try_into_vec::<i64>();
    let p = values.ok().and_then(|v| v.first().copied()).expect("a decoding position readable as an integer");
    usize::try_from(p).unwrap_or_else(|_| panic!("decoding position {p} is negative"))
}

/// [`crate::decode_attention`] at the device position `position` (see the module docs):
/// `(o, keys, values)` with the cache buffers written at row `p`.
///
/// # Shapes
/// - `qkv`: `[1, (H + 2·H_kv)·d_h]`; `cos`, `sin`: `[1, capacity, d_h]` (every position)
/// - `keys`, `values`: `[1, H_kv, capacity, d_h]`; `position`: `[1]`
/// - output: `[1, H·d_h]` and the two buffers
///
/// # Panics
/// If the shapes disagree. A position past the cache gives NaN outputs on CUDA (where the
/// kernel cannot stop the host) and panics elsewhere.
pub fn decode_attention_at(
    qkv: Tensor<2>,
    cos: Tensor<3>,
    sin: Tensor<3>,
    keys: Tensor<4>,
    values: Tensor<4>,
    position: &Tensor<1, Int>,
    heads: usize,
) -> (Tensor<2>, Tensor<4>, Tensor<4>) {
    let [_, hkv, capacity, dh] = keys.dims();
    assert_eq!(cos.dims(), [1, capacity, dh], "decode_attention_at: RoPE tables for the cache's {capacity} positions");
    assert_eq!(sin.dims(), cos.dims(), "decode_attention_at: sin and cos tables differ in shape");
    assert_eq!(position.dims(), [1], "decode_attention_at: the position is one element");
    assert_eq!(qkv.dims(), [1, (heads + 2 * hkv) * dh], "decode_attention_at: qkv for {heads} + 2·{hkv} heads of {dh}");
    #[cfg(feature = "cuda")]
    let (qkv, cos, sin, keys, values) = {
        use crate::cuda::decode_attention::Position;
        let device_position =
            || Position::Device(position.clone().try_into_primitive::<burn_cubecl::CubeBackend>().expect("a CUDA tensor"));
        match crate::decode::cuda_decode_attention((qkv, cos, sin, keys, values), device_position, heads) {
            Ok(out) => return out,
            Err(inputs) => inputs,
        }
    };
    // The separate ops, the position read to the host.
    let pos = host_position(position);
    assert!(pos < capacity, "decode_attention_at: position {pos} past the cache's {capacity}");
    portable_decode_attention(qkv, cos.narrow(1, pos, 1), sin.narrow(1, pos, 1), keys, values, pos, heads)
}

/// Ends a decoding step (see the module docs): `ids ← chosen`, `history[p − base] ← chosen`
/// when `base ≤ p < base + slots`, `p ← p + 1`. On CUDA one kernel writes the three buffers in
/// place (their handles, and so a recorded graph's addresses, stay the same); elsewhere the
/// tensors are replaced.
///
/// # Shapes
/// - `chosen`, `ids`: `[1, 1]`; `history`: `[1, slots]`; `position`: `[1]`; one integer dtype
///
/// # Panics
/// If the shapes disagree.
pub fn advance_decoding(
    chosen: Tensor<2, Int>,
    ids: &mut Tensor<2, Int>,
    history: &mut Tensor<2, Int>,
    position: &mut Tensor<1, Int>,
    base: usize,
) {
    assert_eq!(chosen.dims(), [1, 1], "advance_decoding: one chosen id");
    assert_eq!(ids.dims(), [1, 1], "advance_decoding: one input id");
    assert_eq!(position.dims(), [1], "advance_decoding: the position is one element");
    #[cfg(feature = "cuda")]
    if crate::gemm::is_cuda(&chosen.device()) {
        type B = burn_cubecl::CubeBackend;
        let prim = |t: Tensor<2, Int>| t.try_into_primitive::<B>().expect("a CUDA tensor");
        let (c, i, h) = (prim(chosen.clone()), prim(ids.clone()), prim(history.clone()));
        let p = position.clone().try_into_primitive::<B>().expect("a CUDA tensor");
        if crate::cuda::decode_advance::advance_decoding(&c, &i, &h, &p, base) {
            return;
        }
    }
    let pos = host_position(position);
    let slots = history.dims()[1];
    if pos >= base && pos - base < slots {
        let slot = pos - base;
        *history = history.clone().slice_assign([0..1, slot..slot + 1], chosen.clone());
    }
    *ids = chosen;
    *position = position.clone().add_scalar(1);
}
