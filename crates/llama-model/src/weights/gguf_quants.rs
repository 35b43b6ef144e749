//! GGUF (ggml) tensor types and their dequantization to f32.
//!
//! Block formats (32 values a block, `d`/`m` stored as f16):
//! - `Q8_0`: `d`, 32 × i8 `q` → `x = d·q`
//! - `Q4_0`: `d`, 16 bytes → low nibbles are values 0..16, high nibbles 16..32, `x = d·(q − 8)`
//! - `Q4_1`: `d`, `m`, 16 bytes (same nibble order) → `x = d·q + m`

use half::{bf16, f16};

/// A ggml tensor type this loader understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    /// f32.
    F32,
    /// f16.
    F16,
    /// bf16.
    BF16,
    /// 4-bit, scale only.
    Q4_0,
    /// 4-bit, scale and minimum.
    Q4_1,
    /// 8-bit, scale only.
    Q8_0,
}

impl GgmlType {
    /// The type for a ggml type id, or `None` for unsupported ones.
    pub fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            8 => Self::Q8_0,
            30 => Self::BF16,
            _ => return None,
        })
    }

    /// The ggml name of a type id (for messages), including unsupported ones.
    pub fn name_of(id: u32) -> String {
        let known = [
            (0, "F32"),
            (1, "F16"),
            (2, "Q4_0"),
            (3, "Q4_1"),
            (6, "Q5_0"),
            (7, "Q5_1"),
            (8, "Q8_0"),
            (9, "Q8_1"),
            (10, "Q2_K"),
            (11, "Q3_K"),
            (12, "Q4_K"),
            (13, "Q5_K"),
            (14, "Q6_K"),
            (15, "Q8_K"),
            (30, "BF16"),
        ];
        known.iter().find(|(i, _)| *i == id).map(|(_, n)| (*n).to_string()).unwrap_or(format!("type {id}"))
    }

    /// `(values per block, bytes per block)`.
    pub fn block(self) -> (usize, usize) {
        match self {
            Self::F32 => (1, 4),
            Self::F16 | Self::BF16 => (1, 2),
            Self::Q4_0 => (32, 18),
            Self::Q4_1 => (32, 20),
            Self::Q8_0 => (32, 34),
        }
    }

    /// Bytes needed for `n` values, or `None` when `n` is not a whole number of blocks.
    pub fn bytes_for(self, n: usize) -> Option<usize> {
        let (per, bytes) = self.block();
        (n % per == 0).then(|| n / per * bytes)
    }

    /// Dequantizes `data` (exactly [`GgmlType::bytes_for`] bytes) into `out`.
    pub fn dequantize(self, data: &[u8], out: &mut Vec<f32>) {
        let h = |b: &[u8]| f16::from_le_bytes([b[0], b[1]]).to_f32();
        match self {
            Self::F32 => out.extend(data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
            Self::F16 => out.extend(data.chunks_exact(2).map(h)),
            Self::BF16 => out.extend(data.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())),
            Self::Q8_0 => {
                for block in data.chunks_exact(34) {
                    let d = h(&block[..2]);
                    out.extend(block[2..].iter().map(|&q| d * (q as i8) as f32));
                }
            }
            Self::Q4_0 => {
                for block in data.chunks_exact(18) {
                    let d = h(&block[..2]);
                    let qs = &block[2..];
                    out.extend(qs.iter().map(|&q| d * ((q & 0x0F) as f32 - 8.0)));
                    out.extend(qs.iter().map(|&q| d * ((q >> 4) as f32 - 8.0)));
                }
            }
            Self::Q4_1 => {
                for block in data.chunks_exact(20) {
                    let (d, m) = (h(&block[..2]), h(&block[2..4]));
                    let qs = &block[4..];
                    out.extend(qs.iter().map(|&q| d * (q & 0x0F) as f32 + m));
                    out.extend(qs.iter().map(|&q| d * (q >> 4) as f32 + m));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f16b(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_le_bytes()
    }

    #[test]
    fn q4_0_nibble_order_and_offset() {
        let mut block = f16b(0.5).to_vec();
        // byte j holds value j (low nibble) and value j+16 (high nibble).
        block.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let mut out = Vec::new();
        GgmlType::Q4_0.dequantize(&block, &mut out);
        assert_eq!(out.len(), 32);
        assert_eq!(out[0], 0.5 * -8.0);
        assert_eq!(out[15], 0.5 * 7.0);
        assert_eq!(out[16], 0.5 * 7.0);
        assert_eq!(out[31], 0.5 * -8.0);
    }

    #[test]
    fn q4_1_adds_minimum_and_q8_0_is_signed() {
        let mut block = f16b(2.0).to_vec();
        block.extend(f16b(-1.0));
        block.extend([0x21u8; 16]);
        let mut out = Vec::new();
        GgmlType::Q4_1.dequantize(&block, &mut out);
        assert_eq!((out[0], out[16]), (2.0 * 1.0 - 1.0, 2.0 * 2.0 - 1.0));
        let mut block = f16b(0.25).to_vec();
        block.extend((0..32).map(|i| (i as i8 - 16) as u8));
        out.clear();
        GgmlType::Q8_0.dequantize(&block, &mut out);
        assert_eq!((out[0], out[31]), (-4.0, 3.75));
    }

    #[test]
    fn partial_blocks_are_rejected() {
        assert_eq!(GgmlType::Q4_0.bytes_for(33), None);
        assert_eq!(GgmlType::Q8_0.bytes_for(64), Some(68));
    }
}
