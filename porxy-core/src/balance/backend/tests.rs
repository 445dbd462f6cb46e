//! Unit tests of one backend's shared state: limits, health, operator states.

use super::*;

const PASSIVE: PassiveHealth = PassiveHealth {
    max_fails: 2,
    fail_timeout: Duration::from_secs(10),
    active_checks: false,
};

#[test]
fn max_conns_is_a_hard_limit() {
    let now = Instant::now();
    let b = Backend::new("127.0.0.1:1".parse().unwrap(), 1, Some(2));
    assert_eq!(b.try_reserve(now, &PASSIVE), Ok(()));
    assert_eq!(b.try_reserve(now, &PASSIVE), Ok(()));
    assert_eq!(b.try_reserve(now, &PASSIVE), Err(Unavailable::Full));
    assert_eq!(b.release(), 1);
    assert_eq!(b.try_reserve(now, &PASSIVE), Ok(()));
    assert_eq!(b.total(), 3);
}

#[test]
fn passive_failures_rest_the_backend_then_give_it_a_trial() {
    let now = Instant::now();
    let b = Backend::new("127.0.0.1:1".parse().unwrap(), 1, None);
    assert!(!b.connect_failed(now, &PASSIVE));
    assert!(
        b.connect_failed(now, &PASSIVE),
        "second failure in a row marks it down"
    );
    assert_eq!(b.state(), BackendState::Down);
    assert_eq!(
        b.try_reserve(now + Duration::from_secs(9), &PASSIVE),
        Err(Unavailable::OutOfService)
    );
    assert_eq!(
        b.try_reserve(now + Duration::from_secs(10), &PASSIVE),
        Ok(())
    );
    // One trial at a time: until it succeeds or fail_timeout passes again, no other.
    assert_eq!(
        b.try_reserve(now + Duration::from_secs(11), &PASSIVE),
        Err(Unavailable::OutOfService)
    );
    assert!(
        b.connect_succeeded(&PASSIVE),
        "a good connect brings it back up"
    );
    assert_eq!(b.state(), BackendState::Up);
}

#[test]
fn with_active_checks_only_checks_bring_it_back() {
    let passive = PassiveHealth {
        active_checks: true,
        ..PASSIVE
    };
    let now = Instant::now();
    let b = Backend::new("127.0.0.1:1".parse().unwrap(), 1, None);
    b.connect_failed(now, &passive);
    b.connect_failed(now, &passive);
    assert_eq!(
        b.try_reserve(now + Duration::from_secs(3600), &passive),
        Err(Unavailable::OutOfService)
    );
    b.set_health(Health::Up);
    assert_eq!(b.try_reserve(now, &passive), Ok(()));
}

#[test]
fn operator_states_take_precedence() {
    let now = Instant::now();
    let b = Backend::new("127.0.0.1:1".parse().unwrap(), 1, None);
    for state in [
        AdminState::Draining,
        AdminState::Disabled,
        AdminState::Removing,
    ] {
        b.set_admin(state);
        assert_eq!(
            b.try_reserve(now, &PASSIVE),
            Err(Unavailable::OutOfService),
            "{state:?}"
        );
    }
    b.set_admin(AdminState::Enabled);
    assert_eq!(b.state(), BackendState::Up);
}

/// Regression (REMOVE 3s, then REMOVE 20s answered "for at most 20s"): a later deadline is
/// kept out, and the one in force is what the caller learns; an earlier one replaces it.
#[test]
fn a_close_deadline_never_moves_later_and_the_one_in_force_is_told() {
    let now = Instant::now();
    let b = Backend::new("127.0.0.1:1".parse().unwrap(), 1, None);
    assert_eq!(b.close_deadline(), None);
    assert!(!b.close_ordered());
    let three = now + Duration::from_secs(3);
    assert_eq!(b.order_close(three), CloseOrder::Set(three));
    let later = b.order_close(now + Duration::from_secs(20));
    assert_eq!(later, CloseOrder::Kept(three));
    assert_eq!(b.close_deadline(), Some(three));
    assert_eq!(b.order_close(three), CloseOrder::Kept(three));
    let one = now + Duration::from_secs(1);
    assert_eq!(b.order_close(one), CloseOrder::Set(one));
    assert_eq!(b.close_deadline(), Some(one));
    assert!(b.close_ordered());
}
