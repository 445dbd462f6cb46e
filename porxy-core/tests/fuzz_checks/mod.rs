//! What each fuzz target checks of one input, shared by the fuzzers (`fuzz/`, cargo-fuzz on
//! nightly) and by the replay of their corpora (`tests/fuzz_corpora.rs`, stable, in CI): the
//! parser never panics, and what it accepts it writes back in a form that reads the same.

#![allow(dead_code)] // Each fuzz target uses one check.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::str::FromStr;

use porxy_core::session::wire::{decode_frame, FrameHeader, FRAME_HEADER_LEN};
use porxy_core::units::{format_duration, format_size, parse_duration, parse_size};
use porxy_core::{Remote, TunnelSpec};

/// The most descriptors a frame may ask for here (each is /dev/null opened anew).
const MAX_FAKE_DESCRIPTORS: usize = 32;

/// A tunnel SPEC: parsed, or refused with an error; a parsed one, written back, parses to the
/// same spec.
pub fn spec(data: &[u8]) {
    round_trip::<TunnelSpec>(data);
}

/// A remote (`ADDRESS[*WEIGHT]`): the same round trip.
pub fn remote(data: &[u8]) {
    round_trip::<Remote>(data);
}

/// What `T` parses from `data` (as UTF-8), written back, parses to the same value.
fn round_trip<T>(data: &[u8])
where
    T: FromStr + std::fmt::Display + PartialEq + std::fmt::Debug,
    T::Err: std::fmt::Display,
{
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(value) = T::from_str(text) else {
        return;
    };
    let written = value.to_string();
    let again = T::from_str(&written)
        .unwrap_or_else(|e| panic!("{text:?} parsed, but its written form {written:?} not: {e}"));
    assert_eq!(again, value, "{text:?} -> {written:?}");
}

/// A duration and a size as the config and the SPEC write them: a parsed one, written back,
/// parses to the same value.
pub fn units(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(duration) = parse_duration(text) {
        let written = format_duration(duration);
        assert_eq!(
            parse_duration(&written).ok(),
            Some(duration),
            "{text:?} -> {written:?}"
        );
    }
    if let Ok(size) = parse_size(text) {
        let written = format_size(size as u64);
        assert_eq!(
            parse_size(&written).ok(),
            Some(size),
            "{text:?} -> {written:?}"
        );
    }
}

/// A frame of connections from another process: a header, then its body, with as many
/// descriptors as the header says (up to a bound). Decoding never panics and allocates by what
/// came, not by the header's word.
pub fn session_frame(data: &[u8]) {
    if data.len() < FRAME_HEADER_LEN {
        return;
    }
    let (head, body) = data.split_at(FRAME_HEADER_LEN);
    let Ok(header) = FrameHeader::parse(head.try_into().expect("the header's length")) else {
        return;
    };
    if header.descriptors() > MAX_FAKE_DESCRIPTORS {
        return;
    }
    let descriptors: Vec<OwnedFd> = (0..header.descriptors())
        .map(|_| File::open("/dev/null").expect("/dev/null").into())
        .collect();
    let _ = decode_frame(&header, body, descriptors);
}
