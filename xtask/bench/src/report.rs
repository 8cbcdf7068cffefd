//! The bench's results: figures with their runs, median and goal; the
//! table on stdout and `bench.json`. Pure data and formatting, no I/O.

use std::fmt::Write as _;

use serde::Serialize;

/// A goal a figure is held to.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Goal {
    /// The value must be at most this.
    AtMost {
        /// The limit, in the figure's unit.
        limit: f64,
    },
    /// The value must be at most this multiple of another figure's value.
    AtMostTimes {
        /// The multiple.
        times: f64,
        /// The other figure's id.
        of: &'static str,
    },
}

/// Whether a figure met its goal.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Measured and within every goal.
    Met,
    /// Measured and outside a goal.
    Missed,
    /// Measured; it has no goal.
    Info,
    /// Not measured, with the reason.
    NotMeasured(String),
    /// Measured, but the goal does not apply here (e.g. a KVM goal under TCG).
    NotJudged(String),
}

/// One figure of the table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    /// Stable id (`cold_build_s`, `warm_rebuild_s`, …).
    pub id: &'static str,
    /// What it is, for the table.
    pub name: String,
    /// `s`, `MB`, `ratio`.
    pub unit: &'static str,
    /// Every run's value.
    pub runs: Vec<f64>,
    /// The median of the runs (None when not measured).
    pub value: Option<f64>,
    /// The goals (all must hold).
    pub goals: Vec<Goal>,
    /// Met, missed, info or not measured.
    pub status: Status,
    /// Where the time or bytes went (step timings, method), one line.
    pub detail: String,
}

impl Figure {
    /// A figure measured in `runs` (its value is their median).
    pub fn measured(id: &'static str, name: &str, unit: &'static str, runs: Vec<f64>) -> Figure {
        Figure {
            id,
            name: name.to_string(),
            unit,
            value: median(&runs),
            runs,
            goals: Vec::new(),
            status: Status::Info,
            detail: String::new(),
        }
    }

    /// A figure that was not measured, and why.
    pub fn not_measured(id: &'static str, name: &str, unit: &'static str, why: &str) -> Figure {
        Figure {
            id,
            name: name.to_string(),
            unit,
            runs: Vec::new(),
            value: None,
            goals: Vec::new(),
            status: Status::NotMeasured(why.to_string()),
            detail: String::new(),
        }
    }

    /// Adds a goal.
    pub fn goal(mut self, goal: Goal) -> Figure {
        self.goals.push(goal);
        self
    }

    /// Sets the detail line.
    pub fn detail(mut self, detail: impl Into<String>) -> Figure {
        self.detail = detail.into();
        self
    }
}

/// The median (the mean of the middle two for an even count); None if empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Decides each measured figure's status from its goals; a goal relative
/// to a figure that was not measured cannot be judged and is reported so.
pub fn judge(figures: &mut [Figure]) {
    let values: Vec<(&'static str, Option<f64>)> =
        figures.iter().map(|f| (f.id, f.value)).collect();
    let value_of = |id: &str| values.iter().find(|(i, _)| *i == id).and_then(|(_, v)| *v);
    for f in figures.iter_mut() {
        let Some(v) = f.value else { continue };
        if matches!(f.status, Status::NotJudged(_)) {
            continue;
        }
        if f.goals.is_empty() {
            f.status = Status::Info;
            continue;
        }
        let mut missed = false;
        let mut unknown = Vec::new();
        for g in &f.goals {
            match *g {
                Goal::AtMost { limit } => missed |= v > limit,
                Goal::AtMostTimes { times, of } => match value_of(of) {
                    Some(base) => missed |= v > times * base,
                    None => unknown.push(of),
                },
            }
        }
        f.status = if missed {
            Status::Missed
        } else if unknown.is_empty() {
            Status::Met
        } else {
            Status::NotMeasured(format!(
                "value measured, but the goal needs {} (not measured)",
                unknown.join(", ")
            ))
        };
    }
}

/// The goals as text: `≤ 45 s`, `≤ 0.1× cold_build_s`.
pub fn goal_text(f: &Figure) -> String {
    let parts: Vec<String> = f
        .goals
        .iter()
        .map(|g| match *g {
            Goal::AtMost { limit } => format!("≤ {} {}", number(limit), f.unit),
            Goal::AtMostTimes { times, of } => format!("≤ {}× {of}", number(times)),
        })
        .collect();
    if parts.is_empty() {
        "—".into()
    } else {
        parts.join(", ")
    }
}

fn number(x: f64) -> String {
    if (x.fract() == 0.0 && x.abs() < 1e15) || x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// The value with its unit and, for several runs, the runs.
pub fn value_text(f: &Figure) -> String {
    match f.value {
        None => "—".into(),
        Some(v) => {
            let mut s = format!("{} {}", number(v), f.unit);
            if f.runs.len() > 1 {
                let runs: Vec<String> = f.runs.iter().map(|r| number(*r)).collect();
                let _ = write!(s, " (median of {}: {})", f.runs.len(), runs.join(", "));
            }
            s
        }
    }
}

fn status_text(s: &Status) -> String {
    match s {
        Status::Met => "met".into(),
        Status::Missed => "MISSED".into(),
        Status::Info => "".into(),
        Status::NotMeasured(why) => format!("not measured: {why}"),
        Status::NotJudged(why) => format!("not judged: {why}"),
    }
}

/// The table printed on stdout: figure, value, goal, status; details below
/// each row.
pub fn table(figures: &[Figure]) -> String {
    let rows: Vec<[String; 4]> = figures
        .iter()
        .map(|f| {
            [
                f.name.clone(),
                value_text(f),
                goal_text(f),
                status_text(&f.status),
            ]
        })
        .collect();
    let head = ["figure", "value", "goal", "status"];
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([head[i].len()])
            .max()
            .unwrap_or(0)
    };
    let (w0, w1, w2) = (width(0), width(1), width(2));
    let pad = |s: &str, w: usize| format!("{s}{}", " ".repeat(w - s.chars().count()));
    let line = |out: &mut String, r: [&str; 4]| {
        let text = format!(
            "{}  {}  {}  {}",
            pad(r[0], w0),
            pad(r[1], w1),
            pad(r[2], w2),
            r[3]
        );
        out.push_str(text.trim_end());
        out.push('\n');
    };
    let mut out = String::new();
    line(&mut out, head);
    for (f, r) in figures.iter().zip(&rows) {
        line(&mut out, [&r[0], &r[1], &r[2], &r[3]]);
        if !f.detail.is_empty() {
            let _ = writeln!(out, "    {}", f.detail);
        }
    }
    out
}

/// The markdown form of the table, for `docs/performance.md`.
pub fn markdown(figures: &[Figure]) -> String {
    let mut out =
        String::from("| figure | value | goal | status | where it goes |\n|---|---|---|---|---|\n");
    for f in figures {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            f.name,
            value_text(f),
            goal_text(f),
            status_text(&f.status),
            f.detail
        );
    }
    out
}

/// Fixed figures for snapshot tests.
#[cfg(test)]
pub(crate) fn tests_sample() -> Vec<Figure> {
    let mut f = vec![
        Figure::measured("cold_build_s", "cold build", "s", vec![600.0])
            .detail("steps: tools=100.0 base=200.0"),
        Figure::measured("floor_s", "floor: bare mmdebstrap", "s", vec![150.0]),
        Figure::measured("cold_over_floor", "cold / floor", "ratio", vec![4.0])
            .goal(Goal::AtMost { limit: 2.5 }),
        Figure::measured(
            "warm_rebuild_s",
            "warm rebuild",
            "s",
            vec![41.0, 39.5, 44.0],
        )
        .goal(Goal::AtMost { limit: 45.0 })
        .goal(Goal::AtMostTimes {
            times: 0.1,
            of: "cold_build_s",
        }),
        Figure::measured("noop_rebuild_s", "no-op rebuild", "s", vec![0.6, 0.5, 0.7])
            .goal(Goal::AtMost { limit: 3.0 }),
        Figure::not_measured(
            "vm_test_bios_total_s",
            "vm-test bios: total",
            "s",
            "not selected (--only)",
        )
        .goal(Goal::AtMost { limit: 150.0 }),
    ];
    judge(&mut f);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.5]), Some(7.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 1.0]), Some(1.0));
    }

    #[test]
    fn judge_applies_absolute_and_relative_goals() {
        let f = tests_sample();
        assert_eq!(f[2].status, Status::Missed);
        assert_eq!(f[3].status, Status::Met);
        assert_eq!(f[4].status, Status::Met);
        assert!(matches!(f[5].status, Status::NotMeasured(_)));
        let mut alone = vec![
            Figure::measured("warm_rebuild_s", "warm", "s", vec![30.0]).goal(Goal::AtMostTimes {
                times: 0.1,
                of: "cold_build_s",
            }),
        ];
        judge(&mut alone);
        assert!(matches!(&alone[0].status, Status::NotMeasured(w) if w.contains("cold_build_s")));
    }

    #[test]
    fn table_snapshot() {
        insta::assert_snapshot!(table(&tests_sample()));
    }

    #[test]
    fn markdown_snapshot() {
        insta::assert_snapshot!(markdown(&tests_sample()));
    }
}
