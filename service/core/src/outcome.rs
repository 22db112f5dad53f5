//! What a completed move achieved: the same window before and after the
//! cutover, compared with what the decision expected.
//!
//! Why it exists: the controller prices every move with a predicted gain,
//! and nothing else in the loop checks whether the gain came true. An
//! outcome is measured once, when the controller's horizon has passed
//! after the cutover, from the samples the server holds; it is a pure
//! function of those samples so the server and a replay judge alike.
//!
//! The verdict, in this order:
//! - **hurt**: the moved virtual node's latency rose, or its throughput
//!   fell, by more than the margin (each side with at least `min_points`
//!   samples), or the target passed the overload threshold after the move
//!   although it had not before (the move made an overload);
//! - **helped**: the overload the move was to prevent was prevented (had
//!   the virtual node stayed, the source would have passed the threshold
//!   at some step after the cutover: its own load then plus the virtual
//!   node's load on the target; it did not), or latency fell / throughput
//!   rose by more than the margin;
//! - **neutral**: otherwise, including when there were too few samples to
//!   say (the summary says so).

use crate::decision::DecisionKind;
use crate::migration::machine::{Migration, Phase};

/// How a completed move turned out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// It did what it was for.
    Helped,
    /// Nothing measurable changed, or there was too little to tell.
    Neutral,
    /// The virtual node got worse service, or the target overloaded.
    Hurt,
}

impl Verdict {
    /// Every verdict.
    pub const ALL: [Verdict; 3] = [Verdict::Helped, Verdict::Neutral, Verdict::Hurt];

    /// `helped`, `neutral`, `hurt`.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Helped => "helped",
            Verdict::Neutral => "neutral",
            Verdict::Hurt => "hurt",
        }
    }
}

/// When a verdict is reached.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Criteria {
    /// Relative change of latency or throughput that counts, e.g. 0.1 = 10 %.
    pub margin: f64,
    /// Samples needed on each side of the cutover before a latency or
    /// throughput change counts.
    pub min_points: usize,
    /// Utilisation (fraction of CPU capacity) above which a node is overloaded.
    pub overload_threshold: f64,
}

impl Default for Criteria {
    fn default() -> Self {
        Criteria { margin: 0.1, min_points: 3, overload_threshold: 0.9 }
    }
}

impl Criteria {
    /// Checks the numbers make sense.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.margin.is_finite() && self.margin > 0.0 && self.margin < 1.0) {
            return Err(format!("outcomes.margin must be in (0, 1), got {}", self.margin));
        }
        if self.min_points == 0 {
            return Err("outcomes.min_points must be at least 1".into());
        }
        if !(self.overload_threshold.is_finite() && self.overload_threshold > 0.0) {
            return Err(format!("the overload threshold must be > 0, got {}", self.overload_threshold));
        }
        Ok(())
    }
}

/// Samples of one series, `(ms, value)`, oldest first.
pub type Samples = [(i64, f64)];

/// The samples one outcome is measured from, each covering both windows
/// (`[cutover − window, cutover + window]`); any may be empty.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    /// Source's CPU in use, cores.
    pub source_cpu: &'a Samples,
    /// Target's CPU in use, cores.
    pub target_cpu: &'a Samples,
    /// The virtual node's CPU in use, cores.
    pub virt_cpu: &'a Samples,
    /// The virtual node's latency, ms.
    pub latency_ms: &'a Samples,
    /// The virtual node's throughput, requests/s.
    pub throughput_rps: &'a Samples,
    /// Source's CPU capacity, cores.
    pub source_cores: f64,
    /// Target's CPU capacity, cores.
    pub target_cores: f64,
}

/// Means over one window (`None`: no sample there).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Side {
    /// Source's mean CPU utilisation, fraction of capacity.
    pub source_utilisation: Option<f64>,
    /// Target's mean CPU utilisation.
    pub target_utilisation: Option<f64>,
    /// Source's highest utilisation in the window.
    pub source_peak: Option<f64>,
    /// Target's highest utilisation in the window.
    pub target_peak: Option<f64>,
    /// The virtual node's mean latency, ms.
    pub latency_ms: Option<f64>,
    /// The virtual node's mean throughput, requests/s.
    pub throughput_rps: Option<f64>,
}

/// What one completed move achieved.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Why the move was decided (outcomes are counted per kind).
    pub kind: DecisionKind,
    /// When the placement changed, ms.
    pub cutover_at_ms: i64,
    /// Length of each window, ms.
    pub window_ms: i64,
    /// When it was measured, ms.
    pub measured_at_ms: i64,
    /// The window before the cutover.
    pub before: Side,
    /// The window after.
    pub after: Side,
    /// Had the virtual node stayed: the source's highest utilisation after
    /// the cutover (its load plus the virtual node's, step by step).
    pub source_peak_without_move: Option<f64>,
    /// That counterfactual passed the threshold and the real source did not.
    pub overload_prevented: bool,
    /// The virtual node's latency rose or its throughput fell beyond the
    /// margin: the evidence a move back acts on.
    pub service_worse: bool,
    /// Utilisation the move was expected to take off the source: the
    /// virtual node's mean load before, over the source's capacity.
    pub predicted_relief: Option<f64>,
    /// Utilisation it did take off: the source's mean before minus after.
    pub realised_relief: Option<f64>,
    /// The verdict.
    pub verdict: Verdict,
    /// One line for people: why this verdict.
    pub summary: String,
}

fn split(s: &Samples, cutover: i64) -> (&Samples, &Samples) {
    let i = s.partition_point(|p| p.0 < cutover);
    (&s[..i], &s[i..])
}

fn mean(s: &Samples) -> Option<f64> {
    (!s.is_empty()).then(|| s.iter().map(|p| p.1).sum::<f64>() / s.len() as f64)
}

fn peak(s: &Samples) -> Option<f64> {
    s.iter().map(|p| p.1).reduce(f64::max)
}

fn side(o: &Observed, pick: impl Fn(&Samples) -> &Samples) -> Side {
    let util = |s: &Samples, cores: f64, f: fn(&Samples) -> Option<f64>| f(pick(s)).map(|v| v / cores);
    Side {
        source_utilisation: util(o.source_cpu, o.source_cores, mean),
        target_utilisation: util(o.target_cpu, o.target_cores, mean),
        source_peak: util(o.source_cpu, o.source_cores, peak),
        target_peak: util(o.target_cpu, o.target_cores, peak),
        latency_ms: mean(pick(o.latency_ms)),
        throughput_rps: mean(pick(o.throughput_rps)),
    }
}

/// The source's highest utilisation after the cutover had the virtual node
/// stayed: at each step where both are known, the source's load plus the
/// virtual node's (the closest sample at or before that step).
fn peak_without_move(source_after: &Samples, virt_after: &Samples, cores: f64) -> Option<f64> {
    source_after
        .iter()
        .filter_map(|&(t, load)| {
            let i = virt_after.partition_point(|p| p.0 <= t);
            (i > 0).then(|| (load + virt_after[i - 1].1) / cores)
        })
        .reduce(f64::max)
}

/// Relative change from `before` to `after` when both sides have enough samples.
fn change(before: &Samples, after: &Samples, min_points: usize) -> Option<f64> {
    if before.len() < min_points || after.len() < min_points {
        return None;
    }
    let (b, a) = (mean(before)?, mean(after)?);
    (b > 0.0).then(|| (a - b) / b)
}

/// When and why the move being judged was made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Move {
    /// Why it was decided.
    pub kind: DecisionKind,
    /// When the placement changed, ms; it splits the samples.
    pub cutover_at_ms: i64,
    /// Length of each window, ms (recorded with the outcome).
    pub window_ms: i64,
}

/// Measures one outcome at `now_ms`.
pub fn assess(o: &Observed, c: &Criteria, mv: Move, now_ms: i64) -> Outcome {
    let Move { kind, cutover_at_ms, window_ms } = mv;
    let before = side(o, |s| split(s, cutover_at_ms).0);
    let after = side(o, |s| split(s, cutover_at_ms).1);
    let (src_after, virt_before, virt_after) =
        (split(o.source_cpu, cutover_at_ms).1, split(o.virt_cpu, cutover_at_ms).0, split(o.virt_cpu, cutover_at_ms).1);
    let without = peak_without_move(src_after, virt_after, o.source_cores);
    let over = |u: Option<f64>| u.is_some_and(|u| u > c.overload_threshold);
    let overload_prevented = over(without) && after.source_peak.is_some_and(|u| u <= c.overload_threshold);
    let predicted_relief = mean(virt_before).map(|v| v / o.source_cores);
    let realised_relief = before.source_utilisation.zip(after.source_utilisation).map(|(b, a)| b - a);
    let (lat_b, lat_a) = split(o.latency_ms, cutover_at_ms);
    let (tp_b, tp_a) = split(o.throughput_rps, cutover_at_ms);
    let latency = change(lat_b, lat_a, c.min_points);
    let throughput = change(tp_b, tp_a, c.min_points);
    let made_overload = over(after.target_peak) && !over(before.target_peak);
    let pct = |x: f64| format!("{:.0} %", x.abs() * 100.0);

    let mut hurt = Vec::new();
    if let Some(l) = latency.filter(|&l| l > c.margin) {
        hurt.push(format!("latency rose {}", pct(l)));
    }
    if let Some(t) = throughput.filter(|&t| t < -c.margin) {
        hurt.push(format!("throughput fell {}", pct(t)));
    }
    let service_worse = !hurt.is_empty();
    if made_overload {
        hurt.push(format!(
            "the target reached {:.0} % (over the {:.0} % threshold) after the move",
            after.target_peak.unwrap_or(0.0) * 100.0,
            c.overload_threshold * 100.0
        ));
    }
    let mut helped = Vec::new();
    if overload_prevented {
        helped.push(format!(
            "prevented an overload: the source would have reached {:.0} %, it peaked at {:.0} %",
            without.unwrap_or(0.0) * 100.0,
            after.source_peak.unwrap_or(0.0) * 100.0
        ));
    }
    if let Some(l) = latency.filter(|&l| l < -c.margin) {
        helped.push(format!("latency fell {}", pct(l)));
    }
    if let Some(t) = throughput.filter(|&t| t > c.margin) {
        helped.push(format!("throughput rose {}", pct(t)));
    }
    let (verdict, summary) = if !hurt.is_empty() {
        (Verdict::Hurt, hurt.join("; "))
    } else if !helped.is_empty() {
        (Verdict::Helped, helped.join("; "))
    } else if src_after.is_empty() && lat_a.is_empty() && tp_a.is_empty() {
        (Verdict::Neutral, "no samples after the cutover to judge by".to_owned())
    } else {
        let mut why = vec!["no change beyond the margin".to_owned()];
        if without.is_some() && !over(without) {
            why.push("the source would not have overloaded anyway".into());
        } else if over(after.source_peak) {
            why.push("the source overloaded all the same".into());
        }
        (Verdict::Neutral, why.join("; "))
    };
    Outcome {
        kind,
        cutover_at_ms,
        window_ms,
        measured_at_ms: now_ms,
        before,
        after,
        source_peak_without_move: without,
        overload_prevented,
        service_worse,
        predicted_relief,
        realised_relief,
        verdict,
        summary,
    }
}

/// Where a decision's outcome stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Standing<'a> {
    /// The move is under way (`None`), or completed at the given time and
    /// its window has not passed.
    Pending(Option<i64>),
    /// Measured.
    Measured(&'a Outcome),
    /// No move took place: rejected, rolled back, or no migration at all.
    NotMoved,
}

impl Standing<'_> {
    /// `pending`, `not moved`, or the verdict's name.
    pub fn name(&self) -> &'static str {
        match self {
            Standing::Pending(_) => "pending",
            Standing::Measured(o) => o.verdict.name(),
            Standing::NotMoved => "not moved",
        }
    }

    /// Why, in one line.
    pub fn summary(&self) -> &str {
        match self {
            Standing::Measured(o) => &o.summary,
            Standing::Pending(Some(_)) => "completed; measuring over the window after the cutover",
            Standing::Pending(None) => "the move is under way",
            Standing::NotMoved => "no move took place (rejected, rolled back, or no migration)",
        }
    }
}

/// The standing of the decision carried out by `m` (`None`: it has no migration).
pub fn standing(m: Option<&Migration>) -> Standing<'_> {
    match m {
        None => Standing::NotMoved,
        Some(m) => match (&m.outcome, m.phase) {
            (Some(o), _) => Standing::Measured(o),
            (None, Phase::Completed) => Standing::Pending(m.cutover_at_ms()),
            (None, p) if p.is_terminal() => Standing::NotMoved,
            (None, _) => Standing::Pending(None),
        },
    }
}

/// Whether an outcome can be measured at `now_ms`: both windows have
/// passed since the cutover, plus `grace_ms` for samples that arrive late.
pub fn due(cutover_at_ms: i64, window_ms: i64, grace_ms: i64, now_ms: i64) -> bool {
    now_ms >= cutover_at_ms.saturating_add(window_ms).saturating_add(grace_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_000_000;

    fn series(from: i64, values: &[f64]) -> Vec<(i64, f64)> {
        values.iter().enumerate().map(|(i, &v)| (from + i as i64 * 1000, v)).collect()
    }

    struct Case {
        source: Vec<(i64, f64)>,
        target: Vec<(i64, f64)>,
        virt: Vec<(i64, f64)>,
        latency: Vec<(i64, f64)>,
        throughput: Vec<(i64, f64)>,
    }

    impl Case {
        /// Source of 10 cores at 8 before the cutover (v uses 3), then 5;
        /// target of 10 cores at 2, then 5; latency and throughput steady.
        fn relieved() -> Case {
            Case {
                source: [series(T - 4000, &[8.0; 4]), series(T, &[5.0, 6.5, 5.0, 5.0])].concat(),
                target: [series(T - 4000, &[2.0; 4]), series(T, &[5.0; 4])].concat(),
                virt: [series(T - 4000, &[3.0; 4]), series(T, &[3.0; 4])].concat(),
                latency: series(T - 4000, &[10.0; 8]),
                throughput: series(T - 4000, &[100.0; 8]),
            }
        }

        fn assess(&self) -> Outcome {
            let o = Observed {
                source_cpu: &self.source,
                target_cpu: &self.target,
                virt_cpu: &self.virt,
                latency_ms: &self.latency,
                throughput_rps: &self.throughput,
                source_cores: 10.0,
                target_cores: 10.0,
            };
            let mv = Move { kind: DecisionKind::Predictive, cutover_at_ms: T, window_ms: 4000 };
            assess(&o, &Criteria::default(), mv, T + 5000)
        }
    }

    #[test]
    fn a_prevented_overload_helped_and_the_relief_is_measured() {
        let o = Case::relieved().assess();
        assert_eq!(o.verdict, Verdict::Helped, "{}", o.summary);
        assert!(o.overload_prevented);
        // 6.5 + 3 on 10 cores.
        assert!((o.source_peak_without_move.unwrap() - 0.95).abs() < 1e-9);
        assert!((o.predicted_relief.unwrap() - 0.3).abs() < 1e-9);
        assert!((o.realised_relief.unwrap() - (0.8 - 0.5375)).abs() < 1e-9);
        assert_eq!(o.before.target_utilisation, Some(0.2));
        assert_eq!(o.after.target_utilisation, Some(0.5));
        assert!(o.summary.contains("would have reached 95 %"), "{}", o.summary);
    }

    #[test]
    fn latency_up_beyond_the_margin_hurts_even_when_an_overload_was_prevented() {
        let mut c = Case::relieved();
        c.latency = [series(T - 4000, &[10.0; 4]), series(T, &[12.0; 4])].concat();
        let o = c.assess();
        assert_eq!(o.verdict, Verdict::Hurt);
        assert!(o.service_worse);
        assert!(o.summary.contains("latency rose 20 %"), "{}", o.summary);
        // Within the margin it does not count.
        c.latency = [series(T - 4000, &[10.0; 4]), series(T, &[10.5; 4])].concat();
        assert_eq!(c.assess().verdict, Verdict::Helped);
    }

    #[test]
    fn too_few_samples_are_no_evidence_and_no_counterfactual_overload_is_neutral() {
        let mut c = Case::relieved();
        // The source would have peaked at 0.8: nothing to prevent.
        c.source = [series(T - 4000, &[8.0; 4]), series(T, &[5.0; 4])].concat();
        c.latency = [series(T - 4000, &[10.0; 4]), series(T, &[30.0; 2])].concat();
        let o = c.assess();
        assert_eq!(o.verdict, Verdict::Neutral, "{}", o.summary);
        assert!(o.summary.contains("would not have overloaded"), "{}", o.summary);
        let empty = Case { source: vec![], target: vec![], virt: vec![], latency: vec![], throughput: vec![] };
        let o = empty.assess();
        assert_eq!(o.verdict, Verdict::Neutral);
        assert_eq!(o.summary, "no samples after the cutover to judge by");
        assert_eq!((o.predicted_relief, o.realised_relief), (None, None));
    }

    #[test]
    fn an_overload_made_on_the_target_hurts() {
        let mut c = Case::relieved();
        c.target = [series(T - 4000, &[6.5; 4]), series(T, &[9.5; 4])].concat();
        let o = c.assess();
        assert_eq!(o.verdict, Verdict::Hurt);
        assert!(!o.service_worse, "the virtual node's own service did not get worse");
        assert!(o.summary.contains("the target reached 95 %"), "{}", o.summary);
    }

    #[test]
    fn standing_follows_the_migration() {
        let mut m = Migration::propose("m1".into(), 1, "v".into(), "a".into(), "b".into(), 0);
        assert_eq!(standing(None), Standing::NotMoved);
        assert_eq!(standing(Some(&m)), Standing::Pending(None));
        m.phase = Phase::Completed;
        m.history.push(crate::migration::machine::Transition { phase: Phase::Completed, at_ms: 7, cause: "c".into() });
        assert_eq!(standing(Some(&m)), Standing::Pending(Some(7)));
        let o = Case::relieved().assess();
        m.outcome = Some(o.clone());
        assert_eq!(standing(Some(&m)), Standing::Measured(&o));
        m.outcome = None;
        m.phase = Phase::RolledBack;
        assert_eq!(standing(Some(&m)), Standing::NotMoved);
    }

    #[test]
    fn due_waits_for_the_window_and_the_grace() {
        assert!(!due(T, 4000, 500, T + 4499));
        assert!(due(T, 4000, 500, T + 4500));
    }
}
