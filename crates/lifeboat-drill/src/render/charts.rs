//! The inline SVG charts of the HTML page: the phase timeline and the RTO/RPO trends over
//! the target's drills, with round axes in units a person counts in.
//!
//! Plain SVG text, no library and no script: coordinates are in a fixed viewBox that the
//! page scales to its width. Every chart has an id, a `<title>` and `width="100%"`. Labels
//! from the report are escaped here (`svg_text`, `esc`).

use std::fmt::Write as _;

use super::{esc, seconds, verdict_label, when};
use crate::report::{HistoryPoint, Phase, Verdict};

const PASS_COLOR: &str = "#1a7f37";
const FAIL_COLOR: &str = "#cf222e";
const ERROR_COLOR: &str = "#d4650a";
const BAR_COLOR: &str = "#0969da";
const GRID_COLOR: &str = "#d0d7de";
const MUTED_COLOR: &str = "#57606a";

fn verdict_color(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => PASS_COLOR,
        Verdict::Fail => FAIL_COLOR,
        Verdict::Error => ERROR_COLOR,
    }
}

/// "2026-11-22" for an RFC 3339 time, for chart axes.
fn day(rfc3339: &str) -> String {
    match rfc3339.parse::<jiff::Timestamp>() {
        Ok(t) => t.strftime("%Y-%m-%d").to_string(),
        Err(_) => rfc3339.chars().take(10).collect(),
    }
}

const CHART_WIDTH: f64 = 800.0;

/// Opens a chart: every chart has an id, a `<title>`, a viewBox and `width="100%"`.
fn svg_open(out: &mut String, id: &str, title: &str, height: f64) {
    let _ = writeln!(
        out,
        "<svg class=\"chart\" id=\"{id}\" xmlns=\"http://www.w3.org/2000/svg\" \
         viewBox=\"0 0 {CHART_WIDTH} {height}\" width=\"100%\" role=\"img\">\n\
         <title>{}</title>",
        esc(title)
    );
}

/// A `<text>`; `content` is escaped here.
fn svg_text(out: &mut String, x: f64, y: f64, anchor: &str, fill: &str, content: &str) {
    let _ = writeln!(
        out,
        "<text x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"{anchor}\" fill=\"{fill}\">{}</text>",
        esc(content)
    );
}

fn svg_line(out: &mut String, (x1, y1): (f64, f64), (x2, y2): (f64, f64), stroke: &str) {
    let _ = writeln!(
        out,
        "<line x1=\"{x1:.1}\" y1=\"{y1:.1}\" x2=\"{x2:.1}\" y2=\"{y2:.1}\" stroke=\"{stroke}\"/>"
    );
}

/// One horizontal bar per phase, placed by its start and as long as it took, on an axis of
/// seconds since the drill started. Failed phases are red.
pub(super) fn timeline_svg(phases: &[Phase]) -> String {
    const LEFT: f64 = 170.0;
    const RIGHT: f64 = 80.0;
    const TOP: f64 = 10.0;
    const ROW: f64 = 26.0;
    const BAR: f64 = 16.0;
    const AXIS: f64 = 34.0;
    let mut out = String::new();
    let title = "Phase timeline: seconds since the drill started";
    if phases.is_empty() {
        svg_open(&mut out, "timeline", title, 60.0);
        svg_text(
            &mut out,
            CHART_WIDTH / 2.0,
            34.0,
            "middle",
            MUTED_COLOR,
            "no phases recorded",
        );
        out.push_str("</svg>\n");
        return out;
    }
    let end = phases
        .iter()
        .map(|p| non_negative(p.start) + non_negative(p.seconds))
        .fold(0.0, f64::max);
    let (span, step) = axis_range(end);
    let plot = CHART_WIDTH - LEFT - RIGHT;
    let x = |t: f64| LEFT + t / span * plot;
    let axis_y = TOP + ROW * phases.len() as f64 + 4.0;
    svg_open(&mut out, "timeline", title, axis_y + AXIS);

    for t in ticks(span, step) {
        svg_line(&mut out, (x(t), TOP), (x(t), axis_y), GRID_COLOR);
        svg_text(
            &mut out,
            x(t),
            axis_y + 16.0,
            "middle",
            MUTED_COLOR,
            &seconds(t),
        );
    }
    svg_line(&mut out, (LEFT, axis_y), (LEFT + plot, axis_y), MUTED_COLOR);

    for (i, p) in phases.iter().enumerate() {
        let y = TOP + ROW * i as f64 + (ROW - BAR) / 2.0;
        let (x0, x1) = (
            x(non_negative(p.start)),
            x(non_negative(p.start) + non_negative(p.seconds)),
        );
        let width = (x1 - x0).max(1.0);
        let fill = if p.ok { BAR_COLOR } else { FAIL_COLOR };
        let status = if p.ok { "" } else { ", failed" };
        let _ = writeln!(
            out,
            "<rect class=\"phase\" x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{width:.1}\" \
             height=\"{BAR}\" rx=\"2\" fill=\"{fill}\"><title>{}: +{} for {}{status}</title></rect>",
            esc(&p.name),
            seconds(p.start),
            seconds(p.seconds)
        );
        let baseline = y + BAR / 2.0 + 4.0;
        svg_text(
            &mut out,
            LEFT - 8.0,
            baseline,
            "end",
            "#1f2328",
            &truncate(&p.name, 24),
        );
        svg_text(
            &mut out,
            x0 + width + 6.0,
            baseline,
            "start",
            MUTED_COLOR,
            &seconds(p.seconds),
        );
    }
    out.push_str("</svg>\n");
    out
}

/// Measured seconds over drill order: a line through the measured drills, a circle per
/// drill colored by its verdict (the current drill larger), the objective as a dashed line.
pub(super) fn trend_svg(
    id: &str,
    what: &str,
    objective: Option<f64>,
    series: &[(&HistoryPoint, Option<f64>)],
    current: &str,
) -> String {
    const LEFT: f64 = 90.0;
    const RIGHT: f64 = 30.0;
    const TOP: f64 = 20.0;
    const PLOT_HEIGHT: f64 = 170.0;
    const HEIGHT: f64 = TOP + PLOT_HEIGHT + 40.0;
    let mut out = String::new();
    svg_open(
        &mut out,
        id,
        &format!("{what} of each drill, oldest first"),
        HEIGHT,
    );
    let objective = objective.filter(|o| o.is_finite() && *o > 0.0);
    let measured: Vec<f64> = series
        .iter()
        .filter_map(|(_, v)| *v)
        .filter(|v| v.is_finite())
        .collect();
    if measured.is_empty() {
        svg_text(
            &mut out,
            CHART_WIDTH / 2.0,
            HEIGHT / 2.0,
            "middle",
            MUTED_COLOR,
            "no measurement yet",
        );
        out.push_str("</svg>\n");
        return out;
    }

    let highest = measured.iter().copied().fold(0.0, f64::max);
    // An objective far above every measurement would flatten them onto the axis: the
    // scale follows the measurements and the objective line sits on the top edge.
    let off_scale = objective.is_some_and(|o| o > 3.0 * highest);
    let top_value = match objective {
        Some(o) if !off_scale => highest.max(o),
        _ => highest,
    };
    let (span, step) = axis_range(top_value * 1.05);
    let plot = CHART_WIDTH - LEFT - RIGHT;
    let bottom = TOP + PLOT_HEIGHT;
    let y = |v: f64| bottom - non_negative(v).min(span) / span * PLOT_HEIGHT;
    let n = series.len();
    let x = |i: usize| {
        if n == 1 {
            LEFT + plot / 2.0
        } else {
            LEFT + plot * i as f64 / (n - 1) as f64
        }
    };

    seconds_axis(&mut out, (LEFT, LEFT + plot), bottom, (span, step), &y);
    let first = series[0].0;
    svg_text(
        &mut out,
        x(0),
        bottom + 20.0,
        if n == 1 { "middle" } else { "start" },
        MUTED_COLOR,
        &day(&first.started_at),
    );
    if n > 1 {
        let last = series[n - 1].0;
        svg_text(
            &mut out,
            x(n - 1),
            bottom + 20.0,
            "end",
            MUTED_COLOR,
            &day(&last.started_at),
        );
    }

    if let Some(o) = objective {
        objective_line(&mut out, (LEFT, LEFT + plot), y(o));
        let label = if off_scale {
            format!("objective {} (above the chart)", seconds(o))
        } else {
            format!("objective {}", seconds(o))
        };
        svg_text(
            &mut out,
            LEFT + plot,
            (y(o) - 6.0).max(TOP - 6.0),
            "end",
            ERROR_COLOR,
            &label,
        );
    }

    let points: Vec<String> = series
        .iter()
        .enumerate()
        .filter_map(|(i, (_, v))| {
            v.filter(|v| v.is_finite())
                .map(|v| format!("{:.1},{:.1}", x(i), y(v)))
        })
        .collect();
    if points.len() > 1 {
        let _ = writeln!(
            out,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{BAR_COLOR}\" stroke-width=\"2\"/>",
            points.join(" ")
        );
    }

    for (i, (drill, value)) in series.iter().enumerate() {
        let label = format!(
            "{} — {}",
            when(&drill.started_at),
            verdict_label(drill.verdict)
        );
        match value.filter(|v| v.is_finite()) {
            Some(v) => {
                let r = if drill.id == current { 6 } else { 4 };
                let _ = writeln!(
                    out,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"{r}\" fill=\"{}\" stroke=\"#fff\">\
                     <title>{} — {what} {}</title></circle>",
                    x(i),
                    y(v),
                    verdict_color(drill.verdict),
                    esc(&label),
                    seconds(v)
                );
            }
            // A drill that measured nothing (it stopped early) still shows in the order.
            None => {
                let _ = writeln!(
                    out,
                    "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"{}\">×\
                     <title>{} — {what} not measured</title></text>",
                    x(i),
                    bottom + 4.0,
                    verdict_color(drill.verdict),
                    esc(&label)
                );
            }
        }
    }
    out.push_str("</svg>\n");
    out
}

/// One line of a [`series_svg`] chart: `(unix seconds, value in seconds)` points, oldest
/// first; a point marked `false` is drawn as a red dot (a failed run).
pub struct Series<'a> {
    pub label: &'a str,
    pub points: Vec<(f64, f64, bool)>,
}

/// Values in seconds over time, one line per series, a dashed objective if given: the
/// dashboard's restorable-point age, backup durations and probe latencies.
pub fn series_svg(id: &str, title: &str, series: &[Series<'_>], objective: Option<f64>) -> String {
    const LEFT: f64 = 90.0;
    const RIGHT: f64 = 30.0;
    const TOP: f64 = 20.0;
    const PLOT_HEIGHT: f64 = 150.0;
    const HEIGHT: f64 = TOP + PLOT_HEIGHT + 40.0;
    const COLORS: [&str; 6] = [
        BAR_COLOR, "#8250df", "#1a7f37", "#bf8700", "#57606a", "#e16f24",
    ];
    let mut out = String::new();
    svg_open(&mut out, id, title, HEIGHT);
    let all: Vec<&(f64, f64, bool)> = series.iter().flat_map(|s| &s.points).collect();
    let objective = objective.filter(|o| o.is_finite() && *o > 0.0);
    if all.is_empty() {
        svg_text(
            &mut out,
            CHART_WIDTH / 2.0,
            HEIGHT / 2.0,
            "middle",
            MUTED_COLOR,
            "no data yet",
        );
        out.push_str("</svg>\n");
        return out;
    }
    let highest = all.iter().map(|p| non_negative(p.1)).fold(0.0, f64::max);
    let top_value = match objective {
        Some(o) if o <= 3.0 * highest.max(1e-9) => highest.max(o),
        _ => highest,
    };
    let (span, step) = axis_range(top_value * 1.05);
    let (t0, t1) = all.iter().fold((f64::MAX, f64::MIN), |(lo, hi), p| {
        (lo.min(p.0), hi.max(p.0))
    });
    let plot = CHART_WIDTH - LEFT - RIGHT;
    let bottom = TOP + PLOT_HEIGHT;
    let x = |t: f64| {
        if t1 > t0 {
            LEFT + plot * (t - t0) / (t1 - t0)
        } else {
            LEFT + plot / 2.0
        }
    };
    let y = |v: f64| bottom - non_negative(v).min(span) / span * PLOT_HEIGHT;
    seconds_axis(&mut out, (LEFT, LEFT + plot), bottom, (span, step), &y);
    let clock = |t: f64| {
        jiff::Timestamp::from_second(t as i64)
            .map(|ts| ts.strftime("%m-%d %H:%M").to_string())
            .unwrap_or_default()
    };
    svg_text(
        &mut out,
        LEFT,
        bottom + 20.0,
        "start",
        MUTED_COLOR,
        &clock(t0),
    );
    if t1 > t0 {
        svg_text(
            &mut out,
            LEFT + plot,
            bottom + 20.0,
            "end",
            MUTED_COLOR,
            &clock(t1),
        );
    }
    if let Some(o) = objective.filter(|o| *o <= span) {
        objective_line(&mut out, (LEFT, LEFT + plot), y(o));
        svg_text(
            &mut out,
            LEFT + plot,
            y(o) - 6.0,
            "end",
            ERROR_COLOR,
            &format!("objective {}", seconds(o)),
        );
    }
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<String> = s
            .points
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.0), y(p.1)))
            .collect();
        if points.len() > 1 {
            let _ = writeln!(
                out,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"><title>{}</title></polyline>",
                points.join(" "),
                esc(s.label)
            );
        }
        for p in s.points.iter().filter(|p| !p.2 || s.points.len() == 1) {
            let fill = if p.2 { color } else { FAIL_COLOR };
            let _ = writeln!(
                out,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{fill}\"/>",
                x(p.0),
                y(p.1)
            );
        }
        if series.len() > 1 {
            svg_text(
                &mut out,
                LEFT + 8.0 + 130.0 * i as f64,
                TOP - 6.0,
                "start",
                color,
                &truncate(s.label, 18),
            );
        }
    }
    out.push_str("</svg>\n");
    out
}

/// The seconds axis of a chart: a grid line and a label per tick, the base line.
fn seconds_axis(
    out: &mut String,
    (left, right): (f64, f64),
    bottom: f64,
    (span, step): (f64, f64),
    y: &dyn Fn(f64) -> f64,
) {
    for t in ticks(span, step) {
        svg_line(out, (left, y(t)), (right, y(t)), GRID_COLOR);
        svg_text(out, left - 8.0, y(t) + 4.0, "end", MUTED_COLOR, &seconds(t));
    }
    svg_line(out, (left, bottom), (right, bottom), MUTED_COLOR);
}

/// An objective: a dashed red line across the chart at height `y`.
fn objective_line(out: &mut String, (left, right): (f64, f64), y: f64) {
    let _ = writeln!(
        out,
        "<line class=\"objective\" x1=\"{left:.1}\" y1=\"{y:.1}\" x2=\"{right:.1}\" \
         y2=\"{y:.1}\" stroke=\"{ERROR_COLOR}\" stroke-dasharray=\"6 4\"/>"
    );
}

/// The axis end and tick step for values up to `max`: a round step of at most six
/// intervals, in units a person counts in (seconds, minutes, hours, days).
fn axis_range(max: f64) -> (f64, f64) {
    const STEPS: [f64; 21] = [
        0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0,
        3600.0, 7200.0, 10800.0, 21600.0, 43200.0, 86400.0,
    ];
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let want = max / 6.0;
    let step = match STEPS.iter().find(|&&s| s >= want) {
        Some(&s) => s,
        None => {
            let mut days = 1.0;
            while days * 86400.0 < want {
                days *= 2.0;
            }
            days * 86400.0
        }
    };
    ((max / step).ceil().max(1.0) * step, step)
}

fn ticks(span: f64, step: f64) -> impl Iterator<Item = f64> {
    let count = (span / step).round() as usize;
    (0..=count).map(move |i| i as f64 * step)
}

fn non_negative(v: f64) -> f64 {
    if v.is_finite() && v > 0.0 { v } else { 0.0 }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.into();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures::{history, point, report, svg};
    use crate::render::html;
    use crate::report::Objective;

    #[test]
    fn timeline_has_a_bar_per_phase_and_failed_phases_are_red() {
        let page = html(&report(), &[]);
        let timeline = svg(&page, "timeline");
        assert_eq!(timeline.matches("<rect class=\"phase\"").count(), 3);
        assert_eq!(
            timeline.matches(&format!("fill=\"{FAIL_COLOR}\"")).count(),
            1
        );
        assert!(timeline.contains(">restore</text>"));
        assert!(
            timeline.contains(">10.0 s</text>"),
            "axis in seconds: {timeline}"
        );

        let mut r = report();
        r.phases.clear();
        let page = html(&r, &[]);
        let timeline = svg(&page, "timeline");
        assert!(timeline.contains("no phases recorded"));
        assert!(!timeline.contains("<rect"));
    }

    #[test]
    fn trends_have_a_circle_per_drill_and_the_declared_objective() {
        let r = report();
        // History that already holds the current drill: it is counted once.
        let mut h = history();
        h.push(r.history_point());
        h.push(h[0].clone());
        let page = html(&r, &h);
        let rto = svg(&page, "rto-trend");
        assert_eq!(
            rto.matches("<circle").count(),
            2,
            "the error drill measured nothing"
        );
        assert_eq!(rto.matches("<polyline").count(), 1);
        assert_eq!(rto.matches("stroke-dasharray").count(), 1);
        assert!(rto.contains("objective 2 h 00 min"));
        assert!(rto.contains("RTO not measured"));
        let rpo = svg(&page, "rpo-trend");
        assert_eq!(rpo.matches("<circle").count(), 2);
        assert!(
            !rpo.contains("stroke-dasharray"),
            "no RPO objective declared"
        );

        // Every drill measured: one circle per drill, current included once.
        let mut h = history();
        h[1].rto_seconds = Some(11.0);
        let page = html(&r, &h);
        assert_eq!(svg(&page, "rto-trend").matches("<circle").count(), 3);
    }

    #[test]
    fn an_objective_far_above_the_measurements_does_not_flatten_them() {
        // RTO 12 s against 2 h: the scale follows the measurements.
        let page = html(&report(), &history());
        let rto = svg(&page, "rto-trend");
        assert!(rto.contains("objective 2 h 00 min (above the chart)"));
        assert!(rto.contains(">15.0 s</text>"), "{rto}");
        let mut r = report();
        r.rto = Objective::new(Some(20.0), Some(12.0));
        let page = html(&r, &history());
        let rto = svg(&page, "rto-trend");
        assert!(rto.contains(">objective 20.0 s</text>"), "{rto}");
    }

    #[test]
    fn trends_with_one_or_no_measurement() {
        let r = report();
        let page = html(&r, &[]);
        let rto = svg(&page, "rto-trend");
        assert_eq!(rto.matches("<circle").count(), 1);
        assert!(!rto.contains("<polyline"));

        let mut r = report();
        r.rto = Objective::new(Some(60.0), None);
        let page = html(
            &r,
            &[point("20261121T060000Z-app", Verdict::Error, None, None)],
        );
        let rto = svg(&page, "rto-trend");
        assert!(rto.contains("no measurement yet"));
        assert!(!rto.contains("<circle"));
    }

    #[test]
    fn every_svg_has_a_title_a_viewbox_and_full_width() {
        let page = html(&report(), &history());
        assert_eq!(page.matches("<svg").count(), 3);
        for part in page.split("<svg").skip(1) {
            let open = &part[..part.find('>').unwrap()];
            assert!(open.contains("viewBox=\"0 0 "), "{open}");
            assert!(open.contains("width=\"100%\""), "{open}");
            assert!(
                part.trim_start_matches(|c| c != '>')
                    .starts_with(">\n<title>")
            );
        }
    }
}
