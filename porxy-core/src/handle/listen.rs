//! A tunnel's listening socket, and, with `reuse_port`, how a successor takes its address
//! without a moment in which clients are refused.
//!
//! A listening socket is non-blocking, SO_REUSEADDR, IPv6-only for an IPv6 address, with
//! TCP_NODELAY set for every client it will queue. With `reuse_port` it is SO_REUSEPORT too:
//! a new porxy (also with `reuse_port`) can bind the address while the old one still listens
//! there. The kernel would then spread new clients over both, and clients queued on the old
//! one when it closes would be reset; so the newcomer, finding the address taken, attaches to
//! the port's group a one-instruction classic BPF program that sends every new client to the
//! second socket of the group, its own (SO_ATTACH_REUSEPORT_CBPF). The old one's queue gets
//! no more clients; it accepts those it has and may close at any time. Once it has closed, the
//! newcomer's socket is the only one (the program's index then points past the group, and the
//! kernel picks by hash: the one socket).

use std::io;
use std::net::SocketAddr;

use mio::net::TcpListener;
use socket2::{Domain, Socket, Type};

use crate::error::Error;

/// A listening, non-blocking socket on `addr` (see the module doc).
pub(super) fn bind(addr: SocketAddr, backlog: i32, reuse_port: bool) -> Result<TcpListener, Error> {
    let fail = |source| Error::Bind { addr, source };
    // Whether another socket holds the address now (a predecessor draining), asked before
    // this one joins it.
    let predecessor = reuse_port && held(addr);
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(fail)?;
    socket.set_reuse_address(true).map_err(fail)?;
    if reuse_port {
        socket.set_reuse_port(true).map_err(fail)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(fail)?;
    }
    socket.set_nonblocking(true).map_err(fail)?;
    // Before `listen`, so that every client it will ever queue inherits it (Linux copies the
    // listening socket's TCP options to the sockets it accepts): no setsockopt per client.
    socket.set_tcp_nodelay(true).map_err(fail)?;
    socket.bind(&addr.into()).map_err(fail)?;
    socket.listen(backlog).map_err(fail)?;
    if predecessor {
        match steer_to(&socket, 1) {
            Ok(()) => {
                tracing::info!(%addr, "sharing the address with the porxy before: new clients come here")
            }
            Err(e) => {
                tracing::warn!(%addr, error = %e, "cannot steer new clients here; the porxy before shares them until it closes")
            }
        }
    }
    Ok(TcpListener::from_std(socket.into()))
}

/// Whether a socket listens on `addr` now: a plain bind there fails.
fn held(addr: SocketAddr) -> bool {
    let Ok(probe) = Socket::new(Domain::for_address(addr), Type::STREAM, None) else {
        return false;
    };
    let _ = probe.set_reuse_address(true);
    if addr.is_ipv6() {
        let _ = probe.set_only_v6(true);
    }
    matches!(probe.bind(&addr.into()), Err(e) if e.kind() == io::ErrorKind::AddrInUse)
}

/// Sends every new client of `socket`'s SO_REUSEPORT group to the group's socket `index`.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // One setsockopt with a struct socket2 does not wrap.
fn steer_to(socket: &Socket, index: u32) -> io::Result<()> {
    use std::os::fd::AsRawFd;

    // One instruction: return the constant `index` (BPF_RET | BPF_K).
    let mut program = [libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: index,
    }];
    let fprog = libc::sock_fprog {
        len: 1,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: `fprog` points at `program`, which outlives the call; the kernel copies it.
    let done = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if done == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn steer_to(_socket: &Socket, _index: u32) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    use super::*;

    /// A successor binding beside a listening predecessor takes every new client; once the
    /// predecessor closes, it has them all still.
    #[test]
    fn a_successor_sharing_the_address_takes_every_new_client() {
        let old = bind("127.0.0.1:0".parse().unwrap(), 64, true).unwrap();
        let addr = old.local_addr().unwrap();
        assert!(held(addr));
        let new = bind(addr, 64, true).expect("beside the old one");
        let accepted_by = |listener: &TcpListener| {
            // Bounded: the connections below are queued already.
            let mut n = 0;
            while listener.accept().is_ok() {
                n += 1;
            }
            n
        };
        let clients: Vec<TcpStream> = (0..32).map(|_| TcpStream::connect(addr).unwrap()).collect();
        assert_eq!(accepted_by(&old), 0, "nothing new for the old one");
        assert_eq!(accepted_by(&new), 32);
        drop(old);
        let mut late = TcpStream::connect(addr).expect("not refused");
        // The connect completed: its client is in the queue already.
        let (served, _) = new
            .accept()
            .expect("the late client, queued on the new socket");
        late.write_all(b"x").unwrap();
        let mut byte = [0u8; 1];
        let mut served = TcpStream::from(std::os::fd::OwnedFd::from(served));
        served.set_nonblocking(false).unwrap();
        served
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        served.read_exact(&mut byte).unwrap();
        assert_eq!(&byte, b"x");
        drop(clients);
    }

    #[test]
    fn without_reuse_port_a_held_address_is_refused() {
        let old = bind("127.0.0.1:0".parse().unwrap(), 16, false).unwrap();
        let addr = old.local_addr().unwrap();
        let refused = bind(addr, 16, true).unwrap_err();
        assert!(refused.to_string().contains("in use"), "{refused}");
    }
}
