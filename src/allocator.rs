//! The binary's global allocator: mimalloc (v3, transparent huge pages off), called through its
//! plain entry points whenever the alignment asked for is one it gives anyway.
//!
//! The `mimalloc` crate's `GlobalAlloc` calls `mi_malloc_aligned` for every allocation. mimalloc
//! takes its fast path there only for blocks of at most 1 KiB whose size class page has a free
//! block at hand; otherwise (larger blocks, or a page that just filled up) it over-allocates by
//! the alignment into the next size class and marks the page as holding interior pointers, which
//! also slows its frees, for about ten allocations of every proxied request (measured in
//! docs/benchmarks.md, "Allocator"). Every mimalloc block is a multiple of 8
//! bytes and 8-byte aligned, so an alignment of at most 8 (nearly every Rust type) goes to
//! `mi_malloc`, `mi_zalloc` and `mi_realloc`; larger alignments keep the aligned calls.
#![expect(
    unsafe_code,
    reason = "a GlobalAlloc is unsafe by definition: this module is the crate's only unsafe code"
)]

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// Alignments that every mimalloc block has.
const PLAIN_ALIGN: usize = 8;

pub struct MiMalloc;

// SAFETY: every pointer returned comes from mimalloc for at least `layout.size()` bytes, aligned
// to `layout.align()`: either by `mi_*_aligned`, or because every mimalloc block is 8-byte
// aligned and the alignment is at most 8. `mi_free` and `mi_realloc` take a pointer from any of
// mimalloc's allocation functions.
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: FFI calls with a size and a power-of-two alignment from a valid `Layout`.
        unsafe {
            if layout.align() <= PLAIN_ALIGN {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe {
            if layout.align() <= PLAIN_ALIGN {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (GlobalAlloc's contract).
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout` (GlobalAlloc's contract).
        unsafe {
            if layout.align() <= PLAIN_ALIGN {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_have_the_alignment_asked_for() {
        let a = MiMalloc;
        for size in [1, 7, 8, 24, 40, 100, 1000, 1040, 3000, 9000, 70_000] {
            for align in [1, 2, 4, 8, 16, 64, 128, 4096] {
                let Ok(layout) = Layout::from_size_align(size, align) else {
                    continue;
                };
                // SAFETY: a non-zero size; the block is written within its size and freed once.
                unsafe {
                    let p = a.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    p.write_bytes(0xab, size);
                    let q = a.realloc(p, layout, size * 2);
                    assert!(!q.is_null());
                    assert_eq!(q as usize % align, 0, "realloc size {size} align {align}");
                    assert_eq!(*q.add(size - 1), 0xab);
                    a.dealloc(
                        q,
                        Layout::from_size_align(size * 2, align).unwrap_or(layout),
                    );
                    let z = a.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0);
                    assert!(std::slice::from_raw_parts(z, size).iter().all(|b| *b == 0));
                    a.dealloc(z, layout);
                }
            }
        }
    }
}
