//! Where the programs under test are, and what they say their version is.
//!
//! The harness finds HAProxy and nginx on PATH (and in the sbin directories a non-root PATH may
//! lack); a kind whose program is missing is left out of the run with a note, not an error.
//! nginx's stream module may be built in or a module to load (Debian's libnginx-mod-stream):
//! its `-V` output says which.

use std::path::{Path, PathBuf};

/// Where the programs are and how much room the proxies need.
#[derive(Debug, Clone)]
pub struct Programs {
    /// The porxy binary.
    pub porxy: PathBuf,
    /// Another porxy binary, for porxy-b (`--porxy-b`), when given.
    pub porxy_b: Option<PathBuf>,
    /// The haproxy binary, when found.
    pub haproxy: Option<PathBuf>,
    /// The nginx binary, when found.
    pub nginx: Option<PathBuf>,
    /// nginx's stream module, when it is a loadable module.
    pub nginx_stream_module: Option<PathBuf>,
    /// The descriptor limit the proxies run with.
    pub nofile: u64,
    /// The most connections a proxy must hold at once.
    pub max_conns: usize,
}

/// Finds `name` on PATH (and in the sbin directories, which a non-root PATH may lack).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// nginx's stream module as a file to load, when nginx was built with it as a dynamic module
/// (Debian's libnginx-mod-stream); `None` when it is built in or not found.
pub fn nginx_stream_module(nginx: &Path) -> Option<PathBuf> {
    let output = std::process::Command::new(nginx).arg("-V").output().ok()?;
    let text = String::from_utf8_lossy(&output.stderr);
    let dynamic = text.contains("--with-stream=dynamic");
    let built_in = text.split_whitespace().any(|flag| flag == "--with-stream");
    if built_in && !dynamic {
        return None;
    }
    let mut dirs: Vec<PathBuf> = text
        .split_whitespace()
        .filter_map(|flag| flag.strip_prefix("--modules-path="))
        .map(PathBuf::from)
        .collect();
    dirs.extend(["/usr/lib/nginx/modules", "/usr/lib64/nginx/modules"].map(PathBuf::from));
    dirs.into_iter()
        .map(|dir| dir.join("ngx_stream_module.so"))
        .find(|file| file.is_file())
}

/// The first line of `program ARG` (stdout or stderr), for the report's header.
pub fn version_line(program: &Path, arg: &str) -> String {
    std::process::Command::new(program)
        .arg(arg)
        .output()
        .ok()
        .and_then(|out| {
            let text = [out.stdout, out.stderr].concat();
            String::from_utf8_lossy(&text)
                .lines()
                .find(|l| !l.trim().is_empty())
                .map(|l| l.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown version".into())
}
