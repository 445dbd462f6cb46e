//! A kernel pipe and the system calls on it (`pipe2`, `fcntl`, `splice`): the only unsafe code
//! in porxy-core.
//!
//! Each `unsafe` block is one system call on descriptors this module owns or borrows, with a
//! `SAFETY` note. The kernel cannot be asked how many bytes a pipe holds, so [`KernelPipe`] counts
//! them itself: every byte enters or leaves through one of its methods, which keep the count.

#![allow(unsafe_code)]

use std::fs::File;
#[cfg(test)]
use std::io::Write;
use std::io::{self, Read};
use std::os::fd::BorrowedFd;
use std::sync::Arc;

/// The smallest pipe asked of the kernel: four pages.
const MIN_KERNEL_SIZE: usize = 16 * 1024;

/// `got`, the size the kernel gave a pipe, when it is worth splicing through.
fn usable_size(got: usize) -> io::Result<usize> {
    if got < MIN_KERNEL_SIZE {
        return Err(io::Error::other(format!(
            "the kernel gave a pipe of {got} bytes, less than {MIN_KERNEL_SIZE} (the user's \
             pipes are over /proc/sys/fs/pipe-user-pages-soft?)"
        )));
    }
    Ok(got)
}

/// One kernel pipe, the "buffer" of a direction on the splice path: bytes spliced in from a
/// socket wait here, in the kernel, until they are spliced out to the other socket.
#[derive(Debug)]
pub(crate) struct KernelPipe {
    /// The end bytes leave by.
    read: File,
    /// The end bytes enter by.
    write: File,
    /// Bytes in the pipe: spliced (or written) in and not yet out.
    len: usize,
    /// Most bytes a direction keeps in the pipe: the configured pipe size, or less when the
    /// kernel gave a smaller pipe.
    capacity: usize,
    /// A call on the pipe failed: what is in it is unknown, so it is closed, never reused.
    failed: bool,
    /// The pool's token: its count of clones tells the pool how many pipes are open.
    _open: Arc<()>,
}

impl KernelPipe {
    /// A new, empty pipe that a direction fills with at most `size` bytes.
    ///
    /// The kernel is asked for a pipe of `size` bytes (`F_SETPIPE_SZ`), but not less than
    /// [`MIN_KERNEL_SIZE`]: it counts slots of a page, not bytes, and a one-page pipe would fill
    /// with a single socket fragment. When the kernel refuses (over
    /// `/proc/sys/fs/pipe-max-size`, or the user's pipe limits), the pipe keeps the size it got
    /// (64 KiB by default), and holds at most that. A user past
    /// `/proc/sys/fs/pipe-user-pages-soft` gets pipes of two pages that the kernel will not
    /// enlarge: smaller than [`MIN_KERNEL_SIZE`], such a pipe is closed and this is an error, so
    /// that the direction copies instead. `token` is the pool's open-pipe counter.
    pub(crate) fn new(size: usize, token: Arc<()>) -> io::Result<KernelPipe> {
        let (read, write) = sys::pipe()?;
        let got = usable_size(sys::set_pipe_size(&write, size.max(MIN_KERNEL_SIZE)))?;
        Ok(KernelPipe {
            read,
            write,
            len: 0,
            capacity: size.min(got),
            failed: false,
            _open: token,
        })
    }

    /// Bytes in the pipe.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Most bytes a direction may keep in the pipe.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Marks the pipe as having seen an error: the pool closes it instead of reusing it.
    pub(crate) fn mark_failed(&mut self) {
        self.failed = true;
    }

    /// True when the pipe can go back to the stock: empty, and no call on it ever failed.
    pub(crate) fn is_reusable(&self) -> bool {
        self.len == 0 && !self.failed
    }

    /// Splices up to `max` bytes from the socket `src` into the pipe without blocking.
    ///
    /// As a socket read: `Ok(0)` is the socket's EOF; `WouldBlock` means the socket has nothing,
    /// or the pipe has no free slot (the kernel counts pages, not bytes: a pipe that holds bytes
    /// may be full before `capacity`).
    pub(crate) fn fill_from(&mut self, src: BorrowedFd<'_>, max: usize) -> io::Result<usize> {
        let n = sys::splice(src, self.write_end(), max)?;
        self.len += n;
        Ok(n)
    }

    /// Splices up to `max` of the pipe's bytes into the socket `dst` without blocking.
    /// `WouldBlock` means the socket's send buffer is full.
    pub(crate) fn drain_into(&mut self, dst: BorrowedFd<'_>, max: usize) -> io::Result<usize> {
        let n = sys::splice(self.read_end(), dst, max.min(self.len))?;
        self.len = self.len.saturating_sub(n);
        Ok(n)
    }

    /// Reads the pipe's bytes into user space: to move them to a buffer when the sink turns out
    /// not to take splices.
    pub(crate) fn pull(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min(self.len);
        let n = (&self.read).read(&mut buf[..want])?;
        self.len = self.len.saturating_sub(n);
        Ok(n)
    }

    /// Writes bytes into the pipe from user space, as a fake stream's splice does.
    #[cfg(test)]
    pub(crate) fn push(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let n = (&self.write).write(bytes)?;
        self.len += n;
        Ok(n)
    }

    fn read_end(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.read.as_fd()
    }

    fn write_end(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.write.as_fd()
    }
}

/// True when an error says the descriptor does not take splices (`EINVAL`, `ENOSYS`, or a
/// stream that offers no splice at all), so the direction should copy instead.
pub(crate) fn is_unsupported(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::Unsupported
        || matches!(error.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS))
}

/// Blocks SIGPIPE on the calling thread.
///
/// A splice to a socket whose peer has gone raises SIGPIPE (unlike `send`, it cannot pass
/// `MSG_NOSIGNAL`); Rust programs ignore SIGPIPE already, but a host that did not would be
/// killed. Blocked on the reactor threads, the signal stays pending on them, harmlessly, and
/// the call fails with `EPIPE` as a write does.
pub(crate) fn block_sigpipe() {
    sys::block_sigpipe();
}

#[cfg(target_os = "linux")]
mod sys {
    use std::fs::File;
    use std::io;
    use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

    /// A non-blocking pipe: (read end, write end).
    pub(super) fn pipe() -> io::Result<(File, File)> {
        let mut fds: [libc::c_int; 2] = [-1, -1];
        // SAFETY: pipe2 writes two descriptors into the array it is given, which has room for
        // two; it reads nothing else.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both are open descriptors that nothing else owns; each is
        // wrapped once, and closed when its File drops.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok((File::from(read), File::from(write)))
    }

    /// Asks for a pipe of `size` bytes; returns the size the pipe has (the default, 64 KiB on
    /// most systems, when the kernel refuses).
    pub(super) fn set_pipe_size(pipe: &File, size: usize) -> usize {
        let fd = pipe.as_raw_fd();
        let want = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
        // SAFETY: F_SETPIPE_SZ takes an int and touches no memory; `fd` is open for the call.
        let set = unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, want) };
        if set > 0 {
            return set as usize;
        }
        // SAFETY: F_GETPIPE_SZ takes no argument and touches no memory; `fd` is open.
        let got = unsafe { libc::fcntl(fd, libc::F_GETPIPE_SZ) };
        if got > 0 {
            got as usize
        } else {
            // Cannot happen on a pipe; assume the smallest pipe the kernel makes (one page).
            4096
        }
    }

    /// One non-blocking splice of up to `len` bytes from `from` to `to`.
    pub(super) fn splice(
        from: BorrowedFd<'_>,
        to: BorrowedFd<'_>,
        len: usize,
    ) -> io::Result<usize> {
        // SAFETY: both descriptors are borrowed, so open for the call; null offsets mean "the
        // current position", as pipes and sockets require; splice writes no user memory.
        let n = unsafe {
            libc::splice(
                from.as_raw_fd(),
                std::ptr::null_mut(),
                to.as_raw_fd(),
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    pub(super) fn block_sigpipe() {
        // SAFETY: the set is a local that sigemptyset initialises before sigaddset and
        // pthread_sigmask read it; a null old-set pointer asks for nothing back.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGPIPE);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
    }
}

/// Elsewhere there is no splice: every direction copies.
#[cfg(not(target_os = "linux"))]
mod sys {
    use std::fs::File;
    use std::io;
    use std::os::fd::BorrowedFd;

    pub(super) fn pipe() -> io::Result<(File, File)> {
        Err(io::ErrorKind::Unsupported.into())
    }

    pub(super) fn set_pipe_size(_pipe: &File, size: usize) -> usize {
        size
    }

    pub(super) fn splice(_: BorrowedFd<'_>, _: BorrowedFd<'_>, _: usize) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }

    pub(super) fn block_sigpipe() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipe_counts_what_goes_through_it() {
        let mut pipe = KernelPipe::new(16 * 1024, Arc::new(())).expect("a pipe");
        assert_eq!(pipe.capacity(), 16 * 1024);
        assert_eq!(pipe.push(b"hello world").unwrap(), 11);
        assert_eq!(pipe.len(), 11);
        assert!(!pipe.is_reusable(), "bytes in it");
        let mut buf = [0; 5];
        assert_eq!(pipe.pull(&mut buf).unwrap(), 5);
        assert_eq!(&buf, b"hello");
        let mut rest = [0; 64];
        assert_eq!(pipe.pull(&mut rest).unwrap(), 6, "no more than it holds");
        assert_eq!(&rest[..6], b" world");
        assert!(pipe.is_reusable());
        pipe.mark_failed();
        assert!(
            !pipe.is_reusable(),
            "a pipe that saw an error is never reused"
        );
    }

    #[test]
    fn a_small_buffer_size_caps_what_the_pipe_holds() {
        // The kernel's smallest pipe is a page; the direction still keeps only 1 KiB in it.
        let pipe = KernelPipe::new(1024, Arc::new(())).expect("a pipe");
        assert_eq!(pipe.capacity(), 1024);
    }

    #[test]
    fn a_default_pipe_holds_the_default_pipe_size() {
        let max = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
            .ok()
            .and_then(|text| text.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if max < crate::config::DEFAULT_PIPE_SIZE {
            eprintln!("skipped: pipe-max-size {max} is below the default pipe size");
            return;
        }
        let mut pipe =
            KernelPipe::new(crate::config::DEFAULT_PIPE_SIZE, Arc::new(())).expect("a pipe");
        assert_eq!(pipe.capacity(), crate::config::DEFAULT_PIPE_SIZE);
        // The kernel really made room for it: it takes that many bytes without blocking
        // (a pipe of the kernel's default 64 KiB would say WouldBlock a quarter of the way).
        let chunk = [7u8; 16 * 1024];
        while pipe.len() < pipe.capacity() {
            pipe.push(&chunk).expect("room in the pipe");
        }
        assert_eq!(pipe.len(), crate::config::DEFAULT_PIPE_SIZE);
    }

    #[test]
    fn a_pipe_of_fewer_than_four_pages_is_not_used() {
        // What a user past pipe-user-pages-soft gets: two pages, which cannot be enlarged.
        let error = usable_size(8192).unwrap_err();
        assert!(
            error.to_string().contains("pipe-user-pages-soft"),
            "{error}"
        );
        assert_eq!(usable_size(MIN_KERNEL_SIZE).unwrap(), MIN_KERNEL_SIZE);
        assert_eq!(usable_size(1 << 20).unwrap(), 1 << 20);
    }

    #[test]
    fn a_size_the_kernel_refuses_keeps_the_pipe_it_gave() {
        // Far over /proc/sys/fs/pipe-max-size (1 MiB by default): refused unless privileged.
        let pipe = KernelPipe::new(1 << 30, Arc::new(())).expect("a pipe all the same");
        assert!(pipe.capacity() >= 4096, "{}", pipe.capacity());
        assert!(pipe.capacity() <= 1 << 30);
    }

    #[test]
    fn splice_moves_bytes_between_sockets_and_the_pipe() {
        use std::io::Write;
        use std::net::{TcpListener, TcpStream};
        use std::os::fd::AsFd;

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut a = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (b, _) = listener.accept().unwrap();
        let listener2 = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(listener2.local_addr().unwrap()).unwrap();
        let (mut d, _) = listener2.accept().unwrap();
        b.set_nonblocking(true).unwrap();
        d.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();

        let mut pipe = KernelPipe::new(4096, Arc::new(())).unwrap();
        let err = pipe.fill_from(b.as_fd(), 4096).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "nothing sent yet");
        // Loopback delivers at once, but a test should not count on it.
        let fill = |pipe: &mut KernelPipe| loop {
            match pipe.fill_from(b.as_fd(), 4096) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                other => return other.expect("splice in"),
            }
        };
        a.write_all(b"spliced bytes").unwrap();
        assert_eq!(fill(&mut pipe), 13);
        assert_eq!(pipe.len(), 13);
        assert_eq!(pipe.drain_into(c.as_fd(), 100).unwrap(), 13);
        assert_eq!(pipe.len(), 0);
        let mut got = [0; 13];
        d.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"spliced bytes");

        drop(a);
        assert_eq!(fill(&mut pipe), 0, "EOF");
        assert!(pipe.is_reusable());
    }
}
