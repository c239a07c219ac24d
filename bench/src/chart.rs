//! SVG line charts (plotters) for the report: requests over time, latency
//! distributions, memory against sessions. Called by the scenarios.

use std::path::Path;

use plotters::prelude::*;

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

/// One named series of (x, y) points.
pub struct Series<'a> {
    pub name: &'a str,
    pub points: Vec<(f64, f64)>,
}

/// Draws `series` as lines into an SVG file at `path`.
pub fn lines(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series<'_>],
) -> anyhow::Result<()> {
    let all = || series.iter().flat_map(|s| s.points.iter());
    let x_max = all().map(|p| p.0).fold(0.0_f64, f64::max).max(1e-9);
    let y_max = all().map(|p| p.1).fold(0.0_f64, f64::max).max(1e-9) * 1.1;
    let root = SVGBackend::new(path, (720, 400)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()?;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(s.name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// A latency distribution as (percentile, ms) points for [`lines`].
pub fn cdf(samples_ms: &[f64]) -> Vec<(f64, f64)> {
    let mut v = samples_ms.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len().max(1) as f64;
    v.iter()
        .enumerate()
        .map(|(i, ms)| ((i + 1) as f64 / n * 100.0, *ms))
        .collect()
}
