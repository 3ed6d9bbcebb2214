//! Output: one JSON line per measurement on stdout (and optionally a file), and a readable
//! summary table at the end.

use std::io::Write;
use std::path::PathBuf;

use serde_json::Value;

pub struct Report {
    json: Option<PathBuf>,
    table: Vec<String>,
}

impl Report {
    pub fn new(json: Option<PathBuf>) -> Self {
        Self {
            json,
            table: Vec::new(),
        }
    }

    /// Prints one machine-readable line (a JSON object with at least `figure` and `kind`).
    pub fn emit(&mut self, line: Value) {
        let text = line.to_string();
        println!("{text}");
        if let Some(path) = &self.json {
            let appended = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| writeln!(f, "{text}"));
            if let Err(e) = appended {
                eprintln!("warning: could not append to {}: {e}", path.display());
            }
        }
    }

    /// Adds a line to the summary table (also shown at once on stderr as progress).
    pub fn row(&mut self, line: String) {
        eprintln!("{line}");
        self.table.push(line);
    }

    pub fn print_table(&self) {
        println!();
        for line in &self.table {
            println!("{line}");
        }
    }
}

/// The median (the mean of the middle two for an even count); 0 for none.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The `p`-th percentile (nearest rank) of `values`.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Divides, giving 0 instead of infinity or NaN.
pub fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 { 0.0 } else { a / b }
}
