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
}

impl HandingOver {
    /// An export to `to` starts, until `until` at the latest; from now on the reactor holds on.
    pub(super) fn begin(&mut self, to: Sender<Session>, until: Instant) {
        self.export = Some((to, until));
        self.holding = true;
    }

    /// The export is over (what has not left stays).
    pub(super) fn end(&mut self) {
        self.export = None;
    }

    /// The export's caller is done: no more holding on.
    pub(super) fn release(&mut self) {
        self.export = None;
        self.holding = false;
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
