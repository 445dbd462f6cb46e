//! Where a reactor stands in a handover: whether an export is on (where its sessions go, and
//! until when), and whether a stopping reactor must hold on with no connection left.

use std::time::Instant;

use crossbeam_channel::Sender;

use crate::session::Session;

#[derive(Default)]
pub(super) struct HandingOver {
    /// The export in progress: where sessions go, and its deadline.
    export: Option<(Sender<Session>, Instant)>,
    /// Since an export: do not end before `Release`, even with no connection left.
    holding: bool,
    /// Connections given back to this process during the export in progress, as `(key, id)`:
    /// they go on here rather than leave again (and again).
    given_back: Vec<(usize, u64)>,
}

impl HandingOver {
    /// An export to `to` starts, until `until` at the latest; from now on the reactor holds on.
    pub(super) fn begin(&mut self, to: Sender<Session>, until: Instant) {
        self.export = Some((to, until));
        self.holding = true;
        self.given_back.clear();
    }

    /// The export is over (what has not left stays).
    pub(super) fn end(&mut self) {
        self.export = None;
        self.given_back.clear();
    }

    /// The export's caller is done: no more holding on.
    pub(super) fn release(&mut self) {
        self.end();
        self.holding = false;
    }

    /// Connection `id`, at slab key `key`, was given back during this export.
    pub(super) fn given_back(&mut self, key: usize, id: u64) {
        self.given_back.push((key, id));
    }

    /// Whether connection `id` at `key` was given back during this export.
    pub(super) fn gave_back(&self, key: usize, id: u64) -> bool {
        self.given_back.contains(&(key, id))
    }

    #[inline]
    pub(super) fn exporting(&self) -> bool {
        self.export.is_some()
    }

    /// Where exported sessions go, while the export is on.
    pub(super) fn sender(&self) -> Option<Sender<Session>> {
        self.export.as_ref().map(|(to, _)| to.clone())
    }

    /// The export's deadline, while it is on.
    pub(super) fn until(&self) -> Option<Instant> {
        self.export.as_ref().map(|(_, until)| *until)
    }

    /// Whether a stopping reactor must hold on, even with no connection left.
    pub(super) fn holding(&self) -> bool {
        self.holding
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_was_given_back_stays_for_this_export_only() {
        let (to, _from) = crossbeam_channel::unbounded();
        let until = Instant::now();
        let mut handing_over = HandingOver::default();
        assert!(!handing_over.exporting() && !handing_over.holding());
        handing_over.begin(to.clone(), until);
        assert!(handing_over.exporting() && handing_over.holding());
        assert_eq!(handing_over.until(), Some(until));
        handing_over.given_back(3, 30);
        assert!(handing_over.gave_back(3, 30));
        assert!(
            !handing_over.gave_back(3, 31),
            "another connection at the same key"
        );
        handing_over.end();
        assert!(!handing_over.exporting() && handing_over.holding());
        handing_over.begin(to, until);
        assert!(!handing_over.gave_back(3, 30), "a new export may take it");
        handing_over.release();
        assert!(!handing_over.exporting() && !handing_over.holding());
    }
}
