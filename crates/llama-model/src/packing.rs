//! Packed sequences: several examples laid end to end in one row, each attending only to itself
//! and counting its positions from 0 (the padding-free packing of flash-attention varlen, which
//! trl's `packing_strategy = "bfd"` relies on).
//!
//! With per-token positions `p` (restarting at 0 where a sequence starts), token `i` sees token
//! `j` of its row iff `i − p_i ≤ j ≤ i`: causal, and not before the start of its own sequence.
//! Right padding (position 0 each) then sees only itself.

use burn::tensor::{Bool, Device, Tensor, TensorData};

/// The attention mask of packed rows, `true` = hidden.
///
/// # Shapes
/// - positions: `[batch, len]`, row-major
/// - output: `[batch, 1, len, len]`
///
/// # Panics
/// If `positions` does not hold `batch · len` entries, or a position exceeds its index in the row.
pub fn segment_mask(positions: &[i64], [batch, len]: [usize; 2], device: &Device) -> Tensor<4, Bool> {
    assert_eq!(positions.len(), batch * len, "packing: {} positions for [{batch}, {len}]", positions.len());
    let mut hidden = vec![true; batch * len * len];
    for row in 0..batch {
        for i in 0..len {
            let p = positions[row * len + i];
            assert!((0..=i as i64).contains(&p), "packing: row {row}, token {i} has position {p}");
            let start = i - p as usize;
            hidden[(row * len + i) * len + start..=(row * len + i) * len + i].fill(false);
        }
    }
    Tensor::<3, Bool>::from_data(TensorData::new(hidden, [batch, len, len]), device).unsqueeze_dim(1)
}

/// Whether the positions are anything but `0..len` in every row (i.e. some row is packed).
pub fn is_packed(positions: &[i64], len: usize) -> bool {
    len > 0 && positions.chunks(len).any(|row| row.iter().enumerate().any(|(i, &p)| p != i as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_sequence_sees_itself_causally() {
        let device = Device::flex();
        let mask = segment_mask(&[0, 1, 0, 1, 2, 0], [1, 6], &device);
        let got: Vec<bool> = mask.into_data().try_into_vec().expect("bools");
        let rows: Vec<String> = got.chunks(6).map(|r| r.iter().map(|&h| if h { '.' } else { 'x' }).collect()).collect();
        assert_eq!(rows, ["x.....", "xx....", "..x...", "..xx..", "..xxx.", ".....x"]);
        assert!(is_packed(&[0, 1, 0, 1, 2, 0], 6));
        assert!(!is_packed(&[0, 1, 2, 0, 1, 2], 3));
    }
}
