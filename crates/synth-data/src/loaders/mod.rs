//! One decoder per format: bytes in, plain text out, errors naming the file.

pub mod docx;
pub mod markdown;
pub mod pdf;
pub mod text;
