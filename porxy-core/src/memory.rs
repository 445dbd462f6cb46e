//! Giving freed memory back to the system. glibc's malloc keeps what a program frees in its
//! arenas (one per reactor thread, in practice) for the next allocations, and returns to the
//! kernel only the top of the main heap on its own: after a burst the process stays as large
//! as its peak. `malloc_trim` hands every arena's free pages back (it releases the whole pages
//! inside free chunks too, since glibc 2.8). Elsewhere (musl, other systems) this does nothing.

/// Gives the allocator's free pages back to the system, where it keeps them.
#[allow(unsafe_code)]
pub(crate) fn release_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists, under its locks; it takes
    // no pointer of ours.
    unsafe {
        libc::malloc_trim(0);
    }
}
