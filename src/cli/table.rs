//! Plain-text tables for the CLI's human-readable output.

use std::fmt::Write as _;

/// A table of rows of cells, printed with columns padded to their widest cell. Columns after
/// the first are right-aligned when every body cell in them looks like a number.
#[derive(Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Table {
        Table {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    pub fn render(&self) -> String {
        let ncols = self
            .rows
            .iter()
            .map(Vec::len)
            .chain(std::iter::once(self.header.len()))
            .max()
            .unwrap_or(0);
        let width = |s: &str| s.chars().count();
        let mut widths = vec![0usize; ncols];
        let mut numeric = vec![true; ncols];
        for (c, h) in self.header.iter().enumerate() {
            widths[c] = widths[c].max(width(h));
        }
        for row in &self.rows {
            for (c, cell) in row.iter().enumerate() {
                widths[c] = widths[c].max(width(cell));
                if !looks_numeric(cell) {
                    numeric[c] = false;
                }
            }
        }
        let mut out = String::new();
        let line = |cells: &[String], out: &mut String| {
            let mut s = String::new();
            for (c, w) in widths.iter().enumerate() {
                let cell = cells.get(c).map(String::as_str).unwrap_or("");
                let pad = w.saturating_sub(width(cell));
                if c > 0 {
                    s.push_str("  ");
                }
                if c > 0 && numeric[c] {
                    s.push_str(&" ".repeat(pad));
                    s.push_str(cell);
                } else {
                    s.push_str(cell);
                    s.push_str(&" ".repeat(pad));
                }
            }
            let _ = writeln!(out, "{}", s.trim_end());
        };
        if !self.header.is_empty() {
            line(&self.header, &mut out);
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            line(&rule, &mut out);
        }
        for row in &self.rows {
            line(row, &mut out);
        }
        out
    }
}

fn looks_numeric(s: &str) -> bool {
    let t = s.trim_end_matches('%');
    !t.is_empty() && (t == "-" || t.parse::<f64>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_columns_and_right_aligns_numbers() {
        let mut t = Table::new(["judge", "acc"]);
        t.row(["a-long-judge-name", "7.5"]);
        t.row(["b", "100.0"]);
        let out = t.render();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "judge                acc");
        assert_eq!(lines[2], "a-long-judge-name    7.5");
        assert_eq!(lines[3], "b                  100.0");
    }
}
