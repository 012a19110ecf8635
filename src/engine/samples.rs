//! Per-sample work side by side: every sample of a calibration or verify list is independent,
//! so the stages that run the model over a list hand each sample to rayon's pool (sized by
//! `--threads` / `QAIRT_THREADS`, else one thread per core).
//!
//! Results are consumed **in sample order**, whatever thread computed them and whenever it
//! finished, so what a stage folds them into (appended tensors, merged statistics) is
//! bit-identical for every thread count. Samples go to the pool a group at a time (a few per
//! thread) and each group's results are consumed before the next group starts, so no more than
//! one group's per-sample results are held at once.

use rayon::prelude::*;

use super::db::{Failed, Progress};

/// Samples per thread in one group: enough to even out samples of unequal cost.
const SAMPLES_PER_THREAD: usize = 4;

/// Runs `work` on every sample on the pool and hands the results to `consume` in sample order,
/// advancing `progress` once per sample. The first failure in sample order is returned (its
/// group is finished first; later groups do not start).
pub(super) fn run_in_order<S: Sync, T: Send>(
    samples: &[S],
    progress: &dyn Progress,
    work: impl Fn(&S) -> Result<T, Failed> + Sync,
    consume: impl FnMut(T) -> Result<(), Failed>,
) -> Result<(), Failed> {
    run_chunks(samples, 1, progress, |one| one.iter().map(&work).collect(), consume)
}

/// Samples a task runs together, step by step ([`crate::runtime::exec::Prepared::run_group`]),
/// so that each layer's weights are read from memory once for all of them: enough to make the
/// later reads cache hits, few enough that their activations stay small.
pub(super) const GROUP: usize = SAMPLES_PER_THREAD;

/// [`run_in_order`] for work that takes `size` consecutive samples at a time (at least one;
/// fewer at the end) and returns one result per sample, in order; groups run side by side on
/// the pool.
pub(super) fn run_in_groups<S: Sync, T: Send>(
    samples: &[S],
    size: usize,
    progress: &dyn Progress,
    work: impl Fn(&[S]) -> Vec<Result<T, Failed>> + Sync,
    consume: impl FnMut(T) -> Result<(), Failed>,
) -> Result<(), Failed> {
    run_chunks(samples, size.max(1), progress, work, consume)
}

/// Both of the above: `work` on chunks of `size` consecutive samples side by side, a round of
/// at least [`SAMPLES_PER_THREAD`] samples per thread at a time, results consumed in order.
fn run_chunks<S: Sync, T: Send>(
    samples: &[S],
    size: usize,
    progress: &dyn Progress,
    work: impl Fn(&[S]) -> Vec<Result<T, Failed>> + Sync,
    mut consume: impl FnMut(T) -> Result<(), Failed>,
) -> Result<(), Failed> {
    let round = size.max(SAMPLES_PER_THREAD) * rayon::current_num_threads().max(1);
    for samples in samples.chunks(round) {
        let results: Vec<Vec<Result<T, Failed>>> = samples
            .par_chunks(size)
            .map(|chunk| {
                let results = work(chunk);
                for _ in chunk {
                    progress.advance();
                }
                results
            })
            .collect();
        for result in results.into_iter().flatten() {
            consume(result?)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Diag;

    struct Count(std::sync::atomic::AtomicU64);

    impl Progress for Count {
        fn start(&self, _: &str, _: u64) {}
        fn advance(&self) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        fn finish(&self) {}
    }

    fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(f)
    }

    #[test]
    fn results_arrive_in_sample_order_for_every_thread_count() {
        // Later samples finish first (earlier ones sleep longer), yet arrive in order.
        let samples: Vec<u64> = (0..37).collect();
        for threads in [1, 2, 3, 8] {
            let progress = Count(Default::default());
            let mut seen = Vec::new();
            in_pool(threads, || {
                run_in_order(
                    &samples,
                    &progress,
                    |&s| {
                        std::thread::sleep(std::time::Duration::from_micros((40 - s) * 20));
                        Ok(s * s)
                    },
                    |r| {
                        seen.push(r);
                        Ok(())
                    },
                )
            })
            .unwrap();
            assert_eq!(seen, samples.iter().map(|s| s * s).collect::<Vec<_>>(), "{threads} threads");
            assert_eq!(progress.0.into_inner(), 37);
        }
    }

    #[test]
    fn the_first_failure_in_sample_order_is_returned() {
        let samples: Vec<u64> = (0..20).collect();
        let progress = Count(Default::default());
        let mut consumed = Vec::new();
        let failed = in_pool(4, || {
            run_in_order(
                &samples,
                &progress,
                |&s| {
                    if s == 5 || s == 6 { Err(Failed(vec![Diag::error("test", format!("sample {s}"))])) } else { Ok(s) }
                },
                |r| {
                    consumed.push(r);
                    Ok(())
                },
            )
        })
        .unwrap_err();
        assert!(format!("{:?}", failed.0[0]).contains("sample 5"), "{failed:?}");
        assert_eq!(consumed, [0, 1, 2, 3, 4]);
    }

    /// Groups of consecutive samples (the last one short), results in sample order whatever
    /// the thread count, every sample counted once, and the first failure in sample order.
    #[test]
    fn groups_are_consecutive_and_results_arrive_in_sample_order() {
        let samples: Vec<u64> = (0..23).collect();
        for threads in [1, 2, 3] {
            let progress = Count(Default::default());
            let mut seen = Vec::new();
            in_pool(threads, || {
                run_in_groups(
                    &samples,
                    GROUP,
                    &progress,
                    |group| {
                        assert!(group.len() == GROUP || group.last() == Some(&22), "{group:?}");
                        assert!(group.windows(2).all(|w| w[1] == w[0] + 1), "{group:?}");
                        group.iter().map(|&s| Ok(s * 3)).collect()
                    },
                    |r| {
                        seen.push(r);
                        Ok(())
                    },
                )
            })
            .unwrap();
            assert_eq!(seen, samples.iter().map(|s| s * 3).collect::<Vec<_>>(), "{threads} threads");
            assert_eq!(progress.0.into_inner(), 23);
        }
        let progress = Count(Default::default());
        let mut consumed = Vec::new();
        let failed = in_pool(2, || {
            run_in_groups(
                &samples,
                GROUP,
                &progress,
                |group| {
                    let fail = |s: u64| Err(Failed(vec![Diag::error("test", format!("sample {s}"))]));
                    group.iter().map(|&s| if s == 9 || s == 13 { fail(s) } else { Ok(s) }).collect()
                },
                |r| {
                    consumed.push(r);
                    Ok(())
                },
            )
        })
        .unwrap_err();
        assert!(format!("{:?}", failed.0[0]).contains("sample 9"), "{failed:?}");
        assert_eq!(consumed, (0..9).collect::<Vec<_>>());
    }
}
