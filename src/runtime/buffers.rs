//! Tensor buffers recycled between the steps of a run, per thread.
//!
//! A run allocates each kernel's output afresh and frees each value after its last reader.
//! Megabyte-sized allocations come straight from the kernel (`mmap`), so every step of a
//! ResNet-50 paid for page faults and for the kernel zeroing fresh pages it then overwrote:
//! about a tenth of a `cpu` simulate (perf, 1 thread; glibc's own tunables that keep freed
//! memory, tried by hand, took 7 % off its wall time). The executors hand the buffers of
//! dead values back here ([`recycle`]), and the hot kernels take their outputs and scratch
//! space from here ([`take`], [`take_overwritten`]), so the same few warm buffers serve step
//! after step and sample after sample.
//!
//! Only buffers of [`MIN_BYTES`] or more are kept (smaller ones are cheap for the allocator),
//! at most [`MAX_BUFFERS`] and [`MAX_BYTES`] per thread, and a request takes the smallest that
//! fits and is at most twice its size, so a small tensor never pins a large buffer. Reusing
//! memory never changes a value: [`take`] returns an empty vector, and [`take_overwritten`] is
//! only for callers that write every element before they read it. The pools live as long as
//! their threads (the build's worker pool): at most [`MAX_BYTES`] each stays allocated between
//! builds of `qairt watch`.

use std::any::Any;
use std::cell::RefCell;

use crate::ir::{Tensor, TensorData};

/// Smaller buffers are not kept: the allocator serves them from its own free lists.
pub const MIN_BYTES: usize = 64 * 1024;

/// Buffers kept per thread, and their bytes. A step frees its dead inputs and then the next
/// step allocates its output (and a convolution its im2col columns), so a handful of buffers
/// per sample of a group covers a run; beyond either bound the least recently recycled are
/// freed. The bytes bound what recycling adds to the peak memory: ResNet-50's cold build
/// peaked about 100 MiB higher with a bound of 48 buffers alone.
pub const MAX_BUFFERS: usize = 48;
pub const MAX_BYTES: usize = 64 * 1024 * 1024;

thread_local! {
    static POOL: RefCell<Vec<Kept>> = const { RefCell::new(Vec::new()) };
}

/// An empty vector with room for at least `len` elements: a recycled buffer of this type
/// when one fits (its capacity within twice `len`), else a fresh allocation.
pub fn take<T: Copy + 'static>(len: usize) -> Vec<T> {
    let mut buffer = reuse::<T>(len).unwrap_or_default();
    buffer.clear();
    buffer.reserve_exact(len);
    buffer
}

/// A vector of `len` elements whose values are unspecified (left from an earlier use, or
/// `fill` where it had to grow): for a caller that writes every element before reading any,
/// which then skips the pass that zeroing fresh memory would be.
pub fn take_overwritten<T: Copy + 'static>(len: usize, fill: T) -> Vec<T> {
    let mut buffer = reuse::<T>(len).unwrap_or_default();
    buffer.truncate(len);
    buffer.resize(len, fill);
    buffer
}

/// Keeps `buffer` for a later [`take`] on this thread, if it is large enough to be worth it.
pub fn give<T: Copy + 'static>(buffer: Vec<T>) {
    let bytes = buffer.capacity() * std::mem::size_of::<T>();
    if !(MIN_BYTES..=MAX_BYTES).contains(&bytes) {
        return;
    }
    POOL.with_borrow_mut(|pool| {
        pool.push(Kept { bytes, buffer: Box::new(buffer) });
        let mut total: usize = pool.iter().map(|k| k.bytes).sum();
        while pool.len() > MAX_BUFFERS || total > MAX_BYTES {
            total -= pool.remove(0).bytes;
        }
    });
}

/// A kept buffer (a `Vec<T>` of a pooled element type) and its capacity in bytes.
struct Kept {
    bytes: usize,
    buffer: Box<dyn Any>,
}

/// Keeps the buffer of a value no one reads any more ([`give`]); other element types than
/// the pooled float ones are simply dropped.
pub fn recycle(tensor: Tensor) {
    match tensor.data {
        TensorData::F32(values) => give(values),
        TensorData::F16(values) => give(values),
        TensorData::BF16(values) => give(values),
        _ => {}
    }
}

/// The smallest kept buffer of element type `T` with room for `len` elements and no more
/// than twice that, taken out of the pool.
fn reuse<T: Copy + 'static>(len: usize) -> Option<Vec<T>> {
    if len * std::mem::size_of::<T>() < MIN_BYTES / 2 {
        return None;
    }
    POOL.with_borrow_mut(|pool| {
        let fits = |k: &Kept| {
            k.buffer.downcast_ref::<Vec<T>>().map(Vec::capacity).filter(|&c| c >= len && c <= len.saturating_mul(2))
        };
        let (at, _) = pool.iter().enumerate().filter_map(|(i, k)| fits(k).map(|c| (i, c))).min_by_key(|&(_, c)| c)?;
        pool.remove(at).buffer.downcast::<Vec<T>>().ok().map(|b| *b)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BIG: usize = MIN_BYTES; // elements: as f32, four times MIN_BYTES bytes

    #[test]
    fn a_given_buffer_comes_back_empty_with_its_capacity() {
        let buffer = vec![7.0f32; BIG];
        let address = buffer.as_ptr();
        give(buffer);
        let again: Vec<f32> = take(BIG - 10);
        assert!(again.is_empty());
        assert_eq!(again.as_ptr(), address, "the kept buffer is reused");
        assert!(again.capacity() >= BIG - 10);
    }

    #[test]
    fn a_request_never_takes_a_buffer_more_than_twice_its_size_or_of_another_type() {
        give(vec![1.0f32; 4 * BIG]);
        let small: Vec<f32> = take(BIG);
        assert!(small.capacity() < 4 * BIG, "a small tensor must not pin a large buffer");
        let halves: Vec<half::f16> = take(4 * BIG);
        assert!(halves.capacity() >= 4 * BIG);
        let large: Vec<f32> = take(3 * BIG);
        assert_eq!(large.capacity(), 4 * BIG, "the kept f32 buffer serves a request it fits");
    }

    #[test]
    fn overwritten_buffers_have_the_asked_length_and_grow_with_the_fill() {
        give(vec![3.0f32; BIG]);
        let reused = take_overwritten(BIG / 2 + 1, 0.0f32);
        assert_eq!(reused.len(), BIG / 2 + 1);
        give(reused);
        let grown = take_overwritten(BIG, 0.0f32);
        assert_eq!(grown.len(), BIG);
        assert!(grown[BIG / 2 + 1..].iter().all(|&v| v == 0.0), "elements beyond the old length are the fill");
    }

    #[test]
    fn small_buffers_are_not_kept_and_the_pool_is_bounded_in_count_and_bytes() {
        give(vec![0.0f32; 16]);
        for _ in 0..MAX_BUFFERS + 5 {
            give(vec![0.0f32; BIG]);
        }
        let count = || POOL.with_borrow(|pool| pool.len());
        let bytes = || POOL.with_borrow(|pool| pool.iter().map(|k| k.bytes).sum::<usize>());
        assert_eq!(count(), MAX_BUFFERS);
        let large = MAX_BYTES / 4 / 3 + 1; // f32 elements: three of these exceed MAX_BYTES
        for _ in 0..3 {
            give(vec![0.0f32; large]);
        }
        assert!(bytes() <= MAX_BYTES, "{} bytes kept", bytes());
        assert_eq!(count(), 2, "the oldest are freed first, down to the two last large ones");
        give(vec![0.0f32; MAX_BYTES / 4 + 1]);
        assert_eq!(count(), 2, "a buffer larger than the whole bound is not kept");
        POOL.with_borrow_mut(Vec::clear);
    }
}
