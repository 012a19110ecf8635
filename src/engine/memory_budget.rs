//! What the machine can give a run: the memory the kernel reports available, compared with a
//! compiled program's activation arena and the results its run holds (or, for a float run of
//! the graph, the interpreter's peak of live tensors) before any sample runs, so a model too
//! big at its input size (a huge `define_symbols` value) is a diagnostic saying how much it
//! needs, not an abort in the allocator or the OOM killer. Runs that take a group of samples
//! per thread take as many as fit (at least one).

use crate::compile::program::Program;
use crate::diag::Diag;

use super::db::Failed;

/// Refuses `program` when what one run of it holds (its arena and the step results it keeps
/// until their last reader), once per sample run side by side, exceeds the memory available
/// now (nothing is checked where that is unknown).
pub fn check_arena(program: &Program) -> Result<(), Failed> {
    group_that_fits(program_run_bytes(program), 1).map(|_| ())
}

fn program_run_bytes(program: &Program) -> u64 {
    program.arena_bytes.saturating_add(crate::runtime::exec::peak_live_bytes(program))
}

/// How many samples (at most `most`) a pool thread runs together in float runs of `graph`
/// (calibration, the reference): as many as the memory available now holds side by side on
/// every thread. Refuses the runs when one sample per thread does not fit.
pub fn float_run_group(graph: &crate::ir::Graph, most: usize) -> Result<usize, Failed> {
    group_that_fits(crate::runtime::interpret::peak_bytes(graph), most)
}

/// How many samples (at most `most`) a pool thread runs together through `program`
/// ([`Prepared::run_group`](crate::runtime::exec::Prepared::run_group)); see
/// [`float_run_group`].
pub fn program_group(program: &Program, most: usize) -> Result<usize, Failed> {
    group_that_fits(program_run_bytes(program), most)
}

/// Refuses a run whose samples each go through `program` and a golden float run of `graph`
/// that keeps every float32 value it computes (`SampleValues::float_run`): those values, and
/// at most the interpreter's peak of the others, besides the program's run.
pub fn check_program_and_golden_run(program: &Program, graph: &crate::ir::Graph) -> Result<(), Failed> {
    program_and_golden_group(program, graph, 1).map(|_| ())
}

/// How many samples (at most `most`, and at most [`golden_group`]'s) a pool thread runs
/// together when each goes through `program` and a golden float run of `graph` keeping its
/// values; see [`check_program_and_golden_run`] and [`float_run_group`].
pub fn program_and_golden_group(program: &Program, graph: &crate::ir::Graph, most: usize) -> Result<usize, Failed> {
    let per_sample = program_run_bytes(program).saturating_add(golden_run_bytes(graph));
    group_that_fits(per_sample, golden_group(graph, most))
}

/// The golden float values a pool thread may hold at once for a group of samples, whose
/// program runs go step by step together: enough for a few samples of MobileNetV2-size
/// models, two of ResNet-50 at 224×224, one of anything larger.
const GOLDEN_GROUP_BYTES: u64 = 256 << 20;

/// How many samples (at most `most`, at least one) a pool thread runs together when each
/// keeps the float values of its golden run of `graph` until its program run ends.
pub fn golden_group(graph: &crate::ir::Graph, most: usize) -> usize {
    let per_sample = crate::runtime::interpret::float_values_bytes(graph).max(1);
    usize::try_from(GOLDEN_GROUP_BYTES / per_sample).unwrap_or(usize::MAX).clamp(1, most.max(1))
}

fn golden_run_bytes(graph: &crate::ir::Graph) -> u64 {
    use crate::runtime::interpret::{float_values_bytes, peak_bytes};
    float_values_bytes(graph).saturating_add(peak_bytes(graph))
}

/// The most samples (up to `most`, at least one) each pool thread can run at once with
/// `per_sample` bytes each, in the memory available now; refuses when one per thread does not
/// fit. A group's size never changes results (each sample gets the bits of its run alone), so
/// a smaller group on a busier machine only costs time.
fn group_that_fits(per_sample: u64, most: usize) -> Result<usize, Failed> {
    let most = most.max(1);
    let Some(available) = available_bytes() else { return Ok(most) };
    let threads = rayon::current_num_threads().max(1);
    match largest_group(per_sample, threads, most, available) {
        Some(group) => Ok(group),
        None => arena_problem(per_sample, threads, available).map_or(Ok(1), |diag| Err(Failed(vec![diag]))),
    }
}

/// The largest group in `1..=most` whose samples fit in `available` bytes, `per_sample` bytes
/// each, on every one of `threads` threads at once.
fn largest_group(per_sample: u64, threads: usize, most: usize, available: u64) -> Option<usize> {
    let fits = |group: usize| per_sample.saturating_mul(threads as u64).saturating_mul(group as u64) <= available;
    (1..=most.max(1)).rev().find(|&group| fits(group))
}

/// The diagnostic for runs of `per_sample` bytes each, `side_by_side` of them at once (each
/// sample in an arena of its own), with `available` bytes free, if they do not fit.
fn arena_problem(per_sample: u64, side_by_side: usize, available: u64) -> Option<Diag> {
    let needed = per_sample.saturating_mul(side_by_side as u64);
    (needed > available).then(|| {
        Diag::error(
            "qairt::simulate::memory",
            format!(
                "this model needs {} of activation memory at this input size ({} per sample, {side_by_side} samples \
                 side by side), more than the {} available",
                human(needed),
                human(per_sample),
                human(available)
            ),
        )
        .with_help(
            "lower the input size (`input_dims`, `define_symbols` in qairt.toml), run fewer samples side by side \
             (--threads), or free memory",
        )
    })
}

/// Bytes the operating system reports available for new allocations (`MemAvailable` of
/// `/proc/meminfo`); `None` where that is not known (not Linux).
fn available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_available(&text)
}

fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// `bytes` for people: `3.2 GB`, `512 MB`.
fn human(bytes: u64) -> String {
    let gb = bytes as f64 / 1e9;
    if gb >= 1.0 { format!("{gb:.1} GB") } else { format!("{:.0} MB", bytes as f64 / 1e6) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_available_is_read_in_bytes() {
        let meminfo = "MemTotal:       24000000 kB\nMemFree:         1000 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(parse_mem_available(meminfo), Some(20_000_000 * 1024));
        assert_eq!(parse_mem_available("MemTotal: 1 kB\n"), None);
        assert_eq!(human(3_200_000_000), "3.2 GB");
        assert_eq!(human(512_000_000), "512 MB");
    }

    /// A graph whose input and Relu output are `[1, elements]` float32 each.
    fn relu_of(elements: usize) -> crate::ir::Graph {
        let mut b = crate::ir::test_graph::GraphBuilder::default();
        let x = b.input("x", &[1, elements]);
        let r = b.node("relu", crate::ir::Op::Unary(crate::ops::Unary::Relu), &[x], "r", &[1, elements]);
        b.output(r);
        b.graph
    }

    #[test]
    fn golden_groups_shrink_with_the_float_values_a_sample_keeps() {
        // 8 bytes per element per sample: 8 KB, 80 MB, 320 MB against a 256 MiB budget.
        assert_eq!(golden_group(&relu_of(1000), 4), 4);
        assert_eq!(golden_group(&relu_of(1000), 2), 2);
        assert_eq!(golden_group(&relu_of(10_000_000), 4), 3);
        assert_eq!(golden_group(&relu_of(40_000_000), 4), 1);
        assert_eq!(golden_group(&relu_of(1000), 0), 1);
    }

    #[test]
    fn a_group_shrinks_to_what_the_memory_holds() {
        // 1 GB per sample on 2 threads: 4 per thread need 8 GB.
        assert_eq!(largest_group(1 << 30, 2, 4, 9 << 30), Some(4));
        assert_eq!(largest_group(1 << 30, 2, 4, 7 << 30), Some(3));
        assert_eq!(largest_group(1 << 30, 2, 4, 2 << 30), Some(1));
        assert_eq!(largest_group(1 << 30, 2, 4, (2 << 30) - 1), None);
        assert_eq!(largest_group(u64::MAX, 8, 4, u64::MAX - 1), None, "no overflow");
        assert_eq!(largest_group(10, 1, 0, 100), Some(1));
    }

    #[test]
    fn an_arena_is_refused_only_when_all_threads_together_do_not_fit() {
        assert!(arena_problem(1 << 30, 2, 3 << 30).is_none());
        let diag = arena_problem(2 << 30, 2, 3 << 30).expect("4.3 GB do not fit in 3.2 GB");
        assert_eq!(diag.code, "qairt::simulate::memory");
        assert!(diag.message.starts_with("this model needs 4.3 GB of activation memory"), "{}", diag.message);
        assert!(arena_problem(u64::MAX, 8, u64::MAX - 1).is_some(), "no overflow");
    }
}
