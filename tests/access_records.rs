//! The connection records an embedding application gets from its own [`AccessSink`]: here a
//! channel, read back record by record.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use porxy_core::{AccessSink, CloseReason, ConnectionRecord, DestinationOutcome};

use crate::support::backend::Refusing;
use crate::support::client::read_until_end;
use crate::support::fanout::{echoing_primary, exchange, fanout_spec};
use crate::support::payload::bytes;
use crate::support::proxy::{builder, start};

const WAIT: Duration = Duration::from_secs(10);

/// A sink that sends each record down a channel.
struct ChannelSink(Mutex<Sender<ConnectionRecord>>);

impl AccessSink for ChannelSink {
    fn record(&self, record: ConnectionRecord) {
        let _ = self.0.lock().unwrap().send(record);
    }
}

fn sink() -> (Arc<ChannelSink>, Receiver<ConnectionRecord>) {
    let (tx, rx) = channel();
    (Arc::new(ChannelSink(Mutex::new(tx))), rx)
}

/// A fan-out connection's record lists every destination with its own outcome and the bytes
/// it was sent: the primary and a mirror got the whole stream, a refusing one none.
#[test]
fn a_fanout_record_lists_each_destination_with_its_outcome() {
    let (primary, _primary_rx) = echoing_primary();
    let (mirror, _mirror_rx) = echoing_primary();
    let refusing = Refusing::new();
    let (sink, records) = sink();
    let remotes = [primary.addr(), mirror.addr(), refusing.addr()];
    let proxy = start(
        builder()
            .access_sink(sink)
            .tunnel(fanout_spec(&remotes, "reply=primary")),
    );
    let payload = bytes(7, 10_000);
    let (sender, mut stream) = exchange(proxy.bound()[0], payload.clone());
    let ending = read_until_end(&mut stream);
    sender.join().unwrap();
    assert!(ending.bytes == payload);
    drop(stream);

    let record = records.recv_timeout(WAIT).expect("the connection's record");
    assert_eq!(record.reason, CloseReason::Completed);
    assert_eq!(record.tunnel, proxy.bound()[0]);
    assert_eq!(
        record.backend, None,
        "a fan-out connection names its destinations"
    );
    assert_eq!(
        (record.bytes_to_upstream, record.bytes_to_client),
        (10_000, 10_000)
    );
    let dests: Vec<_> = record
        .destinations
        .iter()
        .map(|d| (d.addr, d.bytes_sent, d.outcome))
        .collect();
    let whole = |outcome: DestinationOutcome| {
        matches!(
            outcome,
            DestinationOutcome::Finished
                | DestinationOutcome::WithConnection(CloseReason::Completed)
        )
    };
    assert_eq!(dests.len(), 3, "{dests:?}");
    assert_eq!((dests[0].0, dests[0].1), (primary.addr(), 10_000));
    assert!(whole(dests[0].2), "{dests:?}");
    assert_eq!((dests[1].0, dests[1].1), (mirror.addr(), 10_000));
    assert!(whole(dests[1].2), "{dests:?}");
    assert_eq!(
        dests[2],
        (
            refusing.addr(),
            0,
            DestinationOutcome::ConnectFailed(CloseReason::ConnectRefused)
        )
    );
    assert!(records.try_recv().is_err(), "one record per connection");
    // The backends' own counters agree: each got the stream, the primary sent the replies.
    let status = proxy.handle().status();
    let bytes = |addr| {
        let b = status.tunnels[0]
            .backends
            .iter()
            .find(|b| b.addr == addr)
            .unwrap();
        (b.bytes_to_backend, b.bytes_from_backend)
    };
    assert_eq!(bytes(primary.addr()), (10_000, 10_000));
    assert_eq!(bytes(mirror.addr()), (10_000, 0));
    assert_eq!(bytes(refusing.addr()), (0, 0));
}
