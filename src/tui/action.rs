//! What the console can be asked to do: commands from the keymap, text editing in forms, the mouse
//! wheel, the clock, and what comes back from the service. Everything `App::update` takes is an
//! [`Action`].

use std::collections::HashMap;
use std::sync::Arc;

use crate::domain::delivery::DlqGroups;
use crate::domain::{
    DeadLetter, DeliveryAttempt, DlqId, Event, EventId, EventPage, ProcessingResult, Processor, ReplayProgress,
    ReplayRequest, ReplayStarted, Statistics, Subscription, SubscriptionId, Timestamp,
};
use crate::service::{Cluster, DlqPage, Error, FeedItem, Health};

/// Everything that changes the console's state.
#[derive(Debug)]
pub enum Action {
    /// A key that means something in the current mode (see the keymap).
    Command(Command),
    /// A key typed into a form.
    Text(TextEdit),
    /// Mouse wheel: positive scrolls down, negative up, in rows.
    Scroll(i16),
    /// The once-a-second heartbeat with the time: polls, rates and ages.
    Tick(Timestamp),
    /// The terminal's new size, in columns and rows.
    Resize(u16, u16),
    /// Items from the live feed, batched by the feed task.
    Feed(FeedBatch),
    /// A call to the service has answered (boxed: some answers are large).
    Response(Box<Response>),
}

/// What a key means; the keymap decides which keys mean what in which mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    Quit,
    Help,
    /// Show pane number n (1-based).
    ShowPane(u8),
    NextPane,
    PrevPane,
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    /// Enter: open the selected item's details.
    Open,
    /// Esc: close the open popup.
    Close,
    /// Live: pause or resume following.
    Pause,
    /// Live, History: edit the filter.
    Filter,
    NextPage,
    PrevPage,
    /// History: replay what the filter selects.
    Replay,
    /// History: archive the events before the end of the filter's time range (asks first with the count).
    Archive,
    /// DLQ: retry the selected entry.
    Retry,
    /// DLQ: mark or unmark the selected entry.
    Mark,
    /// DLQ: retry the marked entries, or every entry shown when none is marked.
    RetryMarked,
    /// DLQ: discard the selected entry.
    Discard,
    /// DLQ: switch between the entries and the groups by cause.
    ToggleGroups,
    /// DLQ: show the next or previous subscription's or processor's entries only.
    NextFilter,
    PrevFilter,
    /// Processors, Subscriptions: turn the selected one on or off.
    Toggle,
    /// Subscriptions: delete the selected one.
    Delete,
    /// Load the pane's data again now.
    Refresh,
    /// `:` opens the command line.
    CommandLine,
    /// Streams: the version before / after the one shown.
    StepBack,
    StepForward,
    /// Streams: the version current at a time (asks for it).
    JumpToTime,
    /// Confirm dialogs and the replay dialog: yes.
    Confirm,
    /// Replay dialog: the next or previous target.
    NextChoice,
    PrevChoice,
}

/// Editing keys inside a form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextEdit {
    Char(char),
    Backspace,
    Delete,
    Left,
    Right,
    Home,
    End,
    /// Ctrl-U: empty the focused field.
    Clear,
    NextField,
    PrevField,
    /// Command line: Tab completes (again: the next candidate).
    Complete,
    /// Command line: ↑ / ↓ through the commands run before.
    Earlier,
    Later,
    Submit,
    Cancel,
}

/// A batch of feed items. `generation` tells batches of a feed that was replaced (filter changed)
/// from the current one.
#[derive(Debug, Clone)]
pub struct FeedBatch {
    pub generation: u64,
    pub items: Vec<FeedItem>,
    /// Items the feed task had to leave out because the console fell behind (bounded batches).
    pub dropped: u64,
    /// The latest stored events loaded when the feed starts: shown, but not counted as arrivals.
    pub backfill: bool,
}

/// The answer to one effect.
#[derive(Debug)]
pub enum Response {
    /// The attached server's live stream connected or was lost.
    Connection(crate::remote::ConnectionState),
    Statistics(Result<Statistics, Error>),
    Health(Health),
    /// The instances sharing the store.
    Cluster(Result<Cluster, Error>),
    /// The live feed of `generation` ended with an error; it resumes by itself after a pause.
    FeedLost {
        generation: u64,
        error: Error,
    },
    /// The live feed of `generation` (re)started.
    FeedRunning {
        generation: u64,
    },
    History {
        request: u64,
        result: Result<EventPage, Error>,
    },
    EventDetail(Box<EventDetail>),
    DeadLetters {
        request: u64,
        result: Result<DlqPage, Error>,
    },
    DeadLetter(Result<DeadLetter, Error>),
    DeadLetterGroups {
        request: u64,
        result: Result<DlqGroups, Error>,
    },
    Retried(Result<usize, Error>),
    /// A bulk discard (a group) answered how many entries left the queue.
    DiscardedMany(Result<usize, Error>),
    /// How many events an archive before this time would take (processed and failed ones).
    ArchiveCount(Result<(Timestamp, u64), Error>),
    Archived(Result<crate::domain::archive::ArchiveReport, Error>),
    Discarded {
        id: DlqId,
        result: Result<(), Error>,
    },
    Processors(Result<Vec<Arc<Processor>>, Error>),
    ProcessorToggled(Result<Arc<Processor>, Error>),
    Subscriptions {
        list: Result<Vec<Arc<Subscription>>, Error>,
        dlq_counts: HashMap<SubscriptionId, u64>,
    },
    SubscriptionUpdated(Result<Arc<Subscription>, Error>),
    SubscriptionDeleted {
        id: SubscriptionId,
        result: Result<(), Error>,
    },
    SubscriptionDetail(Box<SubscriptionDetail>),
    /// The dry run of a replay: the request it ran (selection resolved) and its answer.
    ReplayDryRun(Result<(ReplayRequest, ReplayStarted), String>),
    ReplayStarted(Result<ReplayStarted, Error>),
    ReplayProgress(Result<ReplayProgress, Error>),
    Streams {
        request: u64,
        result: Result<Vec<crate::storage::StreamSummary>, Error>,
    },
    StreamEvents {
        request: u64,
        result: Result<crate::service::StreamEvents, Error>,
    },
    /// The state after a version, and after the one before (none before version 2).
    StreamState {
        request: u64,
        state: Result<crate::domain::Projection, Error>,
        before: Option<Result<crate::domain::Projection, Error>>,
    },
    /// The state current at a time (its version is where the console jumps).
    StreamAt {
        request: u64,
        at: Timestamp,
        result: Result<crate::domain::Projection, Error>,
    },
    /// An export wrote `written` of `total` events (`done` once the file is complete).
    Export {
        path: String,
        written: u64,
        total: u64,
        done: bool,
        error: Option<String>,
    },
}

/// One event with everything recorded about it.
#[derive(Debug)]
pub struct EventDetail {
    pub event_id: EventId,
    pub event: Result<Arc<Event>, Error>,
    pub results: Result<Vec<ProcessingResult>, Error>,
    pub attempts: Result<Vec<DeliveryAttempt>, Error>,
}

/// One subscription with its latest delivery attempts and dead-letter count.
#[derive(Debug)]
pub struct SubscriptionDetail {
    pub subscription: Arc<Subscription>,
    /// Attempts made for it on the most recent events it matches, newest first.
    pub attempts: Result<Vec<DeliveryAttempt>, Error>,
    pub dead_letters: Result<u64, Error>,
}
