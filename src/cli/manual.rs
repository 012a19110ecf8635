//! `qairt completions SHELL` and `qairt man [COMMAND]`: shell completion scripts and roff
//! manual pages, generated from the same argument definitions as `--help`, so they never
//! disagree with the binary that prints them.

use std::io::Write;

use clap::CommandFactory;

use crate::diag::Diag;

use super::render;

pub fn completions(shell: clap_complete::Shell) -> u8 {
    let mut command = super::Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(shell, &mut command, "qairt", &mut out);
    let _ = out.flush();
    0
}

/// The page of `qairt` itself, or of the command `words` names (`["cache", "gc"]` is the page
/// `qairt-cache-gc`, as git names its pages).
pub fn man_page(words: &[String]) -> u8 {
    let mut command = super::Cli::command();
    // Built, so that the global options (-q, -v, --color, --threads) appear on every page.
    command.build();
    let mut page = command;
    for (depth, word) in words.iter().enumerate() {
        let known: Vec<String> = page.get_subcommands().map(|c| c.get_name().to_string()).collect();
        let Some(sub) = page.find_subcommand(word).cloned() else {
            let parent = ["qairt"].into_iter().chain(words[..depth].iter().map(String::as_str)).collect::<Vec<_>>();
            let mut diag = Diag::error("qairt::cli::man", format!("`{}` has no command `{word}`", parent.join(" ")));
            diag = match crate::diag::closest(word, known.iter().map(String::as_str)) {
                Some(near) => diag.with_help(format!("did you mean `{near}`? (commands: {})", known.join(", "))),
                None if known.is_empty() => diag.with_help("it has no commands of its own"),
                None => diag.with_help(format!("commands: {}", known.join(", "))),
            };
            render::print(&diag);
            return 1;
        };
        page = sub;
    }
    if !words.is_empty() {
        let name = format!("qairt-{}", words.join("-"));
        page = page.name(name).bin_name(format!("qairt {}", words.join(" "))).version(env!("CARGO_PKG_VERSION"));
    }
    let mut out = Vec::new();
    if let Err(e) = clap_mangen::Man::new(page).render(&mut out) {
        render::print(&Diag::error("qairt::cli::man", format!("cannot render the manual page: {e}")));
        return 1;
    }
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(&out);
    let _ = stdout.flush();
    0
}
