//! Attention of one decoded position in one CubeCL launch (formulas in [`crate::decode`]): one
//! cube (8 planes) per query head. The cube rotates its query and its K/V head's new key (RoPE,
//! rounded to the compute dtype as the RoPE kernel rounds), the first query head of each K/V
//! head writes the new key and value into the cache buffers in place, and the cube then scores
//! every position (one plane per position, lanes across `d_h`, the score rounded to the compute
//! dtype as a GEMM's output is), takes an f32 softmax (the probabilities rounded likewise) and
//! sums the values (two halves of the positions per output element). The new position's key and
//! value come from shared memory, so no cube waits for another's write.

use burn::tensor::DType;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

use super::interop::contiguous;

const PLANES: usize = 8;
/// The most positions one launch scores (the scores live in shared memory as f32: 32 KiB).
pub(crate) const MAX_POSITIONS: usize = 8192;

#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn decode_attention_kernel<F: Float>(
    qkv: &[F],
    cos: &[F],
    sin: &[F],
    keys: &mut [F],
    values: &mut [F],
    out: &mut [F],
    groups: usize,
    kv_offset: usize,
    v_offset: usize,
    capacity: usize,
    pos: usize,
    scale: f32,
    #[comptime] dh: usize,
) {
    let head = CUBE_POS_X as usize;
    let kv = head / groups;
    let unit = UNIT_POS as usize;
    let lane = UNIT_POS_X as usize;
    let plane = UNIT_POS_Y as usize;
    let half = comptime![dh / 2];
    let mut q = Shared::<[f32]>::new_slice(dh);
    let mut k_new = Shared::<[f32]>::new_slice(dh);
    let mut v_new = Shared::<[f32]>::new_slice(dh);
    let mut scores = Shared::<[f32]>::new_slice(MAX_POSITIONS);
    let mut partial = Shared::<[f32]>::new_slice(comptime![2 * dh]);
    let mut stats = Shared::<[f32]>::new_slice(comptime![2 * PLANES]);
    let cache_row = (kv * capacity + pos) * dh;
    if unit < half {
        let c = f32::cast_from(cos[unit]);
        let s = f32::cast_from(sin[unit]);
        let qb = head * dh;
        let q1 = f32::cast_from(qkv[qb + unit]);
        let q2 = f32::cast_from(qkv[qb + unit + half]);
        q[unit] = f32::cast_from(F::cast_from(q1 * c - q2 * s));
        q[unit + half] = f32::cast_from(F::cast_from(q2 * c + q1 * s));
        let kb = kv_offset + kv * dh;
        let k1 = f32::cast_from(qkv[kb + unit]);
        let k2 = f32::cast_from(qkv[kb + unit + half]);
        let r1 = F::cast_from(k1 * c - k2 * s);
        let r2 = F::cast_from(k2 * c + k1 * s);
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
    // Scores: plane `p` takes positions p, p + 8, …; each lane d_h / 32 products.
    let t = pos + 1;
    let per_lane = comptime![dh / 32];
    let mut j = plane;
    while j < t {
        let mut acc = 0.0f32;
        if j == pos {
            #[unroll]
            for e in 0..per_lane {
                let d = lane + e * 32;
                acc += q[d] * k_new[d];
            }
        } else {
            let row = (kv * capacity + j) * dh;
            #[unroll]
            for e in 0..per_lane {
                let d = lane + e * 32;
                acc += q[d] * f32::cast_from(keys[row + d]);
            }
        }
        let score = f32::cast_from(F::cast_from(plane_sum(acc))) * scale;
        if lane == 0 {
            scores[j] = score;
        }
        j += PLANES;
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
    // Values: thread (d, h) sums the positions of parity h for element d (2·d_h ≤ 256 threads).
    if unit < comptime![2 * dh] {
        let d = unit % dh;
        let parity = unit / dh;
        let mut acc = 0.0f32;
        let mut j = parity;
        while j < t {
            let p = f32::cast_from(F::cast_from(scores[j] * inv));
            if j == pos {
                acc += p * v_new[d];
            } else {
                acc += p * f32::cast_from(values[(kv * capacity + j) * dh + d]);
            }
            j += 2;
        }
        partial[unit] = acc;
    }
    sync_cube();
    if unit < dh {
        out[head * dh + unit] = F::cast_from(partial[unit] + partial[unit + dh]);
    }
}

/// `(o, keys, values)`: the attention output `[1, H·d_h]` and the cache buffers with position
/// `pos` written, or `None` when the shapes do not fit the kernel (the caller composes the ops).
/// The buffers are written in place when this call holds them alone, else copied first.
#[allow(clippy::too_many_arguments)]
pub(crate) fn decode_attention(
    qkv: CubeTensor,
    cos: CubeTensor,
    sin: CubeTensor,
    keys: CubeTensor,
    values: CubeTensor,
    pos: usize,
    heads: usize,
) -> Result<(CubeTensor, CubeTensor, CubeTensor), (CubeTensor, CubeTensor, CubeTensor, CubeTensor, CubeTensor)> {
    let kd = keys.meta.shape().clone();
    let fits = kd.len() == 4
        && kd[0] == 1
        && values.meta.shape() == &kd
        && pos < kd[2]
        && pos < MAX_POSITIONS
        && kd[3].is_multiple_of(32)
        && 2 * kd[3] <= PLANES * 32
        && heads.is_multiple_of(kd[1].max(1))
        && qkv.meta.num_elements() == (heads + 2 * kd[1]) * kd[3]
        && cos.meta.num_elements() == kd[3]
        && sin.meta.num_elements() == kd[3]
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
    macro_rules! launch {
        ($f:ty) => {
            // SAFETY: `qkv` holds (H + 2·H_kv)·d_h values, the tables d_h, the caches
            // H_kv·capacity·d_h with `pos < capacity`, the output H·d_h; one cube per query head
            // reads its K/V head's rows `0..=pos`, and only the first of each head's cubes writes
            // row `pos` (read by none: the new row is taken from shared memory).
            unsafe {
                decode_attention_kernel::launch_unchecked::<$f>(
                    &client,
                    CubeCount::Static(heads as u32, 1, 1),
                    CubeDim::new_2d(32, PLANES as u32),
                    BufferArg::from_raw_parts(qkv.handle.clone(), qkv.meta.num_elements()),
                    BufferArg::from_raw_parts(cos.handle.clone(), dh),
                    BufferArg::from_raw_parts(sin.handle.clone(), dh),
                    BufferArg::from_raw_parts(keys.handle.clone(), cache_len),
                    BufferArg::from_raw_parts(values.handle.clone(), cache_len),
                    BufferArg::from_raw_parts(out, heads * dh),
                    heads / hkv,
                    heads * dh,
                    (heads + hkv) * dh,
                    capacity,
                    pos,
                    scale,
                    dh,
                )
            }
        };
    }
    match qkv.dtype {
        DType::BF16 => launch!(half::bf16),
        DType::F16 => launch!(half::f16),
        _ => launch!(f32),
    }
    Ok((result, keys, values))
}
