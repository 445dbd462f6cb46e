//! The fan-out machine against a model, property-tested: a client stream of random length,
//! destinations whose receive windows open by random steps (some stall for a while), a primary
//! that answers with random bytes, and an end of stream or not. After every run: what each
//! destination got is a prefix of the client's stream, and what the client got a prefix of the
//! primary's answer. Once every window is open: every destination not dropped for lag has the
//! whole stream and, if the client ended, its FIN; the client has the whole answer.

use proptest::prelude::*;

use super::{Peer, Rig, MAX_LAG};
use crate::conn::fanout::DestEnd;
use crate::spec::Reply;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn every_destination_gets_a_prefix_then_all_or_is_dropped_for_lag(
        stream in prop::collection::vec(any::<u8>(), 0..(3 * MAX_LAG)),
        answer in prop::collection::vec(any::<u8>(), 0..4000),
        client_ends in any::<bool>(),
        // Per round and destination, how far its window opens.
        steps in prop::collection::vec(prop::collection::vec(0usize..4000, 3), 1..8),
    ) {
        let mut rig = Rig::new(Reply::Primary, 3);
        rig.client = Peer::sending(&stream);
        rig.client.eof = client_ends;
        for (i, dest) in rig.dests.iter_mut().enumerate() {
            let dest = dest.as_mut().expect("connected");
            dest.window = Some(0);
            if i == 0 {
                dest.inbound = answer.clone();
            }
        }
        for round in &steps {
            for (i, step) in round.iter().enumerate() {
                if let Some(dest) = rig.dests[i].as_mut() {
                    dest.window = dest.window.map(|w| w + step);
                }
            }
            rig.run();
            for dest in rig.dests.iter().flatten() {
                prop_assert!(stream.starts_with(&dest.written), "a destination's bytes");
            }
            prop_assert!(answer.starts_with(&rig.client.written), "the client's bytes");
        }
        // Every window opens.
        for dest in rig.dests.iter_mut().flatten() {
            dest.window = None;
        }
        rig.run();
        for (i, dest) in rig.dests.iter().enumerate() {
            let Some(dest) = dest else {
                let why = rig.departed.iter().find(|d| d.dest == i).map(|d| d.end);
                prop_assert!(
                    matches!(why, Some(DestEnd::Lagged | DestEnd::Finished)),
                    "destination {} left for {:?}", i, why
                );
                continue;
            };
            prop_assert_eq!(&dest.written, &stream, "destination {}", i);
            prop_assert_eq!(dest.fin, client_ends, "destination {}'s FIN", i);
        }
        if rig.dests[0].is_some() {
            prop_assert_eq!(&rig.client.written, &answer);
        }
    }
}
