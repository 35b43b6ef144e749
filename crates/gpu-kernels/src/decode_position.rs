//! Decoding at a position held on the device, so that one recorded step (a CUDA graph,
//! [`crate::StepGraph`]) serves every position.
//!
//! The position is a one-element integer tensor `p` (i32/i64). [`decode_attention_at`] is
//! [`crate::decode_attention`] reading `p` on the device and the RoPE rows at `p` from tables
//! of every position (`[1, capacity, d_h]`); [`advance_decoding`] ends a step: `ids ← chosen`
//! (the next step's input), `history[p − base] ← chosen`, `p ← p + 1`, in place on CUDA.
//! A step kept between generations starts over with [`start_decoding`] (`ids ← first`,
//! `p ← base`) after [`copy_positions`] has put the new prompt's keys and values into its cache,
//! both in place on CUDA.
//!
//! Other backends run the same arithmetic through the separate ops, reading `p` back to the
//! host (a synchronization per call: correct, not fast).

use burn::tensor::{Int, Tensor};

use crate::decode::portable_decode_attention;

/// The most positions the CUDA decoding attention scores in one launch (its scores live in
/// shared memory as f32: 32 KiB); past it, [`decode_attention_at`] cannot run on CUDA.
pub const MAX_POSITIONS: usize = 8192;

/// Whether [`decode_attention_at`] runs on CUDA as one kernel for these heads, reading the
/// position on the device (`d_h` a multiple of 32 up to 128, `H` a multiple of `H_kv`) — what a
/// recorded step needs: the fallback reads the position back to the host.
pub fn attends_on_device(heads: usize, kv_heads: usize, head_dim: usize) -> bool {
    head_dim > 0 && head_dim.is_multiple_of(32) && head_dim <= 128 && kv_heads > 0 && heads.is_multiple_of(kv_heads)
}

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

/// Starts a kept decoding state over (see the module docs): `ids ← first`, `p ← base`. On
/// CUDA one kernel writes both buffers in place; elsewhere the tensors are replaced.
///
/// # Shapes
/// - `first`, `ids`: `[1, 1]`; `position`: `[1]`; one integer dtype
///
/// # Panics
/// If the shapes disagree.
pub fn start_decoding(first: Tensor<2, Int>, ids: &mut Tensor<2, Int>, position: &mut Tensor<1, Int>, base: usize) {
    assert_eq!(first.dims(), [1, 1], "start_decoding: one first id");
    assert_eq!(ids.dims(), [1, 1], "start_decoding: one input id");
    assert_eq!(position.dims(), [1], "start_decoding: the position is one element");
    #[cfg(feature = "cuda")]
    if crate::gemm::is_cuda(&first.device()) {
        type B = burn_cubecl::CubeBackend;
        let prim = |t: Tensor<2, Int>| t.try_into_primitive::<B>().expect("a CUDA tensor");
        let (f, i) = (prim(first.clone()), prim(ids.clone()));
        let p = position.clone().try_into_primitive::<B>().expect("a CUDA tensor");
        if crate::cuda::decode_advance::start_decoding(&f, &i, &p, base) {
            return;
        }
    }
    let (device, dtype) = (position.device(), position.dtype());
    *position = Tensor::<1, Int>::from_data(burn::tensor::TensorData::new(vec![base as i64], [1]).convert_dtype(dtype), (&device, dtype));
    *ids = first;
}

/// `dst[.., 0..len, ..] ← src[.., 0..len, ..]` along the positions axis of two cache buffers
/// (see the module docs). On CUDA one kernel writes `dst` in place (its handle, and so a
/// recorded graph's address, stays the same); elsewhere `dst` is replaced.
///
/// # Shapes
/// - `src`: `[b, h, capacity_src, d]`; `dst`: `[b, h, capacity_dst, d]`; `len` ≤ both capacities
///
/// # Panics
/// If the shapes disagree.
pub fn copy_positions(src: &Tensor<4>, dst: &mut Tensor<4>, len: usize) {
    let ([b, h, cs, d], [b2, h2, cd, d2]) = (src.dims(), dst.dims());
    assert!(
        b == b2 && h == h2 && d == d2 && len <= cs.min(cd),
        "copy_positions: {len} positions of {:?} into {:?}",
        src.dims(),
        dst.dims()
    );
    #[cfg(feature = "cuda")]
    if crate::gemm::is_cuda(&src.device()) {
        type B = burn_cubecl::CubeBackend;
        let prim = |t: Tensor<4>| t.try_into_primitive::<B>().expect("a CUDA tensor");
        if crate::cuda::cache_copy::copy_positions(&prim(src.clone()), &prim(dst.clone()), len) {
            return;
        }
    }
    if len > 0 {
        *dst = dst.clone().slice_assign([0..b, 0..h, 0..len, 0..d], src.clone().narrow(2, 0, len).cast(dst.dtype()));
    }
}
