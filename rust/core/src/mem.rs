//! Large buffers. Every output and intermediate is written once, front to back, right after
//! allocation, so page faults are a large share of the cost (a 72 MB output is 18k pages):
//! like numpy, ask Linux for transparent huge pages on big allocations.

/// Below this, huge pages cannot pay off.
const HUGE_MIN: usize = 4 << 20;

/// An empty vector with room for `n` elements, backed by huge pages where possible.
pub fn with_capacity<T>(n: usize) -> Vec<T> {
    let v = Vec::with_capacity(n);
    advise_huge(v.as_ptr() as usize, n * std::mem::size_of::<T>());
    v
}

/// `n` zero bytes, backed by huge pages where possible.
pub fn zeroed(n: usize) -> Vec<u8> {
    let v = vec![0u8; n];
    advise_huge(v.as_ptr() as usize, n);
    v
}

#[allow(unused_variables)]
fn advise_huge(addr: usize, len: usize) {
    #[cfg(target_os = "linux")]
    if len >= HUGE_MIN {
        const PAGE: usize = 4096;
        let start = addr.next_multiple_of(PAGE);
        let end = (addr + len) / PAGE * PAGE;
        // SAFETY: the range lies inside one live allocation; MADV_HUGEPAGE is only a hint
        // and leaves the contents unchanged. Failure (THP disabled) is harmless.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}
