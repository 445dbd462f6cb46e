//! The Prometheus text exposition format 0.0.4, written by hand from porxy's own values: a
//! family is its `# HELP` and `# TYPE` lines, then one line per sample,
//! `name{label="value",...} value`. Label values are escaped as the format says (backslash,
//! double quote, newline); so is help text (backslash, newline).

use std::fmt::{Display, Write};

use porxy_core::Histogram;

/// The content type of the format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// The text of a scrape, family by family.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts family `name`: its help and type lines.
    pub fn family(&mut self, name: &'static str, kind: Kind, help: &str) -> Family<'_> {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        Family {
            out: &mut self.out,
            name,
        }
    }

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }
}

/// One family's samples.
pub struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl Family<'_> {
    /// One sample with `labels`.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl Display) -> &mut Self {
        self.sample_of("", labels, value)
    }

    /// A histogram's series with `labels`: its cumulative buckets (`_bucket`, with `le`), its
    /// sum (`_sum`) and count (`_count`).
    pub fn histogram(&mut self, labels: &[(&str, &str)], histogram: &Histogram) -> &mut Self {
        let mut cumulative = 0u64;
        for (i, count) in histogram.counts().iter().enumerate() {
            cumulative = cumulative.wrapping_add(*count);
            let le = match histogram.bounds.get(i) {
                Some(bound) => bound.to_string(),
                None => "+Inf".to_string(),
            };
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample_of("_bucket", &with_le, cumulative);
        }
        self.sample_of("_sum", labels, histogram.sum_seconds());
        self.sample_of("_count", labels, cumulative)
    }

    /// One sample of the series `name` + `suffix`.
    fn sample_of(
        &mut self,
        suffix: &str,
        labels: &[(&str, &str)],
        value: impl Display,
    ) -> &mut Self {
        self.out.push_str(self.name);
        self.out.push_str(suffix);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (name, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let value = value
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.out, "{name}=\"{value}\"");
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_samples_are_written_and_escaped() {
        let mut text = Exposition::default();
        text.family(
            "porxy_x_total",
            Kind::Counter,
            "Things, \\ counted.\nTwice.",
        )
        .sample(&[("path", "C:\\a \"b\"\nc")], 3)
        .sample(&[], 0);
        assert_eq!(
            text.finish(),
            "# HELP porxy_x_total Things, \\\\ counted.\\nTwice.\n\
             # TYPE porxy_x_total counter\n\
             porxy_x_total{path=\"C:\\\\a \\\"b\\\"\\nc\"} 3\n\
             porxy_x_total 0\n"
        );
    }
}
