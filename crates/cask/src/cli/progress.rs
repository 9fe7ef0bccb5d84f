//! Progress bars for long work, shown on stderr only when stderr is a terminal.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar over a byte count, or nothing when stderr is not a terminal.
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar counting bytes, labelled `what`.
    pub fn bytes(what: &str) -> Self {
        Self::with_template(
            what,
            "{msg:10} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        )
    }

    /// A bar counting `total` operations.
    pub fn count(what: &str, total: u64) -> Self {
        let p = Self::with_template(what, "{msg:6} [{bar:40}] {pos}/{len} ({per_sec}, {eta})");
        p.update(0, total);
        p
    }

    /// A bar counting items when the total is unknown (a spinner with a count).
    pub fn items(what: &str) -> Self {
        if !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {pos} ({per_sec})") {
            bar.set_style(style);
        }
        bar.set_message(what.to_string());
        Progress { bar: Some(bar) }
    }

    fn with_template(what: &str, template: &str) -> Self {
        if !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let bar = ProgressBar::new(0);
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what.to_string());
        Progress { bar: Some(bar) }
    }

    /// Records `done` out of `total`.
    pub fn update(&self, done: u64, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(done);
        }
    }

    /// Records `done` (for bars without a total).
    pub fn set(&self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
