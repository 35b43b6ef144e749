//! `loss.png`: training loss per logged step and held-out loss, from `metrics.jsonl`.

use std::path::Path;

use anyhow::{Context, Result};
use plotters::prelude::*;
use sft_trainer::LogRecord;

/// Fonts tried for labels; without one the plot is drawn without text.
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

fn register_font() -> bool {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *REGISTERED.get_or_init(|| {
        FONTS.iter().any(|p| {
            std::fs::read(p).ok().is_some_and(|bytes| {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
            })
        })
    })
}

/// Draws `metrics.jsonl` into `png`.
///
/// # Errors
/// Unreadable metrics or an unwritable image.
pub fn plot_losses(metrics: &Path, png: &Path) -> Result<()> {
    let text = std::fs::read_to_string(metrics).with_context(|| format!("reading {}", metrics.display()))?;
    let records: Vec<LogRecord> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let train: Vec<(f64, f64)> = records.iter().filter_map(|r| Some((r.step as f64, r.loss?))).collect();
    let eval: Vec<(f64, f64)> = records.iter().filter_map(|r| Some((r.step as f64, r.eval_loss?))).collect();
    let all = train.iter().chain(&eval);
    let max_step = all.clone().map(|p| p.0).fold(1.0, f64::max);
    let (lo, hi) = all.fold((f64::MAX, f64::MIN), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
    let (lo, hi) = if lo <= hi { (lo - 0.05 * (hi - lo).max(0.1), hi + 0.05 * (hi - lo).max(0.1)) } else { (0.0, 1.0) };
    let with_text = register_font();
    let root = BitMapBackend::new(png, (900, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(20);
    if with_text {
        builder.caption("loss", ("sans-serif", 24)).x_label_area_size(40).y_label_area_size(60);
    }
    let mut chart = builder.build_cartesian_2d(0.0..max_step, lo..hi)?;
    let mut mesh = chart.configure_mesh();
    if with_text {
        mesh.x_desc("step").y_desc("loss");
    } else {
        mesh.disable_x_axis().disable_y_axis();
    }
    mesh.draw()?;
    let blue = RGBColor(31, 119, 180);
    let orange = RGBColor(255, 127, 14);
    let series = chart.draw_series(LineSeries::new(train.clone(), blue.stroke_width(2)))?;
    if with_text {
        series.label("train").legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], blue));
    }
    let series = chart.draw_series(eval.iter().map(|&p| Circle::new(p, 5, orange.filled())))?;
    if with_text {
        series.label("held-out").legend(move |(x, y)| Circle::new((x + 10, y), 5, orange.filled()));
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    }
    root.present().with_context(|| format!("writing {}", png.display()))?;
    Ok(())
}
