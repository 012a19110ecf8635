//! Argument parsing, human and JSON output, diagnostics rendering, progress bars.
//!
//! **Invariant:** the only module that prints. Exit status: 0 success, 2 the build finished
//! but a verification threshold was not met (or `encodings compare` found differences), 1 any
//! other error.

mod commands;
mod encodings;
mod files;
mod init;
mod manual;
mod output;
mod progress;
pub mod render;
pub use commands::find_project;
pub use output::{stage_json, verify_json};
mod style;
mod suggest;
mod sweep;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgAction, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "qairt",
    version,
    about = "A trained network to a verified, quantized, deployable artifact, as an incremental build"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Threads that run samples side by side (default: one per core). Results are
    /// bit-identical whatever the count.
    #[arg(long, global = true, env = "QAIRT_THREADS", value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// Print only problems and missed thresholds: no stage lines, no progress bars
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Print more: the action key of every stage (compare them across machines or runs)
    #[arg(short, long, global = true, action = ArgAction::Count)]
    verbose: u8,
    /// Colour the output: auto (a terminal, unless NO_COLOR is set), always or never
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value = "auto")]
    color: style::ColorWhen,
}

/// The help of every `PATH` argument that names a project.
const PROJECT_PATH: &str = "The project directory or its qairt.toml (default: the nearest qairt.toml upwards)";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MessageFormat {
    Human,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run every stage that is out of date and materialize out/<target>/
    Build {
        #[arg(help = PROJECT_PATH)]
        path: Option<PathBuf>,
        /// Build only this target (repeatable)
        #[arg(long = "target", value_name = "NAME")]
        targets: Vec<String>,
        /// human: a table on stdout; json: one JSON message per line (docs/json.md)
        #[arg(long, value_enum, default_value = "human")]
        message_format: MessageFormat,
        /// How per-layer rows are produced: oneshot, cumulative or layerwise (replaces [verify] mode)
        #[arg(long, value_name = "MODE", value_parser = parse_mode)]
        mode: Option<crate::verify::Mode>,
        /// A per-layer metric, the debugger's name[,key,value]... syntax, optionally with
        /// threshold,<value> (repeatable; replaces [verify] metrics)
        #[arg(long = "metric", value_name = "SPEC", value_parser = parse_metric)]
        metrics: Vec<crate::verify::MetricSpec>,
        /// Dump every intermediate tensor of the simulated run, per verify sample, to
        /// out/<target>/debug/Result_<N>/ as float32, like qnn-net-run --debug (as [simulate] debug = true)
        #[arg(long)]
        debug: bool,
        /// Profile each step of the simulated run (median time, bytes moved) into
        /// out/<target>/profile.csv, profile.json and the report (as [simulate] profile = true)
        #[arg(long)]
        profile: bool,
    },
    /// Build, then rebuild on every change to any input until interrupted
    Watch {
        #[arg(help = PROJECT_PATH)]
        path: Option<PathBuf>,
        /// Build only this target (repeatable)
        #[arg(long = "target", value_name = "NAME")]
        targets: Vec<String>,
        /// human: a table per build; json: one JSON message per line, a `finished` per build
        #[arg(long, value_enum, default_value = "human")]
        message_format: MessageFormat,
    },
    /// Say for each stage whether the next build would reuse it, and if not, what changed
    Explain {
        #[arg(help = PROJECT_PATH)]
        path: Option<PathBuf>,
        /// Explain only this target
        #[arg(long = "target", value_name = "NAME")]
        target: Option<String>,
        /// Explain only this stage (parse, optimize, calibrate, quantize, compile, simulate, verify)
        #[arg(long, value_name = "STAGE")]
        stage: Option<String>,
        /// human: one line per stage; json: one `explain` message per stage (docs/json.md)
        #[arg(long, value_enum, default_value = "human")]
        message_format: MessageFormat,
    },
    /// Remove out/ (and with --cache, the cache too)
    Clean {
        #[arg(help = PROJECT_PATH)]
        path: Option<PathBuf>,
        /// Remove the build cache too (only a directory qairt made and tagged)
        #[arg(long)]
        cache: bool,
    },
    /// Inspect or maintain the build cache
    Cache {
        #[command(subcommand)]
        action: CacheAction,
    },
    /// Build a grid of quantization configurations of one target and rank them
    Sweep(Box<sweep::SweepArgs>),
    /// Rank layers by how much higher precision helps; write overrides for the fewest layers
    /// that meet the thresholds, and measure them with a build
    Suggest(Box<suggest::SuggestArgs>),
    /// Convert, validate or compare AIMET encodings files
    Encodings {
        #[command(subcommand)]
        action: encodings::EncodingsAction,
    },
    /// Write a qairt.toml for an ONNX model: its inputs and shapes, input-list templates, a
    /// float and a quantized target
    Init(init::InitArgs),
    /// Print a shell's completion script (e.g. `qairt completions bash > /etc/bash_completion.d/qairt`)
    Completions {
        /// The shell to complete in
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page of qairt or of one command, as roff (`qairt man build | man -l -`)
    Man {
        /// A command (e.g. `build`, `cache gc`); none for the page of qairt itself
        command: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
enum CacheAction {
    /// Size and entry counts
    Stats {
        #[arg(help = PROJECT_PATH)]
        path: Option<PathBuf>,
        /// human: a few lines; json: one `cache_stats` message (docs/json.md)
        #[arg(long, value_enum, default_value = "human")]
        message_format: MessageFormat,
    },
    /// Remove the least recently used objects until the cache fits in --max-size
    Gc {
        #[arg(help = PROJECT_PATH)]
        path: Option<PathBuf>,
        /// The size to shrink the cache to: bytes, or with a unit, 500M, 1G, 1.5GiB (K, M, G,
        /// T are powers of 1024)
        #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = parse_size)]
        max_size: u64,
    },
    /// Re-hash every entry and report (and remove) corrupt ones
    Verify {
        #[arg(help = PROJECT_PATH)]
        path: Option<PathBuf>,
    },
    /// Upload every entry of the local cache to the remote cache (QAIRT_REMOTE_CACHE or
    /// [cache] remote)
    Push {
        #[arg(help = PROJECT_PATH)]
        path: Option<PathBuf>,
    },
    /// Download from the remote cache everything a build of the project would reuse, without
    /// running a stage (a later build then needs no network)
    Pull {
        #[arg(help = PROJECT_PATH)]
        path: Option<PathBuf>,
        /// Only this target (repeatable); default: every target of qairt.toml
        #[arg(long = "target", value_name = "NAME")]
        targets: Vec<String>,
    },
}

/// A size as people write it: `1G`, `500 MiB`, `1.5gb`, `1073741824`. Units are binary
/// (cargo's and `du`'s convention for disk sizes): K = 1024, M = 1024², G = 1024³.
fn parse_size(text: &str) -> Result<u64, String> {
    parse_size::Config::new()
        .with_binary()
        .parse_size(text)
        .map_err(|e| format!("`{text}` is not a size ({e}); write bytes or a number with a unit: 500M, 1G, 1.5GiB"))
}

fn parse_mode(text: &str) -> Result<crate::verify::Mode, String> {
    crate::verify::Mode::parse(text)
        .ok_or_else(|| format!("`{text}` is not a mode (allowed: oneshot, cumulative, layerwise)"))
}

fn parse_metric(text: &str) -> Result<crate::verify::MetricSpec, String> {
    let spec = crate::verify::MetricSpec::parse(text).map_err(|e| {
        format!("{e} (a metric is name[,key,value]..., e.g. sqnr,threshold,30 or rtolatol,rtolmargin,0.02)")
    })?;
    if matches!(spec.verifier, crate::verify::verifiers::Verifier::MeanIou { .. }) {
        return Err("MeanIOU compares detection outputs (boxes and classes), not one tensor per layer".into());
    }
    Ok(spec)
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    style::init(cli.color, cli.quiet, cli.verbose);
    if let Some(threads) = cli.threads {
        // Only fails when a pool already exists, which nothing before this line creates.
        let _ = rayon::ThreadPoolBuilder::new().num_threads(usize::from(threads)).build_global();
    }
    // With JSON messages, diagnostics are messages too, and every exit ends with `finished`.
    let json = cli.command.message_format() == Some(MessageFormat::Json);
    render::also_as_json(json);
    let started = std::time::Instant::now();
    let code = match cli.command {
        Command::Build { path, targets, message_format, mode, metrics, debug: dumps, profile } => {
            let mut columns: Vec<&str> = metrics.iter().map(|m| m.column()).collect();
            columns.sort_unstable();
            if let Some(twice) = columns.windows(2).find(|w| w[0] == w[1]) {
                let diag =
                    crate::diag::Diag::error("qairt::cli::metric", format!("--metric {} is given twice", twice[0]))
                        .with_help("give each verifier once (its parameters and threshold in one spec)");
                render::print(&diag);
                return ExitCode::from(1);
            }
            let debug = crate::engine::DebugOverride {
                mode,
                metrics: (!metrics.is_empty()).then_some(metrics),
                precision: None,
            };
            let simulate = crate::engine::SimulateOverride { debug: dumps, profile };
            commands::build(path, &targets, message_format, debug, simulate)
        }
        Command::Watch { path, targets, message_format } => watch::watch(path, &targets, message_format),
        Command::Explain { path, target, stage, message_format } => {
            commands::explain(path, target, stage, message_format)
        }
        Command::Clean { path, cache } => commands::clean(path, cache),
        Command::Cache { action } => match action {
            CacheAction::Stats { path, message_format } => commands::cache_stats(path, message_format),
            CacheAction::Gc { path, max_size } => commands::cache_gc(path, max_size),
            CacheAction::Verify { path } => commands::cache_verify(path),
            CacheAction::Push { path } => commands::cache_push(path),
            CacheAction::Pull { path, targets } => commands::cache_pull(path, &targets),
        },
        Command::Sweep(args) => sweep::run(*args),
        Command::Suggest(args) => suggest::run(*args),
        Command::Encodings { action } => encodings::run(action),
        Command::Init(args) => init::run(args),
        Command::Completions { shell } => manual::completions(shell),
        Command::Man { command } => manual::man_page(&command),
    };
    if json && !output::finished_written() {
        output::print_json(serde_json::json!({
            "event": "finished", "ok": code == 0, "exit_code": code, "built": 0, "cached": 0,
            "ms": output::round(started.elapsed().as_secs_f64() * 1000.0, 3),
        }));
    }
    ExitCode::from(code)
}

impl Command {
    /// The `--message-format` of the commands that have one.
    fn message_format(&self) -> Option<MessageFormat> {
        match self {
            Command::Build { message_format, .. }
            | Command::Watch { message_format, .. }
            | Command::Explain { message_format, .. }
            | Command::Cache { action: CacheAction::Stats { message_format, .. } } => Some(*message_format),
            Command::Sweep(args) => Some(args.message_format),
            Command::Suggest(args) => Some(args.message_format),
            Command::Encodings { action } => action.message_format(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every argument of every command says what it is for in `--help`, the manual pages and
    /// the completions (clap's own `--help`/`--version` aside).
    #[test]
    fn every_argument_has_a_description() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in command.get_subcommands() {
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {} (the command)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut command = super::Cli::command();
        command.build();
        let mut missing = Vec::new();
        walk(&command, "qairt", &mut missing);
        assert!(missing.is_empty(), "arguments without a description: {missing:#?}");
    }

    #[test]
    fn sizes_read_binary_units() {
        assert_eq!(super::parse_size("1G"), Ok(1 << 30));
        assert_eq!(super::parse_size("500M"), Ok(500 << 20));
        assert_eq!(super::parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(super::parse_size("4096"), Ok(4096));
        assert!(super::parse_size("12X").unwrap_err().contains("not a size"));
    }
}
