//! The fan-out part of a session in the wire format (see the parent module for the layout):
//! written from a frozen connection, read back and checked as a whole before any socket is
//! attached.

use super::fields::{put_addr, put_clocks, put_pipe, Reader};
use super::WireError;
use crate::conn::fanout::frozen::{FanState, FrozenDest, FrozenPhase};
use crate::conn::fanout::FanoutSettings;
use crate::session::Fanout;
use crate::spec::Reply;
use crate::spec::{MAX_FANOUT, MAX_MAX_LAG, MIN_MAX_LAG};

/// Destination flags.
const SENT_FIN: u8 = 1;
const GOT_EOF: u8 = 2;
/// Client flags.
const CLIENT_EOF: u8 = 1;
const CLIENT_FIN_SENT: u8 = 2;

/// Writes the fan-out part of a session, after its common fields; fails only on values the
/// format cannot hold (no tunnel's settings reach them).
pub(super) fn put_fanout(body: &mut Vec<u8>, fan: &Fanout) -> Result<(), WireError> {
    let state = &fan.state;
    // Within the format's ranges, as every fan-out tunnel's settings are.
    let too_large = |what, got: usize, max: usize| WireError::TooLarge { what, got, max };
    let max_lag = u32::try_from(fan.settings.max_lag)
        .map_err(|_| too_large("max_lag", fan.settings.max_lag, u32::MAX as usize))?;
    let min_live = u8::try_from(fan.settings.min_live)
        .map_err(|_| too_large("min_live", fan.settings.min_live as usize, MAX_FANOUT))?;
    let count = u8::try_from(state.dests.len())
        .ok()
        .filter(|_| state.dests.len() == fan.dests.len())
        .ok_or(too_large("destinations", state.dests.len(), MAX_FANOUT))?;
    let log_len = u32::try_from(state.log.len())
        .map_err(|_| too_large("log length", state.log.len(), u32::MAX as usize))?;
    body.push(match fan.settings.reply {
        Reply::Primary => 0,
        Reply::None => 1,
    });
    body.extend_from_slice(&max_lag.to_be_bytes());
    body.push(min_live);
    body.push(count);
    for (addr, dest) in fan.dests.iter().zip(&state.dests) {
        put_addr(body, *addr);
        body.push(match dest.phase {
            FrozenPhase::Open => 0,
            FrozenPhase::Finished => 1,
            FrozenPhase::Gone => 2,
        });
        let flags = if dest.fin_sent { SENT_FIN } else { 0 } | if dest.eof { GOT_EOF } else { 0 };
        body.push(flags);
        body.extend_from_slice(&dest.sent.to_be_bytes());
    }
    let client = if state.client_eof { CLIENT_EOF } else { 0 }
        | if state.client_fin_sent {
            CLIENT_FIN_SENT
        } else {
            0
        };
    body.push(client);
    body.extend_from_slice(&state.base.to_be_bytes());
    body.extend_from_slice(&log_len.to_be_bytes());
    body.extend_from_slice(&state.log);
    put_pipe(body, &state.down);
    put_clocks(body, state.idle_for, state.half_closed_for);
    Ok(())
}

impl Reader<'_> {
    /// A fan-out session's state, checked as a whole ([`FanState::check`]).
    pub(super) fn fanout(&mut self) -> Result<Fanout, WireError> {
        let reply = match self.u8("reply")? {
            0 => Reply::Primary,
            1 => Reply::None,
            _ => return Err(WireError::Malformed("unknown reply mode")),
        };
        let max_lag = self.u32("max_lag")? as usize;
        if !(MIN_MAX_LAG..=MAX_MAX_LAG).contains(&max_lag) {
            return Err(WireError::Malformed("max_lag out of range"));
        }
        let min_live = u32::from(self.u8("min_live")?);
        let count = usize::from(self.u8("destinations")?);
        if count == 0 || count > MAX_FANOUT {
            return Err(WireError::Malformed(
                "a fan-out connection has from 1 to 64 destinations",
            ));
        }
        let mut addrs = Vec::with_capacity(count);
        let mut dests = Vec::with_capacity(count);
        for _ in 0..count {
            addrs.push(self.addr()?);
            let phase = match self.u8("destination phase")? {
                0 => FrozenPhase::Open,
                1 => FrozenPhase::Finished,
                2 => FrozenPhase::Gone,
                _ => return Err(WireError::Malformed("unknown destination phase")),
            };
            let flags = self.u8("destination flags")?;
            if flags & !(SENT_FIN | GOT_EOF) != 0 {
                return Err(WireError::Malformed("unknown destination flags"));
            }
            dests.push(FrozenDest {
                phase,
                sent: self.u64("destination position")?,
                fin_sent: flags & SENT_FIN != 0,
                eof: flags & GOT_EOF != 0,
            });
        }
        let client = self.u8("client flags")?;
        if client & !(CLIENT_EOF | CLIENT_FIN_SENT) != 0 {
            return Err(WireError::Malformed("unknown client flags"));
        }
        let base = self.u64("log position")?;
        let len = self.u32("log length")? as usize;
        let log = self.take(len, "log bytes")?.to_vec();
        let down = self.pipe()?;
        let (idle_for, half_closed_for) = self.clocks()?;
        let settings = FanoutSettings {
            reply,
            max_lag,
            min_live,
        };
        let state = FanState {
            base,
            log,
            dests,
            client_eof: client & CLIENT_EOF != 0,
            client_fin_sent: client & CLIENT_FIN_SENT != 0,
            down,
            idle_for,
            half_closed_for,
        };
        state.check(&settings).map_err(WireError::Malformed)?;
        Ok(Fanout {
            settings,
            dests: addrs,
            state,
        })
    }
}
