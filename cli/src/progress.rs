//! Progress bars for long operations: a bar with rate and time left per
//! item on a terminal (indicatif), nothing when stderr is not a terminal
//! or `--json` asks for quiet output.

use backplane_host::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::Mutex;

/// Bars on stderr, one item at a time.
pub struct Bars {
    bar: Mutex<Option<ProgressBar>>,
    quiet: bool,
}

impl Bars {
    /// Bars, unless `quiet`.
    pub fn new(quiet: bool) -> Self {
        Bars {
            bar: Mutex::new(None),
            quiet,
        }
    }
    fn with(&self, f: impl FnOnce(&mut Option<ProgressBar>)) {
        f(&mut self.bar.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Progress for Bars {
    fn start(&self, label: &str, total: Option<u64>) {
        if self.quiet {
            return;
        }
        let bar = match total {
            Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
        };
        let style = if total.is_some() {
            ProgressStyle::with_template(
                "{msg:<28} [{bar:30}] {human_pos}/{human_len} {per_sec} eta {eta}",
            )
        } else {
            ProgressStyle::with_template("{msg:<28} {spinner} {human_pos} {per_sec}")
        };
        if let Ok(s) = style {
            bar.set_style(s.progress_chars("=> "));
        }
        bar.set_message(label.to_string());
        self.with(|b| {
            if let Some(old) = b.take() {
                old.finish_and_clear();
            }
            *b = Some(bar);
        });
    }
    fn advance(&self, n: u64) {
        self.with(|b| {
            if let Some(bar) = b {
                bar.inc(n);
            }
        });
    }
    fn finish(&self) {
        self.with(|b| {
            if let Some(bar) = b.take() {
                bar.finish_and_clear();
            }
        });
    }
}
