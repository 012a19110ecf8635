//! How much to print and whether to colour it, set once from `-q`/`-v` and `--color`, as
//! cargo does: `auto` colours a terminal unless `NO_COLOR` is set (`CLICOLOR_FORCE` forces
//! colour, `TERM=dumb` turns it off), `always` and `never` decide for every stream. Colour
//! only marks what a person scans for (built, passed, failed, warnings); the words stay, so
//! nothing is lost without it. JSON messages are never coloured.

use std::sync::atomic::{AtomicBool, AtomicI8, Ordering};

use anstyle::{AnsiColor, Style};
use clap::ValueEnum;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorWhen {
    Auto,
    Always,
    Never,
}

static STDOUT_COLOR: AtomicBool = AtomicBool::new(false);
/// -1 quiet, 0 normal, 1 and more verbose.
static VERBOSITY: AtomicI8 = AtomicI8::new(0);

/// Decides colour for stdout and stderr (and diagnostics) and records the verbosity.
pub fn init(when: ColorWhen, quiet: bool, verbose: u8) {
    let decide = |auto: anstream::ColorChoice| match when {
        ColorWhen::Always => true,
        ColorWhen::Never => false,
        ColorWhen::Auto => auto != anstream::ColorChoice::Never,
    };
    let stdout = decide(anstream::AutoStream::choice(&std::io::stdout()));
    let stderr = decide(anstream::AutoStream::choice(&std::io::stderr()));
    STDOUT_COLOR.store(stdout, Ordering::Relaxed);
    let level = if quiet { -1 } else { verbose.min(i8::MAX as u8) as i8 };
    VERBOSITY.store(level, Ordering::Relaxed);
    // miette renders diagnostics (stderr) with its own colours: on or off with ours.
    let _ = miette::set_hook(Box::new(move |_| Box::new(miette::MietteHandlerOpts::new().color(stderr).build())));
}

pub fn quiet() -> bool {
    VERBOSITY.load(Ordering::Relaxed) < 0
}

pub fn verbose() -> bool {
    VERBOSITY.load(Ordering::Relaxed) > 0
}

/// The roles text on stdout can have; each has one style, so the output reads the same
/// everywhere.
#[derive(Clone, Copy, Debug)]
pub enum Role {
    /// A stage that ran, a target's name: cargo's "Compiling".
    Built,
    /// A result that passed.
    Good,
    /// A threshold missed, a build that failed.
    Bad,
    /// Something to look at that is not a failure (the first failing layer of a passing
    /// build, thresholds of a sweep row).
    Notice,
    /// Secondary detail: cached stages, timings.
    Dim,
    /// Headings: a target's name.
    Heading,
}

fn style(role: Role) -> Style {
    match role {
        Role::Built => AnsiColor::Green.on_default().bold(),
        Role::Good => AnsiColor::Green.on_default(),
        Role::Bad => AnsiColor::Red.on_default().bold(),
        Role::Notice => AnsiColor::Yellow.on_default(),
        Role::Dim => Style::new().dimmed(),
        Role::Heading => Style::new().bold(),
    }
}

/// `text` in the style of `role` when stdout is coloured, else as it is.
pub fn paint(role: Role, text: &str) -> String {
    paint_if(STDOUT_COLOR.load(Ordering::Relaxed), role, text)
}

fn paint_if(on: bool, role: Role, text: &str) -> String {
    if on {
        let style = style(role);
        format!("{style}{text}{style:#}")
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn painting_wraps_the_text_in_ansi_codes_only_when_colour_is_on() {
        assert_eq!(paint_if(false, Role::Bad, "FAILED"), "FAILED");
        let red = paint_if(true, Role::Bad, "FAILED");
        assert!(red.starts_with("\u{1b}[") && red.contains("FAILED") && red.ends_with("\u{1b}[0m"), "{red:?}");
    }
}
