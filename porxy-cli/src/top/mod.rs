//! `porxy top`: a live view of a running porxy for a person at a terminal, as `htop` or
//! `sozu top`: per tunnel and per backend the connections open, connections, bytes each way and
//! failures per second, backend states and the reactors' load, refreshed every second and
//! sorted by a key the person picks (`s`); `q` quits. It reads what porxy serves anyone (the
//! control socket's `STATUS FULL`, or the admin API's `GET /status`), never its memory.

pub mod rates;
pub mod snapshot;
pub mod source;
pub mod view;

use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use porxy_core::units::parse_duration;

use crate::clients::ListenAddr;
use rates::SortKey;
use source::Source;

/// `porxy top`'s arguments.
#[derive(Debug, Parser)]
#[command(
    name = "porxy top",
    about = "A live view of a running porxy: tunnels, backends, rates, reactors (q quits)"
)]
pub struct TopArgs {
    /// Read from the control socket at this TCP address or unix:PATH.
    #[arg(long, value_name = "ADDR", value_parser = parse_addr, conflicts_with = "admin", required_unless_present = "admin")]
    control: Option<ListenAddr>,

    /// Read from the HTTP admin API at this TCP address or unix:PATH.
    #[arg(long, value_name = "ADDR", value_parser = parse_addr)]
    admin: Option<ListenAddr>,

    /// The admin API's bearer token, from this file [default: $PORXY_ADMIN_TOKEN].
    #[arg(long, value_name = "PATH", requires = "admin")]
    admin_token_file: Option<PathBuf>,

    /// How often to refresh.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_interval)]
    interval: Duration,

    /// The sort key to start with: name, open, conns, bytes or failures.
    #[arg(long, value_name = "KEY", default_value = "name", value_parser = SortKey::parse)]
    sort: SortKey,
}

fn parse_addr(text: &str) -> Result<ListenAddr, String> {
    text.parse()
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    match parse_duration(text).map_err(|e| e.to_string())? {
        d if d < Duration::from_millis(100) => Err("at least 100ms".into()),
        d => Ok(d),
    }
}

/// Runs the view until `q` (or Ctrl-C); the terminal is given back as it was, whatever
/// happens.
pub fn run(args: TopArgs) -> io::Result<()> {
    let mut source = match (args.control, args.admin) {
        (Some(addr), _) => Source::Control { addr, conn: None },
        (None, Some(addr)) => Source::Admin {
            addr,
            token: token(args.admin_token_file)?,
        },
        (None, None) => unreachable!("clap requires one of --control and --admin"),
    };
    let mut terminal = ratatui::try_init()?;
    let result = show(&mut terminal, &mut source, args.interval, args.sort);
    ratatui::try_restore()?;
    result
}

/// The token from its file, else from the environment.
fn token(file: Option<PathBuf>) -> io::Result<Option<String>> {
    match file {
        Some(path) => std::fs::read_to_string(&path)
            .map(|t| Some(t.trim().to_string()))
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        None => Ok(std::env::var(crate::admin::plan::TOKEN_ENV).ok()),
    }
}

fn show(
    terminal: &mut ratatui::DefaultTerminal,
    source: &mut Source,
    interval: Duration,
    mut sort: SortKey,
) -> io::Result<()> {
    let described = source.describe();
    let mut before: Option<(snapshot::Snapshot, Instant)> = None;
    let mut rows = Vec::new();
    let mut reactors = Vec::new();
    let mut error = None;
    let mut next_reading = Instant::now();
    loop {
        let now = Instant::now();
        if now >= next_reading {
            next_reading = now + interval;
            match source.read() {
                Ok(reading) => {
                    let elapsed = before
                        .as_ref()
                        .map_or(Duration::ZERO, |(_, at)| now.duration_since(*at));
                    rows = rates::rows(before.as_ref().map(|(s, _)| s), &reading, elapsed);
                    reactors = reading.reactors.clone();
                    before = Some((reading, now));
                    error = None;
                }
                Err(e) => error = Some(e.to_string()),
            }
        }
        sort.sort(&mut rows);
        terminal.draw(|frame| {
            view::draw(
                frame,
                &view::Screen {
                    source: &described,
                    rows: &rows,
                    reactors: &reactors,
                    sort,
                    error: error.as_deref(),
                },
            )
        })?;
        let wait = next_reading.saturating_duration_since(Instant::now());
        if event::poll(wait)? {
            if let Event::Key(key) = event::read()? {
                if key.kind != KeyEventKind::Press {
                    continue;
                }
                match key.code {
                    KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                    KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                        return Ok(())
                    }
                    KeyCode::Char('s') => sort = sort.next(),
                    _ => {}
                }
            }
        }
    }
}
