//! A forecast as a terminal chart: recent history, the forecast mean with its
//! interval band, and the threshold line, on one time axis. Pure (a string
//! out), so its output is pinned by tests; colour is a parameter, not a
//! terminal probe.

use std::fmt::Write as _;

/// What to draw.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    /// Observed points (ms, value), oldest first.
    pub history: Vec<(i64, f64)>,
    /// Forecast points (ms, lower, mean, upper), oldest first.
    pub forecast: Vec<(i64, f64, f64, f64)>,
    /// The line that matters, and its name.
    pub threshold: Option<(f64, String)>,
    /// Now, ms: where history ends and the forecast begins.
    pub now_ms: i64,
}

const HISTORY: char = '•';
const MEAN: char = '*';
const BAND: char = '░';
const THRESHOLD: char = '─';

fn paint(c: char, color: bool) -> String {
    if !color {
        return c.to_string();
    }
    let code = match c {
        HISTORY => "36",   // cyan
        MEAN => "1;33",    // bold yellow
        BAND => "33",      // yellow
        THRESHOLD => "31", // red
        _ => return c.to_string(),
    };
    format!("\x1b[{code}m{c}\x1b[0m")
}

/// A signed span like `-2h`, `+30m`, `now`.
pub fn span(ms: i64) -> String {
    if ms == 0 {
        return "now".into();
    }
    let sign = if ms < 0 { '-' } else { '+' };
    let m = ms.unsigned_abs() / 60_000;
    let s = if m >= 60 && m.is_multiple_of(60) {
        format!("{}h", m / 60)
    } else if m >= 60 {
        format!("{}h{}m", m / 60, m % 60)
    } else {
        format!("{m}m")
    };
    format!("{sign}{s}")
}

/// A short value label.
fn num(v: f64) -> String {
    if v.abs() >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if v.abs() >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v.abs() >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

impl Chart {
    /// Renders `height` rows of plot, `width` columns of time, a value axis
    /// on the left, a time axis and a legend below. Empty input gives a
    /// one-line message instead.
    pub fn render(&self, width: usize, height: usize, color: bool) -> String {
        let (width, height) = (width.max(10), height.max(3));
        let t0 = self.history.first().map(|p| p.0).into_iter().chain(self.forecast.first().map(|p| p.0)).min();
        let t1 = self.history.last().map(|p| p.0).into_iter().chain(self.forecast.last().map(|p| p.0)).max();
        let (Some(t0), Some(t1)) = (t0, t1) else {
            return "(nothing to draw: no history and no forecast)\n".into();
        };
        let t0 = t0.min(self.now_ms);
        let t1 = t1.max(t0 + 1);
        let col = |t: i64| (((t - t0) as f64 / (t1 - t0) as f64) * (width - 1) as f64).round() as usize;
        let mut top = self.history.iter().map(|p| p.1).fold(0.0f64, f64::max);
        for f in &self.forecast {
            top = top.max(f.3).max(f.2);
        }
        if let Some((t, _)) = &self.threshold {
            top = top.max(*t);
        }
        let top = if top > 0.0 { top * 1.05 } else { 1.0 };
        // Row 0 is the top; a value v sits in row round((1 - v/top) * (h-1)).
        let row = |v: f64| ((1.0 - (v / top).clamp(0.0, 1.0)) * (height - 1) as f64).round() as usize;
        let mut grid = vec![vec![' '; width]; height];
        if let Some((t, _)) = &self.threshold {
            let r = row(*t);
            for c in grid[r].iter_mut() {
                *c = THRESHOLD;
            }
        }
        // Forecast band, then mean, then history (history wins a shared cell).
        let mut last_col: Option<usize> = None;
        for f in &self.forecast {
            let c = col(f.0);
            // A step spans the columns since the previous one.
            let from = last_col.map_or(c, |l| (l + 1).min(c));
            for cc in from..=c {
                for cell in grid.iter_mut().take(row(f.1) + 1).skip(row(f.3)) {
                    cell[cc] = BAND;
                }
                grid[row(f.2)][cc] = MEAN;
            }
            last_col = Some(c);
        }
        for p in &self.history {
            grid[row(p.1)][col(p.0)] = HISTORY;
        }
        let labels: Vec<String> = (0..height)
            .map(|r| {
                if r == 0 || r == height - 1 || r == (height - 1) / 2 {
                    num(top * (1.0 - r as f64 / (height - 1) as f64))
                } else {
                    String::new()
                }
            })
            .collect();
        let lw = labels.iter().map(|l| l.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (r, line) in grid.iter().enumerate() {
            let body: String = line.iter().map(|&c| paint(c, color)).collect();
            let _ = writeln!(out, "{:>lw$} ┤{}", labels[r], body.trim_end());
        }
        let _ = writeln!(out, "{:>lw$} └{}", "", "─".repeat(width));
        // Time axis: start, now, end.
        let mut axis = vec![' '; width + 2];
        let mut put = |at: usize, s: &str| {
            let at = at.min(width + 2 - s.chars().count().min(width + 2));
            for (i, ch) in s.chars().enumerate() {
                if let Some(slot) = axis.get_mut(at + i) {
                    *slot = ch;
                }
            }
        };
        put(0, &span(t0 - self.now_ms));
        let now_c = col(self.now_ms);
        let now_label = "now";
        if now_c > span(t0 - self.now_ms).len() + 1 && now_c + now_label.len() + 1 < width {
            put(now_c, now_label);
        }
        let end = span(t1 - self.now_ms);
        put(width + 1 - end.len(), &end);
        let _ = writeln!(out, "{:>lw$}  {}", "", axis.iter().collect::<String>().trim_end());
        let mut legend = format!(
            "{:>lw$}  {} observed   {} forecast mean   {} interval",
            "",
            paint(HISTORY, color),
            paint(MEAN, color),
            paint(BAND, color)
        );
        if let Some((t, name)) = &self.threshold {
            let _ = write!(legend, "   {} {name} {}", paint(THRESHOLD, color), num(*t));
        }
        let _ = writeln!(out, "{}", legend.trim_end());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn sample() -> Chart {
        // One hour of history rising 1 → 2, then a 30-minute forecast
        // climbing past the threshold of 3.
        let now = 1_000 * 60 * MIN;
        Chart {
            history: (0..=12).map(|k| (now - (12 - k) * 5 * MIN, 1.0 + k as f64 / 12.0)).collect(),
            forecast: (1..=6)
                .map(|k| (now + k * 5 * MIN, 1.8 + 0.2 * k as f64, 2.0 + 0.3 * k as f64, 2.4 + 0.4 * k as f64))
                .collect(),
            threshold: Some((3.0, "overload threshold".into())),
            now_ms: now,
        }
    }

    /// The whole picture, pinned: history dots rising on the left, the band
    /// widening on the right and crossing the threshold line, axis labels.
    #[test]
    fn renders_history_forecast_band_and_threshold() {
        let got = sample().render(37, 9, false);
        let want = "\
5.04 ┤                                   ░░
     ┤                                 ░░░░
     ┤                             ░░░░****
     ┤───────────────────────────░░****░░░░
2.52 ┤                          ***░░░░░░
     ┤              • • • • • • ░░░
     ┤• • • • • • •
     ┤
0.00 ┤
     └─────────────────────────────────────
      -1h                     now       +30m
      • observed   * forecast mean   ░ interval   ─ overload threshold 3.00
";
        assert_eq!(got, want, "\n{got}");
    }

    #[test]
    fn colour_is_ansi_and_empty_input_says_so() {
        let got = sample().render(37, 9, true);
        assert!(got.contains("\x1b[31m─\x1b[0m") && got.contains("\x1b[36m•\x1b[0m"));
        assert!(Chart::default().render(40, 8, false).contains("nothing to draw"));
        // History only (a model that cannot forecast yet) still draws.
        let c = Chart { forecast: vec![], threshold: None, ..sample() };
        let got = c.render(30, 6, false);
        let plot = got.split('└').next().unwrap();
        assert_eq!(plot.matches('•').count(), 13, "{got}");
        assert!(!plot.contains('*') && !plot.contains('─'), "{got}");
    }
}
