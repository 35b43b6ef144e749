//! The explicit key/value cache of autoregressive decoding.
//!
//! Each layer keeps two buffers `[batch, kv_heads, capacity, head_dim]` and writes each new
//! position in place; the first `len` positions are valid. Capacity grows by doubling (at least
//! [`MIN_CAPACITY`]), so a token costs one small write per buffer instead of a copy of the
//! whole cache (which concatenation would make).

use burn::tensor::Tensor;

/// The smallest capacity a buffer is allocated with.
pub const MIN_CAPACITY: usize = 256;

/// Keys and values of one layer for the positions seen so far.
#[derive(Debug, Clone, Default)]
pub struct LayerCache {
    /// `[batch, kv_heads, capacity, head_dim]` after RoPE.
    keys: Option<Tensor<4>>,
    /// `[batch, kv_heads, capacity, head_dim]`.
    values: Option<Tensor<4>>,
    /// Valid positions.
    len: usize,
}

impl LayerCache {
    /// Positions cached.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends new keys/values along the sequence axis and returns views of the valid ones.
    ///
    /// # Shapes
    /// - k, v: `[batch, kv_heads, new, head_dim]`
    /// - output: `[batch, kv_heads, len + new, head_dim]` each
    pub fn append(&mut self, k: Tensor<4>, v: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let end = self.len + k.dims()[2];
        let keys = write(self.keys.take(), self.len, end, k);
        let values = write(self.values.take(), self.len, end, v);
        self.len = end;
        self.keys = Some(keys.clone());
        self.values = Some(values.clone());
        (keys.narrow(2, 0, end), values.narrow(2, 0, end))
    }

    /// Attends one new position of a batch of one from the fused projections
    /// (`gpu_kernels::decode_attention`: RoPE, the cache write and the attention, one launch on
    /// CUDA), extending the cache; the heads' outputs side by side.
    ///
    /// # Shapes
    /// - qkv: `[1, (H + 2·H_kv)·d_h]`; cos, sin: `[1, 1, d_h]`
    /// - output: `[1, H·d_h]`
    pub fn attend_one(
        &mut self,
        qkv: Tensor<2>,
        cos: Tensor<3>,
        sin: Tensor<3>,
        heads: usize,
        kv_heads: usize,
        head_dim: usize,
    ) -> Tensor<2> {
        let pos = self.len;
        let (device, dtype) = (qkv.device(), qkv.dtype());
        let dims = [1, kv_heads, head_dim];
        let keys = reserve(self.keys.take(), pos, pos + 1, dims, &device, dtype);
        let values = reserve(self.values.take(), pos, pos + 1, dims, &device, dtype);
        let (o, keys, values) = gpu_kernels::decode_attention(qkv, cos, sin, keys, values, pos, heads);
        self.keys = Some(keys);
        self.values = Some(values);
        self.len = pos + 1;
        o
    }

    /// Allocates both buffers with room for `capacity` positions now (the cached ones kept), so
    /// that nothing grows while decoding; the capacity taken is [`reserve`]'s (a power of two).
    ///
    /// # Shapes
    /// - `[b, kv_heads, head_dim]` of the buffers
    pub fn reserve(&mut self, capacity: usize, dims: [usize; 3], device: &burn::tensor::Device, dtype: burn::tensor::DType) {
        self.keys = Some(reserve(self.keys.take(), self.len, capacity, dims, device, dtype));
        self.values = Some(reserve(self.values.take(), self.len, capacity, dims, device, dtype));
    }

    /// The positions the buffers hold room for (0 before the first write).
    pub fn capacity(&self) -> usize {
        self.keys.as_ref().map_or(0, |k| k.dims()[2])
    }

    /// [`LayerCache::attend_one`] at the position held on the device (`gpu_kernels::decode_attention_at`,
    /// the RoPE tables of every position): the buffers are written in place at row `position`
    /// and keep their capacity; the host's count of positions is left as it was (the device
    /// holds it) until [`LayerCache::set_len`].
    ///
    /// # Shapes
    /// - qkv: `[1, (H + 2·H_kv)·d_h]`; cos, sin: `[1, capacity, d_h]`; position: `[1]`
    /// - output: `[1, H·d_h]`
    ///
    /// # Panics
    /// If the buffers were not reserved ([`LayerCache::reserve`]) or the tables do not cover them.
    pub fn attend_at(&mut self, qkv: Tensor<2>, rope: &super::RopeTables, heads: usize) -> Tensor<2> {
        let position = rope.device_position.as_ref().expect("attend_at: tables for a device position");
        let keys = self.keys.take().expect("attend_at: a cache reserved before decoding");
        let values = self.values.take().expect("attend_at: a cache reserved before decoding");
        let (o, keys, values) = gpu_kernels::decode_attention_at(qkv, rope.cos.clone(), rope.sin.clone(), keys, values, position, heads);
        self.keys = Some(keys);
        self.values = Some(values);
        o
    }

    /// Takes `src`'s valid positions into this cache's buffers (reserved, at least as long) in
    /// place on CUDA (`gpu_kernels::copy_positions`), so a recorded step that reads these
    /// buffers sees them; the count of valid positions becomes `src`'s.
    ///
    /// # Panics
    /// If this cache was not reserved with room for them, or the two disagree in shape.
    pub fn load_prefix(&mut self, src: &LayerCache) {
        let (Some(keys), Some(values)) = (self.keys.as_mut(), self.values.as_mut()) else {
            panic!("load_prefix: a cache reserved before loading");
        };
        if let (Some(sk), Some(sv)) = (&src.keys, &src.values) {
            gpu_kernels::copy_positions(sk, keys, src.len);
            gpu_kernels::copy_positions(sv, values, src.len);
        }
        self.set_len(src.len);
    }

    /// Sets the count of valid positions (after decoding at a device position).
    ///
    /// # Panics
    /// Past the capacity.
    pub fn set_len(&mut self, len: usize) {
        assert!(len <= self.capacity(), "LayerCache: {len} positions past the capacity {}", self.capacity());
        self.len = len;
    }
}

/// `new` written at positions `start..end` of `buffer`, grown first when too short.
fn write(buffer: Option<Tensor<4>>, start: usize, end: usize, new: Tensor<4>) -> Tensor<4> {
    let [b, h, _, d] = new.dims();
    let buffer = reserve(buffer, start, end, [b, h, d], &new.device(), new.dtype());
    buffer.slice_assign([0..b, 0..h, start..end, 0..d], new)
}

/// The capacity a buffer for `positions` positions is allocated with: the next power of two,
/// at least [`MIN_CAPACITY`].
pub fn capacity_for(positions: usize) -> usize {
    positions.next_power_of_two().max(MIN_CAPACITY)
}

/// `buffer` (its first `start` positions kept) with room for `end` positions: itself when long
/// enough, else a buffer of [`capacity_for`]`(end)`.
fn reserve(
    buffer: Option<Tensor<4>>,
    start: usize,
    end: usize,
    [b, h, d]: [usize; 3],
    device: &burn::tensor::Device,
    dtype: burn::tensor::DType,
) -> Tensor<4> {
    match buffer {
        Some(buf) if buf.dims()[2] >= end => buf,
        old => {
            let capacity = capacity_for(end);
            let grown = Tensor::<4>::zeros([b, h, capacity, d], (device, dtype));
            match old {
                Some(old) if start > 0 => grown.slice_assign([0..b, 0..h, 0..start, 0..d], old.narrow(2, 0, start)),
                _ => grown,
            }
        }
    }
}

/// The cache of a whole model: one [`LayerCache`] per block and the number of positions seen.
///
/// Passed explicitly to [`crate::Llama::forward`]; a fresh cache starts at position 0.
#[derive(Debug, Clone)]
pub struct KvCache {
    /// One entry per decoder block.
    pub layers: Vec<LayerCache>,
    /// Positions already processed (the next token's position).
    pub len: usize,
}

impl KvCache {
    /// An empty cache for a model with `num_layers` blocks.
    pub fn new(num_layers: usize) -> Self {
        Self { layers: vec![LayerCache::default(); num_layers], len: 0 }
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        *self = Self::new(self.layers.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    #[test]
    fn appends_match_concatenation_across_growth() {
        let device = Device::flex();
        let mut cache = LayerCache::default();
        let mut all_k: Option<Tensor<4>> = None;
        // 250 + 1 + 1 + 300: fits, fits, grows past 256, grows past 512.
        for (step, n) in [250usize, 1, 1, 300].into_iter().enumerate() {
            let k = Tensor::<4>::random([1, 2, n, 4], Distribution::Normal(0.0, 1.0), &device);
            let v = k.clone().mul_scalar(-2.0);
            let (ck, cv) = cache.append(k.clone(), v);
            all_k = Some(match all_k {
                Some(prev) => Tensor::cat(vec![prev, k], 2),
                None => k,
            });
            let want = all_k.clone().expect("keys");
            assert_eq!(ck.dims(), want.dims(), "step {step}");
            assert_eq!(cache.len(), want.dims()[2]);
            ck.into_data().assert_eq(&want.clone().into_data(), true);
            cv.into_data().assert_eq(&want.mul_scalar(-2.0).into_data(), true);
        }
    }

    /// One position at a time through `attend_one` — across the growth past 256 — equals RoPE,
    /// `append` and attention over the valid prefix.
    #[test]
    fn attend_one_matches_append_and_attention() {
        let device = Device::flex();
        let (heads, hkv, dh) = (4, 2, 8);
        let mut fused = LayerCache::default();
        let mut plain = LayerCache::default();
        let prompt = Tensor::<4>::random([1, hkv, 254, dh], Distribution::Normal(0.0, 1.0), &device);
        fused.append(prompt.clone(), prompt.clone().mul_scalar(0.5));
        plain.append(prompt.clone(), prompt.mul_scalar(0.5));
        for step in 0..4 {
            let qkv = Tensor::<2>::random([1, (heads + 2 * hkv) * dh], Distribution::Normal(0.0, 1.0), &device);
            let angle = Tensor::<3>::random([1, 1, dh], Distribution::Uniform(-3.0, 3.0), &device);
            let (cos, sin) = (angle.clone().cos(), angle.sin());
            let got = fused.attend_one(qkv.clone(), cos.clone(), sin.clone(), heads, hkv, dh);
            let q = gpu_kernels::rope_heads(qkv.clone().narrow(1, 0, heads * dh).reshape([1, 1, heads, dh]), cos.clone(), sin.clone());
            let k = gpu_kernels::rope_heads(qkv.clone().narrow(1, heads * dh, hkv * dh).reshape([1, 1, hkv, dh]), cos, sin);
            let v = qkv.narrow(1, (heads + hkv) * dh, hkv * dh).reshape([1, hkv, 1, dh]);
            let (keys, values) = plain.append(k, v);
            let want = gpu_kernels::attention(q.reshape([1, hkv, heads / hkv, dh]), keys, values, false, None).reshape([1, heads * dh]);
            assert_eq!(fused.len(), 255 + step);
            got.into_data().assert_approx_eq::<f32>(&want.into_data(), burn::tensor::Tolerance::rel_abs(1e-5, 1e-6));
        }
    }
}
