//! Reading where descriptors may follow, on the new porxy's side: a line is read a byte at a
//! time, so that nothing after it is consumed (a buffered read could swallow the descriptors
//! attached to what follows), and every descriptor received is owned at once, so that none
//! leaks on an error.

use std::io::{self, Read};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Reads one line, newline included, a byte at a time: nothing after it is consumed, so that
/// descriptors sent after it are still there for `recvmsg`. `None` at end of stream.
pub(crate) fn read_line(stream: &mut impl Read, max: usize) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < max {
        match stream.read(&mut byte) {
            Ok(0) if line.is_empty() => return Ok(None),
            Ok(0) => break,
            Ok(_) => {
                line.push(byte[0]);
                if byte[0] == b'\n' {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

/// Takes ownership of a descriptor the kernel just created in this process.
#[allow(unsafe_code)]
pub(crate) fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was installed in this process by recvmsg(2) for this message (SCM_RIGHTS);
    // nothing else refers to it, so owning it (and closing it on drop) is sound.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression guard: a buffered read of a line would consume what follows it, and with it
    /// the descriptors attached there.
    #[test]
    fn read_line_consumes_exactly_one_line() {
        let mut input: &[u8] = b"SESSIONS porxy-sessions/1\nPXS1 binary";
        assert_eq!(
            read_line(&mut input, 64).unwrap().as_deref(),
            Some("SESSIONS porxy-sessions/1\n")
        );
        assert_eq!(input, b"PXS1 binary");
        assert_eq!(
            read_line(&mut input, 4).unwrap().as_deref(),
            Some("PXS1"),
            "bounded"
        );
        let mut empty: &[u8] = b"";
        assert_eq!(read_line(&mut empty, 64).unwrap(), None);
    }
}
