//! A random-weight checkpoint of a preset shape, written once as sharded HF safetensors (bf16),
//! so that speed runs go through the real loader and quantize-on-load path.

use std::path::Path;

use anyhow::{Context, Result};
use half::bf16;
use llama_model::LlamaConfig;
use safetensors::Dtype;

/// Most bytes per shard (as transformers' default `max_shard_size="5GB"`).
const SHARD_BYTES: usize = 5 << 30;

/// Values with the standard deviation of transformers' init (0.02), from a seeded xorshift:
/// uniform on `[-a, a]` with `a = 0.02·√3`.
fn fill(seed: u64, n: usize) -> Vec<bf16> {
    let a = 0.02f32 * 3f32.sqrt();
    let chunk = 1 << 20;
    let mut out = vec![bf16::ZERO; n];
    std::thread::scope(|s| {
        for (c, part) in out.chunks_mut(chunk).enumerate() {
            s.spawn(move || {
                let mut x = seed ^ (c as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                for v in part.iter_mut() {
                    let u = (super::xorshift(&mut x) >> 40) as f32 / (1u64 << 24) as f32;
                    *v = bf16::from_f32((2.0 * u - 1.0) * a);
                }
            });
        }
    });
    out
}

/// Every tensor name and shape of a model with `config`, in HF order.
fn layout(c: &LlamaConfig) -> Vec<(String, Vec<usize>)> {
    let mut t = vec![("model.embed_tokens.weight".to_string(), vec![c.vocab_size, c.hidden_size])];
    for i in 0..c.num_layers {
        let p = format!("model.layers.{i}");
        t.push((format!("{p}.input_layernorm.weight"), vec![c.hidden_size]));
        t.push((format!("{p}.post_attention_layernorm.weight"), vec![c.hidden_size]));
        for (name, inp, out) in c.projection_shapes() {
            let module = if ["q_proj", "k_proj", "v_proj", "o_proj"].contains(&name) { "self_attn" } else { "mlp" };
            t.push((format!("{p}.{module}.{name}.weight"), vec![out, inp]));
        }
    }
    t.push(("model.norm.weight".to_string(), vec![c.hidden_size]));
    if !c.tie_word_embeddings {
        t.push(("lm_head.weight".to_string(), vec![c.vocab_size, c.hidden_size]));
    }
    t
}

/// Writes the checkpoint into `dir` unless `dir/config.json` is already there.
///
/// # Errors
/// I/O failures naming the file.
pub fn ensure(config: &LlamaConfig, dir: &Path, seed: u64) -> Result<bool> {
    if dir.join("config.json").is_file() {
        return Ok(false);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tensors = layout(config);
    let mut shards: Vec<Vec<(String, Vec<usize>)>> = vec![Vec::new()];
    let mut size = 0;
    for (name, shape) in tensors {
        let bytes = 2 * shape.iter().product::<usize>();
        if size + bytes > SHARD_BYTES && !shards.last().is_some_and(Vec::is_empty) {
            shards.push(Vec::new());
            size = 0;
        }
        size += bytes;
        shards.last_mut().context("a shard")?.push((name, shape));
    }
    let total = shards.len();
    let mut weight_map = serde_json::Map::new();
    for (k, shard) in shards.iter().enumerate() {
        let file = format!("model-{:05}-of-{total:05}.safetensors", k + 1);
        let data: Vec<(String, Vec<usize>, Vec<bf16>)> = shard
            .iter()
            .enumerate()
            .map(|(j, (name, shape))| {
                let n = shape.iter().product();
                let values = if name.ends_with("norm.weight") { vec![bf16::ONE; n] } else { fill(seed ^ ((k as u64) << 32 | j as u64), n) };
                (name.clone(), shape.clone(), values)
            })
            .collect();
        let views = data
            .iter()
            .map(|(n, s, v)| safetensors::tensor::TensorView::new(Dtype::BF16, s.clone(), bytemuck::cast_slice(v)).map(|t| (n.clone(), t)))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let path = dir.join(&file);
        safetensors::serialize_to_file(views, None, &path).with_context(|| format!("writing {}", path.display()))?;
        for (name, _) in shard {
            weight_map.insert(name.clone(), file.clone().into());
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), serde_json::to_string_pretty(&index)?)?;
    std::fs::write(dir.join("config.json"), config.to_hf_json())?;
    Ok(true)
}
