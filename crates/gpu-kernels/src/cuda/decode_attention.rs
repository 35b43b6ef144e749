//! Attention of one decoded position in one CubeCL launch (formulas in [`crate::decode`]): one
//! cube (8 planes) per query head. The cube rotates its query and its K/V head's new key (RoPE,
//! rounded to the compute dtype as the RoPE kernel rounds), the first query head of each K/V
//! head writes the new key and value into the cache buffers in place, and the cube then scores
//! every position (one plane per position, each lane `d_h / 32` adjacent elements read as one
//! vector, the score rounded to the compute dtype as a GEMM's output is), takes an f32 softmax
//! (the probabilities rounded likewise) and sums the values the same way round: plane `p` sums
//! positions `p, p + 8, …` (each lane its `d_h / 32` elements, one vector load per position),
//! then the 8 planes' sums are added in plane order. Every plane keeps [`ROUND`] positions'
//! loads in flight, so a position costs a fraction of a load's latency (with one thread per
//! output element and position parity, the values phase took a dependent load round per 8
//! positions: ≈ 0.14 µs per position and layer on the H200). The new position's key and value
//! come from shared memory, so no cube waits for another's write.
//!
//! The position is a launch scalar, or (`on_device`) the first element of a one-element integer
//! buffer with the RoPE tables whole (`[capacity, d_h]`, row `pos` read): a CUDA graph recorded
//! once then serves every position, the buffer advanced by the step's last kernel
//! ([`advance_decoding`]).

use burn::tensor::DType;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

use super::interop::contiguous;
use crate::decode_position::MAX_POSITIONS;

const PLANES: usize = 8;
/// Positions whose loads one plane issues together (scores and values).
const ROUND: usize = 8;

#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn decode_attention_kernel<F: Float, I: Int, N: Size>(
    qkv: &[F],
    cos: &[F],
    sin: &[F],
    keys: &mut [F],
    values: &mut [F],
    key_rows: &[Vector<F, N>],
    value_rows: &[Vector<F, N>],
    out: &mut [F],
    position: &[I],
    groups: usize,
    kv_offset: usize,
    v_offset: usize,
    capacity: usize,
    pos_scalar: usize,
    scale: f32,
    #[comptime] dh: usize,
    #[comptime] on_device: bool,
) {
    let mut pos = pos_scalar;
    let mut rope_row = 0usize;
    if on_device {
        pos = usize::cast_from(position[0]);
        rope_row = pos * dh;
    }
    let head = CUBE_POS_X as usize;
    if pos >= capacity || pos >= MAX_POSITIONS {
        // A device position past the cache: loud NaNs rather than writes outside it.
        if (UNIT_POS as usize) < dh {
            out[head * dh + UNIT_POS as usize] = F::cast_from(f32::new(f32::NAN));
        }
        terminate!();
    }
    let kv = head / groups;
    let unit = UNIT_POS as usize;
    let lane = UNIT_POS_X as usize;
    let plane = UNIT_POS_Y as usize;
    let half = comptime![dh / 2];
    let mut q = Shared::<[f32]>::new_slice(dh);
    let mut k_new = Shared::<[f32]>::new_slice(dh);
    let mut v_new = Shared::<[f32]>::new_slice(dh);
    let mut scores = Shared::<[f32]>::new_slice(MAX_POSITIONS);
    let mut partial = Shared::<[f32]>::new_slice(comptime![PLANES * dh]);
    let mut stats = Shared::<[f32]>::new_slice(comptime![2 * PLANES]);
    let cache_row = (kv * capacity + pos) * dh;
    if unit < half {
        let c = f32::cast_from(cos[rope_row + unit]);
        let s = f32::cast_from(sin[rope_row + unit]);
        let qb = head * dh;
        let q1 = f32::cast_from(qkv[qb + unit]);
        let q2 = f32::cast_from(qkv[qb + unit + half]);
        // The RoPE kernel's arithmetic (`super::rope`): explicit fused multiply-adds.
        q[unit] = f32::cast_from(F::cast_from(fma(q1, c, -(q2 * s))));
        q[unit + half] = f32::cast_from(F::cast_from(fma(q2, c, q1 * s)));
        let kb = kv_offset + kv * dh;
        let k1 = f32::cast_from(qkv[kb + unit]);
        let k2 = f32::cast_from(qkv[kb + unit + half]);
        let r1 = F::cast_from(fma(k1, c, -(k2 * s)));
        let r2 = F::cast_from(fma(k2, c, k1 * s));
        k_new[unit] = f32::cast_from(r1);
        k_new[unit + half] = f32::cast_from(r2);
        let vb = v_offset + kv * dh;
        let va = qkv[vb + unit];
        let vz = qkv[vb + unit + half];
        v_new[unit] = f32::cast_from(va);
        v_new[unit + half] = f32::cast_from(vz);
        if head % groups == 0 {
            keys[cache_row + unit] = r1;
            keys[cache_row + unit + half] = r2;
            values[cache_row + unit] = va;
            values[cache_row + unit + half] = vz;
        }
    }
    sync_cube();
    // Scores: plane `p` takes positions p, p + 8, …, ROUND per round (their loads issued
    // together); lane `l` the elements `w·l .. w·l + w` (w = d_h / 32), one vector. Rows past
    // the last position read the last one (always inside the cache) and are dropped; row `pos`
    // is taken from shared memory.
    let t = pos + 1;
    let w = key_rows.vector_size().comptime();
    let row_vectors = comptime![dh / w];
    let mut j0 = plane;
    while j0 < t {
        let mut accs = Array::<f32>::new(ROUND);
        #[unroll]
        for u in 0..ROUND {
            let j = j0 + u * PLANES;
            let k = key_rows[(kv * capacity + min(j, pos)) * row_vectors + lane];
            let mut acc = 0.0f32;
            #[unroll]
            for e in 0..w {
                let d = lane * w + e;
                acc += q[d] * select(j == pos, k_new[d], f32::cast_from(k.extract(e)));
            }
            accs[u] = acc;
        }
        #[unroll]
        for u in 0..ROUND {
            let j = j0 + u * PLANES;
            let score = f32::cast_from(F::cast_from(plane_sum(accs[u]))) * scale;
            if lane == 0 && j < t {
                scores[j] = score;
            }
        }
        j0 += comptime![ROUND * PLANES];
    }
    sync_cube();
    let mut m = scores[0];
    let mut i = unit;
    while i < t {
        let score = scores[i];
        if score > m {
            m = score;
        }
        i += comptime![PLANES * 32];
    }
    let m = plane_max(m);
    if lane == 0 {
        stats[plane] = m;
    }
    sync_cube();
    let mut max = stats[0];
    #[unroll]
    for p in 1..PLANES {
        let other = stats[p];
        if other > max {
            max = other;
        }
    }
    // Exponentials and their sum: every thread strides over the positions.
    let mut sum = 0.0f32;
    i = unit;
    while i < t {
        let e = (scores[i] - max).exp();
        scores[i] = e;
        sum += e;
        i += comptime![PLANES * 32];
    }
    let plane_total = plane_sum(sum);
    sync_cube();
    if lane == 0 {
        stats[PLANES + plane] = plane_total;
    }
    sync_cube();
    let mut total = 0.0f32;
    #[unroll]
    for p in 0..PLANES {
        total += stats[PLANES + p];
    }
    let inv = 1.0f32 / total;
    // Values: plane `p` sums positions p, p + 8, … in order, ROUND per round (loads issued
    // together), lane `l` the elements `w·l .. w·l + w`; then element d adds the planes' sums in
    // plane order.
    let mut accs = Array::<f32>::new(w);
    #[unroll]
    for e in 0..w {
        accs[e] = 0.0f32;
    }
    let mut j0 = plane;
    while j0 < t {
        let mut rows = Array::<Vector<F, N>>::new(ROUND);
        #[unroll]
        for u in 0..ROUND {
            let j = j0 + u * PLANES;
            rows[u] = value_rows[(kv * capacity + min(j, pos)) * row_vectors + lane];
        }
        #[unroll]
        for u in 0..ROUND {
            let j = j0 + u * PLANES;
            if j < t {
                let weight = f32::cast_from(F::cast_from(scores[j] * inv));
                #[unroll]
                for e in 0..w {
                    let d = lane * w + e;
                    accs[e] += weight * select(j == pos, v_new[d], f32::cast_from(rows[u].extract(e)));
                }
            }
        }
        j0 += comptime![ROUND * PLANES];
    }
    #[unroll]
    for e in 0..w {
        partial[plane * dh + lane * w + e] = accs[e];
    }
    sync_cube();
    if unit < dh {
        let mut total = 0.0f32;
        #[unroll]
        for p in 0..PLANES {
            total += partial[p * dh + unit];
        }
        out[head * dh + unit] = F::cast_from(total);
    }
}

/// Where the launch takes the position from.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Position {
    /// A launch scalar; the RoPE tables hold that position's row alone (`d_h` values).
    Host(usize),
    /// The first element of a one-element integer buffer (i32/i64), read by the kernel; the
    /// RoPE tables hold rows for every position `0..capacity` (`capacity · d_h` values).
    Device(CubeTensor),
}

/// `(o, keys, values)`: the attention output `[1, H·d_h]` and the cache buffers with the
/// position written, or the inputs back when the shapes do not fit the kernel (the caller
/// composes the ops). The buffers are written in place when this call holds them alone, else
/// copied first.
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub(crate) fn decode_attention(
    qkv: CubeTensor,
    cos: CubeTensor,
    sin: CubeTensor,
    keys: CubeTensor,
    values: CubeTensor,
    position: Position,
    heads: usize,
) -> Result<(CubeTensor, CubeTensor, CubeTensor), (CubeTensor, CubeTensor, CubeTensor, CubeTensor, CubeTensor)> {
    let kd = keys.meta.shape().clone();
    let (pos_ok, table_rows) = match &position {
        Position::Host(pos) => (kd.len() == 4 && *pos < kd[2] && *pos < MAX_POSITIONS, 1),
        Position::Device(p) => (p.meta.num_elements() == 1 && matches!(p.dtype, DType::I32 | DType::I64), kd.get(2).copied().unwrap_or(0)),
    };
    let fits = kd.len() == 4
        && pos_ok
        && kd[0] == 1
        && values.meta.shape() == &kd
        && kd[3].is_multiple_of(32)
        && 2 * kd[3] <= PLANES * 32
        && heads.is_multiple_of(kd[1].max(1))
        && qkv.meta.num_elements() == (heads + 2 * kd[1]) * kd[3]
        && cos.meta.num_elements() == table_rows * kd[3]
        && sin.meta.num_elements() == table_rows * kd[3]
        && [&cos.dtype, &sin.dtype, &keys.dtype, &values.dtype].iter().all(|d| **d == qkv.dtype)
        && matches!(qkv.dtype, DType::BF16 | DType::F16 | DType::F32)
        && keys.is_contiguous()
        && values.is_contiguous();
    if !fits {
        return Err((qkv, cos, sin, keys, values));
    }
    let (hkv, capacity, dh) = (kd[1], kd[2], kd[3]);
    let (qkv, cos, sin) = (contiguous(qkv), contiguous(cos), contiguous(sin));
    let owned = |t: CubeTensor| if t.can_mut() { t } else { t.copy() };
    let (keys, values) = (owned(keys), owned(values));
    let client = qkv.client.clone();
    let out = client.empty(heads * dh * qkv.dtype.size());
    let result = CubeTensor::new_contiguous(client.clone(), qkv.device.clone(), [1, heads * dh].into(), out.clone(), qkv.dtype);
    let cache_len = hkv * capacity * dh;
    let scale = 1.0 / (dh as f32).sqrt();
    // On the host route the position buffer is never read: any buffer stands in for it.
    let (pos_scalar, pos_buffer, pos_dtype, on_device) = match &position {
        Position::Host(pos) => (*pos, qkv.handle.clone(), DType::I32, false),
        Position::Device(p) => (0, p.handle.clone(), p.dtype, true),
    };
    macro_rules! launch {
        ($f:ty, $i:ty) => {
            // SAFETY: `qkv` holds (H + 2·H_kv)·d_h values, the tables d_h (or capacity·d_h with
            // a device position), the caches H_kv·capacity·d_h, the output H·d_h; the kernel
            // checks `pos < capacity` (a host position was checked above); one cube per query
            // head reads its K/V head's rows `0..=pos`, and only the first of each head's cubes
            // writes row `pos` (read by none: the new row is taken from shared memory).
            unsafe {
                decode_attention_kernel::launch_unchecked::<$f, $i>(
                    &client,
                    CubeCount::Static(heads as u32, 1, 1),
                    CubeDim::new_2d(32, PLANES as u32),
                    dh / 32,
                    BufferArg::from_raw_parts(qkv.handle.clone(), qkv.meta.num_elements()),
                    BufferArg::from_raw_parts(cos.handle.clone(), table_rows * dh),
                    BufferArg::from_raw_parts(sin.handle.clone(), table_rows * dh),
                    BufferArg::from_raw_parts(keys.handle.clone(), cache_len),
                    BufferArg::from_raw_parts(values.handle.clone(), cache_len),
                    BufferArg::from_raw_parts(keys.handle.clone(), cache_len),
                    BufferArg::from_raw_parts(values.handle.clone(), cache_len),
                    BufferArg::from_raw_parts(out, heads * dh),
                    BufferArg::from_raw_parts(pos_buffer, 1),
                    heads / hkv,
                    heads * dh,
                    (heads + hkv) * dh,
                    capacity,
                    pos_scalar,
                    scale,
                    dh,
                    on_device,
                )
            }
        };
    }
    match (qkv.dtype, pos_dtype) {
        (DType::BF16, DType::I64) => launch!(half::bf16, i64),
        (DType::F16, DType::I64) => launch!(half::f16, i64),
        (DType::F32, DType::I64) => launch!(f32, i64),
        (DType::BF16, _) => launch!(half::bf16, i32),
        (DType::F16, _) => launch!(half::f16, i32),
        _ => launch!(f32, i32),
    }
    Ok((result, keys, values))
}
