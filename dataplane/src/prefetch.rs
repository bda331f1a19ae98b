//! Software prefetch: a hint that a cache line will be read soon, so that a
//! burst can start the cache misses of many packets before it waits on the
//! first one. A hint only: it never faults, never changes a value, and an
//! address that is wrong or already cached costs one instruction.

/// Asks for the cache line holding `*p` to be brought into every cache level.
/// `p` may dangle or be null: nothing is dereferenced.
#[inline(always)]
pub fn read<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint that cannot fault or read anything
    // observable, whatever the address; SSE is part of the x86_64 baseline.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// [`read`] for every cache line of `*r` (a value larger than one line).
#[inline(always)]
pub fn read_all<T>(r: &T) {
    let p = (r as *const T).cast::<u8>();
    let mut off = 0;
    while off < std::mem::size_of::<T>() {
        read(p.wrapping_add(off));
        off += 64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_change_nothing_and_take_any_address() {
        let v: Vec<u64> = (0..1024).collect();
        for i in (0..v.len()).step_by(8) {
            read(&v[i]);
        }
        read_all(&[0u8; 300]);
        // Dangling and null addresses are fine for a hint.
        read(std::ptr::null::<u8>());
        read(usize::MAX as *const u64);
        assert_eq!(v.iter().sum::<u64>(), 1023 * 1024 / 2);
    }
}
