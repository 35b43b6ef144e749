//! What the blocked attention and the chunked vocabulary loss share: how many rows fit a budget,
//! the row ranges, and slicing and joining along one dimension of a backend's primitives.

/// Rows per chunk when each row costs `per_row` elements and a chunk may hold `budget`: all
/// `total` when they fit, else the most that fit, rounded down to a multiple of 64 when that
/// many fit (whole tiles for the products), at least one.
pub(crate) fn rows_within(budget: usize, per_row: usize, total: usize) -> usize {
    let fit = budget / per_row.max(1);
    let rows = if fit >= 64 { fit / 64 * 64 } else { fit.max(1) };
    rows.min(total.max(1))
}

#[cfg(any(test, feature = "cuda"))]
pub(crate) use ops::*;

#[cfg(any(test, feature = "cuda"))]
mod ops {
    use std::ops::Range;

    use burn::backend::{Backend, TensorMetadata, tensor::FloatTensor};
    use burn::tensor::Slice;

    /// The ranges of `total` rows, `rows` at a time.
    pub(crate) fn row_ranges(total: usize, rows: usize) -> Vec<Range<usize>> {
        let rows = rows.max(1);
        (0..total).step_by(rows).map(|start| start..(start + rows).min(total)).collect()
    }

    /// Entries `range` of dimension `dim` of `x` (a view where the backend has one).
    pub(crate) fn narrow<B: Backend>(x: &FloatTensor<B>, dim: usize, range: Range<usize>) -> FloatTensor<B> {
        let slices: Vec<Slice> = (0..x.shape().num_dims())
            .map(|i| if i == dim { Slice::new(range.start as isize, Some(range.end as isize), 1) } else { Slice::from(..) })
            .collect();
        B::float_slice(x.clone(), &slices)
    }

    /// The parts joined along `dim` (the part itself when there is one).
    pub(crate) fn join<B: Backend>(mut parts: Vec<FloatTensor<B>>, dim: usize) -> FloatTensor<B> {
        if parts.len() == 1 { parts.remove(0) } else { B::float_cat(parts, dim) }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ranges_cover_every_row_once() {
        assert_eq!(super::row_ranges(5, 2), vec![0..2, 2..4, 4..5]);
        assert_eq!(super::row_ranges(4, 9), vec![0..4]);
    }
}
