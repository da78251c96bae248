//! Writers for the report formats CI systems read, shared by every command that gates: XML
//! escaping, JUnit XML (`testsuites` › `testsuite` › `testcase`, written piecewise so a caller
//! can stream test cases to disk as they finish) and GitHub Actions workflow commands
//! (`::error title=…::message`) with the runner's escaping of data and properties.

use std::fmt::Write as _;

/// `text` escaped for XML attributes and text; control characters XML 1.0 cannot carry are
/// dropped.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\t' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}

/// The counts a JUnit `testsuites` or `testsuite` element carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JunitCounts {
    /// Test cases.
    pub tests: u64,
    /// Test cases that ran and failed.
    pub failures: u64,
    /// Test cases that could not run to a verdict.
    pub errors: u64,
}

/// How one JUnit test case ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JunitVerdict<'a> {
    /// It passed.
    Passed,
    /// It ran and failed: a `<failure>` with a message, a type and optional text.
    Failure {
        /// The one-line reason.
        message: &'a str,
        /// The failure's `type` attribute.
        kind: &'a str,
        /// Longer text (output, evidence).
        text: Option<&'a str>,
    },
    /// It could not reach a verdict: an `<error>`.
    Error {
        /// The one-line reason.
        message: &'a str,
        /// The error's `type` attribute.
        kind: &'a str,
    },
    /// It was not run: a `<skipped>`.
    Skipped {
        /// Why.
        message: &'a str,
    },
}

fn counts_and_time(out: &mut String, counts: JunitCounts, seconds: Option<f64>) {
    let _ = write!(
        out,
        " tests=\"{}\" failures=\"{}\" errors=\"{}\"",
        counts.tests, counts.failures, counts.errors
    );
    if let Some(seconds) = seconds {
        let _ = write!(out, " time=\"{seconds:.3}\"");
    }
    out.push_str(">\n");
}

/// The XML declaration and the opening `<testsuites>` element.
pub fn junit_open(name: &str, counts: JunitCounts, seconds: Option<f64>) -> String {
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"{}\"",
        xml_escape(name)
    );
    counts_and_time(&mut out, counts, seconds);
    out
}

/// The opening `<testsuite>` element.
pub fn junit_suite_open(name: &str, counts: JunitCounts, seconds: Option<f64>) -> String {
    let mut out = format!("  <testsuite name=\"{}\"", xml_escape(name));
    counts_and_time(&mut out, counts, seconds);
    out
}

/// Closes a `<testsuite>`.
pub const JUNIT_SUITE_CLOSE: &str = "  </testsuite>\n";

/// Closes the `<testsuites>` document.
pub const JUNIT_CLOSE: &str = "</testsuites>\n";

/// One `<testcase>` element and its verdict.
pub fn junit_case(
    name: &str,
    classname: &str,
    seconds: Option<f64>,
    verdict: JunitVerdict<'_>,
) -> String {
    let mut out = format!(
        "    <testcase name=\"{}\" classname=\"{}\"",
        xml_escape(name),
        xml_escape(classname)
    );
    if let Some(seconds) = seconds {
        let _ = write!(out, " time=\"{seconds:.3}\"");
    }
    let _ = match verdict {
        JunitVerdict::Passed => writeln!(out, "/>"),
        JunitVerdict::Failure {
            message,
            kind,
            text,
        } => writeln!(
            out,
            ">\n      <failure message=\"{}\" type=\"{}\">{}</failure>\n    </testcase>",
            xml_escape(message),
            xml_escape(kind),
            xml_escape(text.unwrap_or(""))
        ),
        JunitVerdict::Error { message, kind } => writeln!(
            out,
            ">\n      <error message=\"{}\" type=\"{}\"/>\n    </testcase>",
            xml_escape(message),
            xml_escape(kind)
        ),
        // The reason as the element's text: the JUnit schema gives `skipped` no attributes.
        JunitVerdict::Skipped { message } => writeln!(
            out,
            ">\n      <skipped>{}</skipped>\n    </testcase>",
            xml_escape(message)
        ),
    };
    out
}

/// A GitHub Actions workflow command line (`::error file=a.yaml,line=3::message`), without
/// its newline. The message is escaped as the runner expects data (`%`, CR, LF) and every
/// property value as it expects properties (also `:` and `,`), so no text a user wrote can end
/// the command early or forge another property.
pub fn github_command(command: &str, properties: &[(&str, &str)], message: &str) -> String {
    let mut out = format!("::{command}");
    for (i, (key, value)) in properties.iter().enumerate() {
        out.push(if i == 0 { ' ' } else { ',' });
        let _ = write!(out, "{key}={}", github_property(value));
    }
    let _ = write!(out, "::{}", github_data(message));
    out
}

fn github_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn github_property(text: &str) -> String {
    github_data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escaping_covers_markup_and_drops_what_xml_cannot_carry() {
        assert_eq!(
            xml_escape("<a href=\"x\">&'\u{1}\n"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&apos;\n"
        );
    }

    #[test]
    fn junit_pieces_make_one_document() {
        let counts = JunitCounts {
            tests: 3,
            failures: 1,
            errors: 1,
        };
        let mut doc = junit_open("run <1>", counts, Some(1.5));
        doc.push_str(&junit_suite_open("suite", counts, None));
        doc.push_str(&junit_case("ok", "c", Some(0.25), JunitVerdict::Passed));
        doc.push_str(&junit_case(
            "bad",
            "c",
            None,
            JunitVerdict::Failure {
                message: "expected \"x\"",
                kind: "assertion",
                text: Some("output: y"),
            },
        ));
        doc.push_str(&junit_case(
            "down",
            "c",
            None,
            JunitVerdict::Error {
                message: "503",
                kind: "provider_error",
            },
        ));
        doc.push_str(JUNIT_SUITE_CLOSE);
        doc.push_str(JUNIT_CLOSE);
        assert_eq!(
            doc,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <testsuites name=\"run &lt;1&gt;\" tests=\"3\" failures=\"1\" errors=\"1\" time=\"1.500\">\n\
             \x20 <testsuite name=\"suite\" tests=\"3\" failures=\"1\" errors=\"1\">\n\
             \x20   <testcase name=\"ok\" classname=\"c\" time=\"0.250\"/>\n\
             \x20   <testcase name=\"bad\" classname=\"c\">\n\
             \x20     <failure message=\"expected &quot;x&quot;\" type=\"assertion\">output: y</failure>\n\
             \x20   </testcase>\n\
             \x20   <testcase name=\"down\" classname=\"c\">\n\
             \x20     <error message=\"503\" type=\"provider_error\"/>\n\
             \x20   </testcase>\n\
             \x20 </testsuite>\n\
             </testsuites>\n"
        );
    }

    #[test]
    fn workflow_commands_cannot_be_ended_early_or_forged() {
        assert_eq!(
            github_command(
                "error",
                &[("file", "a,b.yaml"), ("line", "3"), ("title", "x: y")],
                "50% off\nnext::warning::forged"
            ),
            "::error file=a%2Cb.yaml,line=3,title=x%3A y::50%25 off%0Anext::warning::forged"
        );
        assert_eq!(github_command("notice", &[], "hi"), "::notice::hi");
    }
}
