//! What is generated from the arguments' definition, so that it cannot drift from it: shell
//! completion scripts (`porxy completions SHELL`) and the manual page (`porxy man`).

use std::io;

/// The completion script for `shell`.
pub(crate) fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    let mut definition = crate::args::definition();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut definition, "porxy", &mut out);
    out
}

/// The manual page, in roff.
pub(crate) fn man_page() -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(crate::args::definition()).render(&mut out)?;
    Ok(out)
}
