//! The ids that several rooms refer to (a card's run, a usage batch's
//! sync, import or push integration, a card state's outbox entry). They
//! sit below every room so a room can name another's rows without
//! importing it; each is re-exported from the room that owns its table.

use crate::db::id_type;

id_type!(
    /// A sync run's id.
    SyncRunId
);

id_type!(
    /// A reconcile run's id.
    ReconcileRunId
);

id_type!(
    /// An outbox entry's id.
    OutboxId
);

id_type!(
    /// A push integration's id.
    PushIntegrationId
);

id_type!(
    /// A CSV import's id.
    ImportId
);
