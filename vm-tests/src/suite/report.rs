//! Outcomes, the human table and JUnit XML.

use std::fmt::Write as _;

/// The outcome of one case. Neither not-run nor not-applicable ever
/// counts as pass. In JSON: `"outcome": "pass" | "fail" | "not-run" |
/// "not-applicable"` with its `"detail"`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", content = "detail", rename_all = "kebab-case")]
pub enum Outcome {
    /// Proven, with what was observed.
    Pass(String),
    /// Disproven or broken, with why.
    Fail(String),
    /// Could not run here, with why: the invariant applies but this run
    /// could not prove it.
    NotRun(String),
    /// The image's spec turns the feature the invariant is about off (for
    /// example SSH-1 without `features.openssh`), with the evidence that it
    /// is off: nothing to prove, and nothing proven.
    NotApplicable(String),
}

impl Outcome {
    /// `pass`, `FAIL`, `not-run` or `n/a`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Pass(_) => "pass",
            Outcome::Fail(_) => "FAIL",
            Outcome::NotRun(_) => "not-run",
            Outcome::NotApplicable(_) => "n/a",
        }
    }
    /// The detail text.
    pub fn detail(&self) -> &str {
        match self {
            Outcome::Pass(s)
            | Outcome::Fail(s)
            | Outcome::NotRun(s)
            | Outcome::NotApplicable(s) => s,
        }
    }
}

/// One case's result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CaseResult {
    /// Invariant ID.
    pub id: String,
    /// Title.
    pub title: String,
    /// Firmware it ran under (`bios`, `uefi`).
    pub firmware: String,
    /// Outcome.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Seconds spent.
    pub seconds: f64,
}

/// The file in vm-test's output directory that holds the run's
/// [`PassTiming`]s as a JSON array.
pub const PASSES_FILE: &str = "passes.json";

/// How long one firmware pass took, for `target/vm-test/passes.json`
/// (read by `cargo xtask ci` and `bench`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PassTiming {
    /// `bios` or `uefi`.
    pub firmware: String,
    /// Primary or secondary (`primary` runs every ID, `secondary` only the firmware-dependent ones).
    pub role: String,
    /// Whether its main machine ran on instruction-counted time.
    pub icount: bool,
    /// The accelerator (`kvm`, `tcg`).
    pub accel: String,
    /// Seconds from starting the machine to its shutdown.
    pub seconds: f64,
    /// IDs that ran.
    pub cases: usize,
}

/// All results of a run, plus facts for the report.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    /// Case results, in run order.
    pub cases: Vec<CaseResult>,
    /// Free-form facts (accelerator, audit counts, security score…).
    pub notes: Vec<String>,
    /// One record per firmware pass that booted, in run order.
    pub passes: Vec<PassTiming>,
}

impl Report {
    /// Number of failures.
    pub fn failures(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Fail(_)))
    }

    /// Number of cases whose outcome satisfies `which`.
    pub fn count(&self, which: impl Fn(&Outcome) -> bool) -> usize {
        self.cases.iter().filter(|c| which(&c.outcome)).count()
    }
}

/// The file in vm-test's output directory that holds [`report_json`].
pub const REPORT_JSON_FILE: &str = "report.json";

/// The counts of the summary line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Cases proven.
    pub passed: usize,
    /// Cases disproven or broken.
    pub failed: usize,
    /// Cases that could not run here (never counted as passed).
    pub not_run: usize,
    /// Cases about a feature the spec turns off (never counted as passed).
    pub not_applicable: usize,
}

impl Report {
    /// The counts of each outcome.
    pub fn summary(&self) -> Summary {
        Summary {
            passed: self.count(|o| matches!(o, Outcome::Pass(_))),
            failed: self.failures(),
            not_run: self.count(|o| matches!(o, Outcome::NotRun(_))),
            not_applicable: self.count(|o| matches!(o, Outcome::NotApplicable(_))),
        }
    }
}

/// `vm-test --json` (and `target/vm-test/report.json`): the summary, then
/// every case with its firmware, outcome and detail (the same outcomes as
/// [`junit_xml`]), the notes and the passes' timings (docs/cli.md).
pub fn report_json(report: &Report) -> String {
    #[derive(serde::Serialize)]
    struct Json<'a> {
        summary: Summary,
        #[serde(flatten)]
        report: &'a Report,
    }
    let json = Json {
        summary: report.summary(),
        report,
    };
    // Strings and numbers only: serializing cannot fail.
    serde_json::to_string_pretty(&json).unwrap_or_default() + "\n"
}

/// The run's [`PassTiming`]s as pretty JSON (for [`PASSES_FILE`]).
pub fn passes_json(report: &Report) -> String {
    serde_json::to_string_pretty(&report.passes).unwrap_or_else(|_| "[]".into()) + "\n"
}

/// The pass timings a run wrote to [`PASSES_FILE`] in `out_dir` (empty
/// when there are none or the file is not ours).
pub fn read_passes(out_dir: &std::path::Path) -> Vec<PassTiming> {
    std::fs::read_to_string(out_dir.join(PASSES_FILE))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Lines of a passing (or not run, not applicable) case's detail the
/// table shows; a failure's detail is shown whole.
const DETAIL_LINES: usize = 12;

/// The human table: ID, title, outcome, seconds, per firmware.
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let mut fw = "";
    for c in &report.cases {
        if c.firmware != fw {
            fw = &c.firmware;
            let _ = writeln!(out, "\n== firmware: {fw}");
            let _ = writeln!(
                out,
                "{:<7} {:<62} {:<8} {:>7}",
                "ID", "title", "outcome", "seconds"
            );
        }
        let _ = writeln!(
            out,
            "{:<7} {:<62} {:<8} {:>7.1}",
            c.id,
            truncate(&c.title, 62),
            c.outcome.label(),
            c.seconds
        );
        // A failure's detail in full (it is what the reader needs); any
        // other detail up to DETAIL_LINES, then how much junit.xml has more.
        let lines: Vec<&str> = c.outcome.detail().lines().collect();
        let shown = if matches!(c.outcome, Outcome::Fail(_)) {
            lines.len()
        } else {
            lines.len().min(DETAIL_LINES)
        };
        for line in &lines[..shown] {
            let _ = writeln!(out, "        {line}");
        }
        if shown < lines.len() {
            let _ = writeln!(
                out,
                "        … {} more line(s) in junit.xml",
                lines.len() - shown
            );
        }
    }
    let s = report.summary();
    let _ = writeln!(
        out,
        "\n{} passed, {} failed, {} not run, {} not applicable",
        s.passed, s.failed, s.not_run, s.not_applicable
    );
    for n in &report.notes {
        let _ = writeln!(out, "note: {n}");
    }
    out
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).collect::<String>() + "…"
    }
}

fn xml_escape(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&apos;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// JUnit XML: one testcase per ID and firmware; not-run and
/// not-applicable as skipped, told apart by the message (`not applicable:
/// …` for the latter).
pub fn junit_xml(report: &Report) -> String {
    let total: f64 = report.cases.iter().map(|c| c.seconds).sum();
    let skipped = report.count(|o| matches!(o, Outcome::NotRun(_) | Outcome::NotApplicable(_)));
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuite name=\"vm-test\" tests=\"{}\" failures=\"{}\" skipped=\"{skipped}\" time=\"{total:.1}\">",
        report.cases.len(),
        report.failures()
    );
    for c in &report.cases {
        let _ = write!(
            out,
            "  <testcase classname=\"vm-test.{}\" name=\"{} {}\" time=\"{:.1}\"",
            xml_escape(&c.firmware),
            xml_escape(&c.id),
            xml_escape(&c.title),
            c.seconds
        );
        match &c.outcome {
            Outcome::Pass(_) => out.push_str("/>\n"),
            Outcome::Fail(why) => {
                let _ = writeln!(
                    out,
                    ">\n    <failure message=\"{}\"/>\n  </testcase>",
                    xml_escape(why)
                );
            }
            Outcome::NotRun(why) => {
                let _ = writeln!(
                    out,
                    ">\n    <skipped message=\"{}\"/>\n  </testcase>",
                    xml_escape(why)
                );
            }
            Outcome::NotApplicable(why) => {
                let _ = writeln!(
                    out,
                    ">\n    <skipped message=\"not applicable: {}\"/>\n  </testcase>",
                    xml_escape(why)
                );
            }
        }
    }
    if !report.notes.is_empty() {
        let _ = writeln!(
            out,
            "  <system-out>{}</system-out>",
            xml_escape(&report.notes.join("\n"))
        );
    }
    out.push_str("</testsuite>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let case = |id: &str, outcome| CaseResult {
            id: id.into(),
            title: format!("title of {id} <&>"),
            firmware: "bios".into(),
            outcome,
            seconds: 1.25,
        };
        Report {
            cases: vec![
                case("NET-1", Outcome::Pass("ufw active".into())),
                case("NET-3", Outcome::Fail("listens on 0.0.0.0:18789".into())),
                case(
                    "TS-1",
                    Outcome::NotRun("Tailscale absent from the image".into()),
                ),
                case(
                    "SSH-1",
                    Outcome::NotApplicable("features.openssh is off".into()),
                ),
            ],
            notes: vec!["accelerator: tcg".into()],
            passes: vec![PassTiming {
                firmware: "bios".into(),
                role: "primary".into(),
                icount: true,
                accel: "tcg".into(),
                seconds: 1400.5,
                cases: 4,
            }],
        }
    }

    #[test]
    fn json_carries_every_case_with_firmware_outcome_and_detail() {
        insta::assert_snapshot!(report_json(&sample()));
    }

    #[test]
    fn junit_marks_not_run_as_skipped_and_fail_as_failure() {
        let xml = junit_xml(&sample());
        assert!(
            xml.contains("tests=\"4\" failures=\"1\" skipped=\"2\""),
            "{xml}"
        );
        assert!(
            xml.contains("<skipped message=\"Tailscale absent from the image\"/>"),
            "{xml}"
        );
        assert!(
            xml.contains("<failure message=\"listens on 0.0.0.0:18789\"/>"),
            "{xml}"
        );
        assert!(
            xml.contains("<skipped message=\"not applicable: features.openssh is off\"/>"),
            "{xml}"
        );
        assert!(xml.contains("title of NET-1 &lt;&amp;&gt;"), "{xml}");
        assert!(
            xml.contains("<system-out>accelerator: tcg</system-out>"),
            "{xml}"
        );
    }

    #[test]
    fn table_counts() {
        let t = table(&sample());
        assert!(
            t.contains("1 passed, 1 failed, 1 not run, 1 not applicable"),
            "{t}"
        );
        assert!(t.contains("SSH-1") && t.contains("n/a"), "{t}");
        assert_eq!(sample().failures(), 1);
    }

    #[test]
    fn a_failure_shows_its_whole_detail_a_pass_the_first_lines() {
        let long: String = (1..=20).map(|i| format!("line {i}\n")).collect();
        let mut r = sample();
        r.cases[0].outcome = Outcome::Pass(long.clone());
        r.cases[1].outcome = Outcome::Fail(long.replace("line", "why"));
        let t = table(&r);
        assert!(t.contains("line 12") && !t.contains("line 13"), "{t}");
        assert!(t.contains("… 8 more line(s) in junit.xml"), "{t}");
        assert!(t.contains("why 20"), "{t}");
    }
}
