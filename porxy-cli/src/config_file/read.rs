//! Reading a configuration file: a regular file only, of at most [`MAX_CONFIG_SIZE`] bytes, in
//! UTF-8.
//!
//! The limit holds whatever the file is doing: the read itself stops one byte past it, so a file
//! that grows while it is read, or one whose size says nothing (`/proc`), cannot make porxy read
//! without end. The size the file has when opened only lets an oversized one be refused without
//! reading it. The path is opened without blocking (`O_NONBLOCK`), so that a FIFO swapped in
//! after the first look is refused rather than waited on, and the kind is checked again on the
//! opened file. Bytes that are not UTF-8 are located like any other fault: line, column, key.

use std::fs::{Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use super::locate::key_path_at;
use super::{ConfigError, Lift};

/// The largest configuration file porxy reads: far more than any real one needs, small enough
/// that reading it cannot hurt.
pub(crate) const MAX_CONFIG_SIZE: u64 = 16 * 1024 * 1024;

/// The text of the configuration file at `path` (`file` names it in errors).
pub(super) fn read_config(path: &Path, file: &str) -> Result<String, ConfigError> {
    let failed = |source| ConfigError::Read {
        file: file.to_string(),
        source,
    };
    // A first look, through symbolic links: a socket cannot even be opened, and a FIFO would
    // be opened only to be refused.
    check_kind(&std::fs::metadata(path).map_err(failed)?, file)?;
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(failed)?;
    // What was opened is what is read, whatever the path names by now.
    let metadata = opened.metadata().map_err(failed)?;
    check_kind(&metadata, file)?;
    let too_large = || ConfigError::TooLarge {
        file: file.to_string(),
        limit: MAX_CONFIG_SIZE,
    };
    if metadata.len() > MAX_CONFIG_SIZE {
        return Err(too_large());
    }
    let bytes = read_at_most(opened, MAX_CONFIG_SIZE)
        .map_err(failed)?
        .ok_or_else(too_large)?;
    decode(file, bytes)
}

/// Refuses anything but a regular file, naming what it is.
fn check_kind(metadata: &Metadata, file: &str) -> Result<(), ConfigError> {
    let kind = metadata.file_type();
    let what = if kind.is_file() {
        return Ok(());
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a file"
    };
    Err(ConfigError::NotAFile {
        file: file.to_string(),
        kind: what,
    })
}

/// Everything `input` gives, when that is at most `limit` bytes; `None` when it gives more. Reads
/// at most `limit + 1` bytes, however much `input` holds.
fn read_at_most(input: impl Read, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    input
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= limit).then_some(bytes))
}

/// The bytes as text; else an error at the first byte that is not UTF-8, with the key path
/// there as far as the text before it tells.
fn decode(file: &str, bytes: Vec<u8>) -> Result<String, ConfigError> {
    let err = match String::from_utf8(bytes) {
        Ok(text) => return Ok(text),
        Err(err) => err,
    };
    let offset = err.utf8_error().valid_up_to();
    let bytes = err.as_bytes();
    let message = match err.utf8_error().error_len() {
        Some(_) => format!(
            "not UTF-8: byte 0x{:02X} cannot be here; save the file as UTF-8",
            bytes[offset]
        ),
        None => "not UTF-8: the file ends inside a character; save the file as UTF-8".to_string(),
    };
    // The bytes before the first bad one are UTF-8 by definition.
    let before = std::str::from_utf8(&bytes[..offset]).unwrap_or_default();
    let lift = Lift { file, text: before };
    Err(lift.error(offset, key_path_at(before, offset), message))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts the bytes it gives; gives `0` bytes for ever.
    struct Endless {
        given: u64,
    }

    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            buf.fill(0);
            self.given += buf.len() as u64;
            Ok(buf.len())
        }
    }

    #[test]
    fn reading_stops_one_byte_past_the_limit() {
        let mut endless = Endless { given: 0 };
        assert_eq!(read_at_most(&mut endless, 1000).unwrap(), None);
        assert_eq!(endless.given, 1001, "read exactly the limit and one byte");
        assert_eq!(
            read_at_most(&b"abc"[..], 3).unwrap().as_deref(),
            Some(&b"abc"[..])
        );
        assert_eq!(read_at_most(&b"abcd"[..], 3).unwrap(), None);
        assert_eq!(read_at_most(&b""[..], 0).unwrap().as_deref(), Some(&[][..]));
    }

    #[test]
    fn a_path_that_is_no_regular_file_is_refused_with_its_kind() {
        let dir = std::env::temp_dir();
        let cases = [
            (Path::new("/dev/zero"), "/dev/zero is a character device"),
            (Path::new("/dev/null"), "/dev/null is a character device"),
            (dir.as_path(), "is a directory"),
        ];
        for (path, fragment) in cases {
            let err = read_config(path, &path.display().to_string())
                .expect_err("not a regular file")
                .to_string();
            assert!(
                err.contains(fragment) && err.contains("not a regular file"),
                "{err}"
            );
        }
    }

    #[test]
    fn the_first_byte_that_is_not_utf8_is_located() {
        let cases: [(&[u8], &str); 4] = [
            (b"\xff[proxy]\n", "porxy.toml:1:1: not UTF-8: byte 0xFF"),
            (
                b"[proxy]\nreactors = 2\n# caf\xe9\n",
                "porxy.toml:3:6: proxy: not UTF-8: byte 0xE9",
            ),
            (
                b"[backends.\xc3\xa9]\naddress = \"12\xff\"\n",
                "porxy.toml:2:14: backends.\"\u{e9}\".address: not UTF-8: byte 0xFF",
            ),
            (
                b"[proxy]\nreactors = 2 # \xe2\x82",
                "porxy.toml:2:16: proxy: not UTF-8: the file ends inside a character",
            ),
        ];
        for (bytes, want) in cases {
            let err = decode("porxy.toml", bytes.to_vec())
                .expect_err("not UTF-8")
                .to_string();
            assert!(err.starts_with(want), "{err:?} is not {want:?}...");
        }
        assert_eq!(
            decode("porxy.toml", "caf\u{e9}".into()).unwrap(),
            "caf\u{e9}"
        );
    }
}
