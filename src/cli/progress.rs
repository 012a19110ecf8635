//! Progress bars for long stages, drawn on stderr only when it is a terminal.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

use crate::engine::Progress;

/// Samples a second and the time left, as a long simulate of a large model needs.
const TEMPLATE: &str = "{prefix:>20} [{bar:30}] {pos}/{len} {per_sec} {elapsed} (ETA {eta})";

pub struct Bars {
    bar: Mutex<Option<ProgressBar>>,
}

/// Bars when stderr is a terminal (and not `-q`), `None` (no output at all) otherwise.
pub fn for_stderr() -> Option<Box<dyn Progress>> {
    (std::io::stderr().is_terminal() && !super::style::quiet())
        .then(|| Box::new(Bars { bar: Mutex::new(None) }) as Box<dyn Progress>)
}

impl Progress for Bars {
    fn start(&self, label: &str, total: u64) {
        let bar = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template(TEMPLATE) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(label.to_string());
        *self.bar.lock().unwrap_or_else(|p| p.into_inner()) = Some(bar);
    }

    fn advance(&self) {
        if let Some(bar) = &*self.bar.lock().unwrap_or_else(|p| p.into_inner()) {
            bar.inc(1);
        }
    }

    fn finish(&self) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).take() {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_bar_template_parses() {
        assert!(indicatif::ProgressStyle::with_template(super::TEMPLATE).is_ok());
    }
}
