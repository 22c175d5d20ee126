//! Report charts, drawn on the server as SVG with `plotters` (its SVG backend: axes, ticks, labels,
//! lines and legend) so they read without JavaScript and export as they are. Two things plotters
//! does not do are added around its output: an accessible name (`role="img"`, `<title>`,
//! `<desc>`) and one transparent hover target per bucket whose `<title>` gives the bucket's
//! values (the browser shows it on hover, with or without scripts). Hidden figures ("<11") leave
//! a gap in their line and say "<11" in the hover text, so a chart discloses no more than the
//! table beside it.

use domain::disclosure::Figure;
use domain::reports::{Bucket, Overview, SeriesPoint};
use plotters::prelude::*;

const W: u32 = 860;
const H: u32 = 320;

/// Series colours (also in the legend); the stylesheet's chart colours match.
const DELIVERED: RGBColor = RGBColor(0x1f, 0x5f, 0xa8);
const OPENS: RGBColor = RGBColor(0x1b, 0x8a, 0x5a);
const CLICKS: RGBColor = RGBColor(0xc0, 0x6a, 0x00);

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn bucket_label(b: Bucket, p: &SeriesPoint) -> String {
    match b {
        Bucket::Hour => p.start.format("%b %-d %H:%M").to_string(),
        Bucket::Day => p.start.format("%a %b %-d").to_string(),
    }
}

fn axis_label(b: Bucket, p: &SeriesPoint) -> String {
    match b {
        Bucket::Hour => p.start.format("%H:%M").to_string(),
        Bucket::Day => p.start.format("%b %-d").to_string(),
    }
}

/// Picks one line's figure out of a bucket.
type Line = fn(&SeriesPoint) -> Figure;

/// The overview's time series: deliveries, human opens and human clicks per bucket.
pub fn overview_svg(o: &Overview) -> String {
    let lines: [(&str, RGBColor, Line); 3] = [
        ("Delivered", DELIVERED, |p| p.delivered),
        ("Opened by people", OPENS, |p| p.human_openers),
        ("Clicks by people", CLICKS, |p| p.human_clicks),
    ];
    let unit = match o.bucket {
        Bucket::Hour => "hour",
        Bucket::Day => "day",
    };
    let title = format!("Deliveries, opens and clicks by {unit}");
    let desc = format!(
        "{} to {} in {}. The table beside the chart lists the same figures.",
        o.range.from.format("%b %-d, %Y"),
        o.range.to.format("%b %-d, %Y"),
        o.time_zone
    );
    let n = o.series.len().max(1);
    let ymax =
        o.series.iter().flat_map(|p| lines.iter().filter_map(move |l| (l.2)(p).shown())).max().unwrap_or(0).max(10)
            as f64
            * 1.1;
    let mut svg = String::new();
    let mut targets = String::new();
    let drawn = (|| -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(&title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..ymax)?;
        let series = &o.series;
        let fmt_x = |x: &f64| {
            let i = x.round();
            if (x - i).abs() > 1e-6 || i < 0.0 {
                return String::new();
            }
            series.get(i as usize).map(|p| axis_label(o.bucket, p)).unwrap_or_default()
        };
        let fmt_y = |y: &f64| format!("{}", y.round() as u64);
        chart
            .configure_mesh()
            .x_desc(if o.bucket == Bucket::Hour { "Hour (local time)" } else { "Day" })
            .y_desc("Messages")
            .x_labels(n.min(12))
            .x_label_formatter(&fmt_x)
            .y_label_formatter(&fmt_y)
            .light_line_style(RGBColor(0xee, 0xee, 0xee))
            .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
            .draw()?;
        for (name, colour, pick) in lines {
            // A hidden figure breaks the line: no value is drawn where the table says "<11".
            let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
            for (i, p) in series.iter().enumerate() {
                match pick(p).shown() {
                    Some(v) => runs.last_mut().map(|r| r.push((i as f64, v as f64))).unwrap_or(()),
                    None => runs.push(Vec::new()),
                }
            }
            let style = ShapeStyle::from(&colour).stroke_width(2);
            let mut first = true;
            for run in runs.into_iter().filter(|r| !r.is_empty()) {
                let points: Vec<Circle<(f64, f64), i32>> =
                    if run.len() == 1 { vec![Circle::new(run[0], 3, style.filled())] } else { Vec::new() };
                chart.draw_series(points)?;
                let anno = chart.draw_series(LineSeries::new(run, style))?;
                if first {
                    anno.label(name).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
                    first = false;
                }
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(0xcc, 0xcc, 0xcc))
            .draw()?;
        // Hover targets: one column per bucket, from the plot's top to its bottom.
        for (i, p) in series.iter().enumerate() {
            let (x0, y0) = chart.backend_coord(&(i as f64 - 0.5, ymax));
            let (x1, y1) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
            let text = format!(
                "{}: delivered {}, opened by people {}, clicks by people {}",
                bucket_label(o.bucket, p),
                p.delivered.label(),
                p.human_openers.label(),
                p.human_clicks.label()
            );
            targets.push_str(&format!(
                "<rect class=\"hover-target\" x=\"{x0}\" y=\"{y0}\" width=\"{}\" height=\"{}\" fill=\"transparent\" data-bucket=\"{i}\"><title>{}</title></rect>",
                (x1 - x0).max(1),
                (y1 - y0).max(1),
                escape(&text)
            ));
        }
        root.present()?;
        Ok(())
    })();
    if drawn.is_err() {
        return String::new();
    }
    finish(svg, &title, &desc, &targets, "overview-chart")
}

/// Series colours for overlaid curves (eight at most).
const PALETTE: [RGBColor; 8] = [
    RGBColor(0x1f, 0x5f, 0xa8),
    RGBColor(0xc0, 0x6a, 0x00),
    RGBColor(0x1b, 0x8a, 0x5a),
    RGBColor(0x9b, 0x2c, 0x8f),
    RGBColor(0xb9, 0x1c, 0x1c),
    RGBColor(0x0e, 0x74, 0x90),
    RGBColor(0x6b, 0x72, 0x80),
    RGBColor(0x7c, 0x5e, 0x10),
];

fn short(name: &str) -> String {
    let mut n: String = name.chars().take(40).collect();
    if name.chars().count() > 40 {
        n.push('…');
    }
    n
}

/// Overlaid opens-since-send curves: the cumulative share of delivered messages opened by
/// people after each time bucket, one line per source (a gap where a figure is hidden).
pub fn curves_svg(labels: &[String], lines: &[(String, Vec<Option<f64>>)]) -> String {
    let title = "Share of delivered messages opened by people, by time since the send";
    let desc = "One line per campaign or sequence email; the table beside the chart lists the same shares.";
    let n = labels.len().max(1);
    let mut svg = String::new();
    let mut targets = String::new();
    let drawn = (|| -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..100f64)?;
        let fmt_x = |x: &f64| {
            let i = x.round();
            if (x - i).abs() > 1e-6 || i < 0.0 {
                return String::new();
            }
            labels.get(i as usize).cloned().unwrap_or_default()
        };
        let fmt_y = |y: &f64| format!("{y:.0}%");
        chart
            .configure_mesh()
            .x_desc("Time since the send")
            .y_desc("Opened (cumulative)")
            .x_labels(n)
            .x_label_formatter(&fmt_x)
            .y_label_formatter(&fmt_y)
            .light_line_style(RGBColor(0xee, 0xee, 0xee))
            .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
            .draw()?;
        for (k, (name, values)) in lines.iter().enumerate().take(PALETTE.len()) {
            let colour = PALETTE[k];
            let style = ShapeStyle::from(&colour).stroke_width(2);
            let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
            for (i, v) in values.iter().enumerate() {
                match v {
                    Some(v) => runs.last_mut().map(|r| r.push((i as f64, v * 100.0))).unwrap_or(()),
                    None => runs.push(Vec::new()),
                }
            }
            let mut first = true;
            for run in runs.into_iter().filter(|r| !r.is_empty()) {
                chart.draw_series(run.iter().map(|p| Circle::new(*p, 3, style.filled())))?;
                let anno = chart.draw_series(LineSeries::new(run, style))?;
                if first {
                    anno.label(short(name)).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
                    first = false;
                }
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(0xcc, 0xcc, 0xcc))
            .draw()?;
        for (i, label) in labels.iter().enumerate() {
            let (x0, y0) = chart.backend_coord(&(i as f64 - 0.5, 100.0));
            let (x1, y1) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
            let values: Vec<String> = lines
                .iter()
                .map(|(name, v)| {
                    let shown = v.get(i).copied().flatten().map(|x| format!("{:.1}%", x * 100.0));
                    format!("{}: {}", short(name), shown.unwrap_or_else(|| "hidden".into()))
                })
                .collect();
            targets.push_str(&format!(
                "<rect class=\"hover-target\" x=\"{x0}\" y=\"{y0}\" width=\"{}\" height=\"{}\" fill=\"transparent\" data-bucket=\"{i}\"><title>{}</title></rect>",
                (x1 - x0).max(1),
                (y1 - y0).max(1),
                escape(&format!("{label}: {}", values.join("; ")))
            ));
        }
        root.present()?;
        Ok(())
    })();
    if drawn.is_err() {
        return String::new();
    }
    finish(svg, title, desc, &targets, "curves-chart")
}

/// Give plotters' SVG an accessible name and description, and add the hover targets on top.
fn finish(svg: String, title: &str, desc: &str, targets: &str, id: &str) -> String {
    let Some(open_end) = svg.find("<svg").and_then(|i| svg[i..].find('>').map(|j| i + j)) else { return svg };
    let Some(close) = svg.rfind("</svg>") else { return svg };
    format!(
        "{} role=\"img\" aria-labelledby=\"{id}-title {id}-desc\" class=\"plot\" data-test=\"{id}\"><title id=\"{id}-title\">{}</title><desc id=\"{id}-desc\">{}</desc>{}{}</svg>",
        &svg[..open_end],
        escape(title),
        escape(desc),
        &svg[open_end + 1..close],
        targets
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::disclosure::Reader;
    use domain::reports::{OverviewCounts, ReportRange, Totals};

    #[test]
    fn the_overview_chart_is_an_accessible_svg_with_a_hover_value_per_bucket_and_no_hidden_value() {
        let range = ReportRange::parse("2026-11-01", "2026-11-07").unwrap();
        let buckets: Vec<Totals> = (0..7u64)
            .map(|i| Totals {
                delivered: if i == 2 { 3 } else { 100 + i * 10 },
                sent: 200,
                human_openers: 40 + i,
                human_clicks: 20,
                human_clickers: 15,
                ..Totals::default()
            })
            .collect();
        let mut current = Totals::default();
        for b in &buckets {
            current.add(b);
        }
        let o = domain::reports::Overview::build(
            Reader::Restricted,
            range,
            "America/New_York".into(),
            &OverviewCounts { current, previous: Totals::default(), buckets },
        );
        let svg = overview_svg(&o);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"), "{svg}");
        assert!(svg.contains("role=\"img\"") && svg.contains("<title id=\"overview-chart-title\">"));
        assert_eq!(svg.matches("class=\"hover-target\"").count(), 7);
        assert!(svg.contains("Tue Nov 3: delivered &lt;11"), "the hidden bucket says <11");
        assert!(svg.contains("Delivered") && svg.contains("Opened by people") && svg.contains("Messages"));
        assert!(!svg.contains("delivered 3,"), "no hidden value anywhere");
    }

    #[test]
    fn curves_escape_names_and_say_hidden_for_gaps() {
        let labels: Vec<String> = domain::reports::SINCE_BUCKETS.iter().map(|(_, l)| l.to_string()).collect();
        let lines = vec![
            ("<script>alert(1)</script> & co".to_string(), vec![Some(0.1), Some(0.2), None, Some(0.4)]),
            ("Flu".to_string(), vec![Some(0.05); 9]),
        ];
        let svg = curves_svg(&labels, &lines);
        assert!(svg.starts_with("<svg") && !svg.contains("<script>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;"), "{svg}");
        assert!(svg.contains("2–4 h: &lt;script&gt;alert(1)&lt;/script&gt; &amp; co: hidden; Flu: 5.0%"), "{svg}");
        assert_eq!(svg.matches("class=\"hover-target\"").count(), 9);
    }
}
