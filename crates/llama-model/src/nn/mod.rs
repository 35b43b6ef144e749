//! The layers of a Llama decoder.

pub mod attention;
pub mod block;
pub mod cache;
pub mod embedding;
pub mod mlp;
pub mod norm;
pub mod rope;

pub use attention::Attention;
pub use block::Block;
pub use cache::{KvCache, LayerCache};
pub use embedding::TokenEmbedding;
pub use mlp::Mlp;
pub use norm::RmsNorm;
pub use rope::RopeTables;
