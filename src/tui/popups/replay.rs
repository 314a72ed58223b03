//! The replay dialog: what the History filter selects, a dry run with the count and the first
//! events, a target choice, the confirmation, then a progress gauge until the job ends.

use std::sync::Arc;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Gauge, Paragraph, Wrap};

use crate::domain::replay::ReplaySelection;
use crate::domain::{Event, EventFilter, ReplayId, ReplayProgress, ReplayRequest, ReplayStatus, ReplayTarget};
use crate::tui::theme;
use crate::tui::widgets::format::{clock, count, truncate};

/// The most events a replay selects by id, when the filter uses fields a replay request cannot
/// express (category, status, user, text): they are looked up page by page first.
pub const MAX_IDS: u64 = 10_000;

/// How a History filter becomes a replay request.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplayPlan {
    /// The filter maps onto a replay selection directly (time range or stream, type, source).
    Direct(ReplayRequest),
    /// The filter needs fields a replay cannot select on: the matching ids are collected first.
    ByIds(EventFilter),
}

pub fn plan(filter: &EventFilter) -> ReplayPlan {
    let selectable = filter.event_category.is_none()
        && filter.status.is_none()
        && filter.user_id.is_none()
        && filter.text.is_none()
        && filter.tenant_id.is_none()
        && filter.correlation_id.is_none();
    let timed = filter.start_time.is_some() || filter.end_time.is_some();
    let selection = match (&filter.stream_id, timed) {
        (Some(stream), false) if selectable => ReplaySelection::Stream(stream.clone()),
        (None, _) if selectable => ReplaySelection::TimeRange { start: filter.start_time, end: filter.end_time },
        _ => return ReplayPlan::ByIds(filter.clone()),
    };
    ReplayPlan::Direct(ReplayRequest {
        selection,
        event_type: filter.event_type.clone(),
        event_source: filter.event_source,
        target: None,
        dry_run: true,
        confirm: false,
    })
}

/// A place replayed events can go.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetChoice {
    pub label: String,
    pub target: Option<ReplayTarget>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ReplayStage {
    /// The dry run is in flight.
    Counting,
    Ready {
        request: ReplayRequest,
        count: u64,
        sample: Vec<Arc<Event>>,
    },
    /// Confirmed; waiting for the job's id.
    Starting {
        count: u64,
    },
    Running {
        replay_id: ReplayId,
        count: u64,
        progress: Option<ReplayProgress>,
    },
    Finished(ReplayProgress),
    Failed(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReplayDialog {
    /// The filter in words.
    pub selection: String,
    pub targets: Vec<TargetChoice>,
    pub target: usize,
    pub stage: ReplayStage,
}

impl ReplayDialog {
    pub fn new(selection: String, targets: Vec<TargetChoice>) -> Self {
        Self { selection, targets, target: 0, stage: ReplayStage::Counting }
    }

    pub fn chosen_target(&self) -> Option<ReplayTarget> {
        self.targets.get(self.target).and_then(|t| t.target)
    }

    /// The job this dialog follows, while it runs.
    pub fn running_id(&self) -> Option<ReplayId> {
        match &self.stage {
            ReplayStage::Running { replay_id, .. } => Some(*replay_id),
            _ => None,
        }
    }

    /// Takes a progress report for the job it follows; true when it was that job's.
    pub fn apply_progress(&mut self, progress: &ReplayProgress) -> bool {
        let ReplayStage::Running { replay_id, progress: current, .. } = &mut self.stage else { return false };
        if *replay_id != progress.replay_id {
            return false;
        }
        if matches!(progress.status, ReplayStatus::Completed | ReplayStatus::Failed) {
            self.stage = ReplayStage::Finished(progress.clone());
        } else {
            *current = Some(progress.clone());
        }
        true
    }
}

pub fn render(frame: &mut Frame, area: Rect, dialog: &ReplayDialog) {
    let popup = super::centered(area, 96, 22);
    frame.render_widget(Clear, popup);
    let block = Block::default().borders(Borders::ALL).title(Span::styled(" Replay ", theme::title()));
    let inner = block.inner(popup);
    frame.render_widget(block, popup);
    let [text_area, gauge_area, keys_area] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(1), Constraint::Length(1)]).areas(inner);

    let target = dialog.targets.get(dialog.target).map_or("every matching subscription and processor", |t| &t.label);
    let mut lines = vec![
        Line::from(vec![Span::styled("Selection  ", theme::header()), Span::raw(dialog.selection.clone())]),
        Line::from(vec![
            Span::styled("Target     ", theme::header()),
            Span::raw(format!("◀ {target} ▶  ({} of {})", dialog.target + 1, dialog.targets.len().max(1))),
        ]),
        Line::raw(""),
    ];
    let keys = match &dialog.stage {
        ReplayStage::Counting => {
            lines.push(Line::styled("Dry run: counting the events this selects…", theme::muted()));
            "Esc cancel"
        }
        ReplayStage::Ready { count: 0, .. } => {
            lines.push(Line::styled("Dry run: no stored event matches. Nothing to replay.", theme::warning()));
            "Esc close"
        }
        ReplayStage::Ready { count: n, sample, .. } => {
            lines.push(Line::from(vec![
                Span::raw("Dry run: "),
                Span::styled(format!("{} events", count(*n)), theme::title()),
                Span::raw(" would be replayed. The first ones:"),
            ]));
            let room = usize::from(text_area.height).saturating_sub(lines.len() + 1);
            for event in sample.iter().take(room) {
                lines.push(Line::from(vec![
                    Span::styled(format!("  {}  ", clock(event.timestamp)), theme::muted()),
                    Span::raw(format!("#{:<8} ", event.seq)),
                    Span::raw(truncate(&event.event_type, 32)),
                    Span::raw("  "),
                    Span::styled(event.event_source.as_str(), theme::source(event.event_source)),
                ]));
            }
            lines.push(Line::styled(
                format!("Replay {} events to this target? Originals are not changed.", count(*n)),
                theme::warning(),
            ));
            "y / Enter start · ← → target · Esc cancel"
        }
        ReplayStage::Starting { count: n } => {
            lines.push(Line::raw(format!("Starting the replay of {} events…", count(*n))));
            "Esc close (the replay goes on)"
        }
        ReplayStage::Running { replay_id, count: n, progress } => {
            lines.push(Line::raw(format!("Replay {replay_id} of {} events is running.", count(*n))));
            let (done, total, failed) = progress.as_ref().map_or((0, 0, 0), |p| (p.done, p.total, p.failed));
            let ratio = if total == 0 { 0.0 } else { (done as f64 / total as f64).clamp(0.0, 1.0) };
            let label = format!(
                "{:.0}% · {} / {} work items · {} failed",
                ratio * 100.0,
                count(done),
                count(total),
                count(failed)
            );
            frame.render_widget(Gauge::default().gauge_style(theme::good()).ratio(ratio).label(label), gauge_area);
            "Esc close (the replay goes on; the status bar shows it)"
        }
        ReplayStage::Finished(progress) => {
            let (word, style) = match progress.status {
                ReplayStatus::Completed => ("completed", theme::good()),
                _ => ("failed", theme::error()),
            };
            let summary = if progress.total == 0 && progress.status == ReplayStatus::Completed {
                "Nothing to replay: no subscription or processor wants the selected events.".to_owned()
            } else {
                format!(
                    "Replay {word}: {} of {} work items done, {} failed.",
                    count(progress.done),
                    count(progress.total),
                    count(progress.failed)
                )
            };
            lines.push(Line::styled(summary, style));
            if let Some(error) = &progress.error {
                lines.push(Line::styled(error.clone(), theme::error()));
            }
            let ratio = if progress.total == 0 { 1.0 } else { progress.done as f64 / progress.total as f64 };
            frame.render_widget(
                Gauge::default().gauge_style(style).ratio(ratio.clamp(0.0, 1.0)).label(word),
                gauge_area,
            );
            "Esc / Enter close"
        }
        ReplayStage::Failed(error) => {
            lines.push(Line::styled(format!("The replay could not run: {error}"), theme::error()));
            "Esc close"
        }
    };
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), text_area);
    frame.render_widget(Paragraph::new(Line::styled(keys, theme::muted())), keys_area);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EventCategory, Timestamp, TypePattern};

    #[test]
    fn type_source_and_time_select_directly() {
        let filter = EventFilter {
            event_type: Some(TypePattern::parse("t", "order.*").unwrap()),
            start_time: Some(Timestamp::from_micros(1)),
            ..EventFilter::default()
        };
        let ReplayPlan::Direct(request) = plan(&filter) else { panic!("direct expected") };
        assert_eq!(request.selection, ReplaySelection::TimeRange { start: Some(Timestamp::from_micros(1)), end: None });
        assert_eq!(request.event_type.unwrap().as_str(), "order.*");
        assert!(request.dry_run && !request.confirm);
    }

    #[test]
    fn a_stream_alone_selects_the_stream() {
        let filter = EventFilter { stream_id: Some("user:1".into()), ..EventFilter::default() };
        let ReplayPlan::Direct(request) = plan(&filter) else { panic!("direct expected") };
        assert_eq!(request.selection, ReplaySelection::Stream("user:1".into()));
    }

    #[test]
    fn fields_a_replay_cannot_select_on_go_by_ids() {
        let by_category = EventFilter { event_category: Some(EventCategory::Order), ..EventFilter::default() };
        assert_eq!(plan(&by_category), ReplayPlan::ByIds(by_category.clone()));
        let stream_and_time = EventFilter {
            stream_id: Some("user:1".into()),
            end_time: Some(Timestamp::from_micros(5)),
            ..EventFilter::default()
        };
        assert!(matches!(plan(&stream_and_time), ReplayPlan::ByIds(_)));
    }
}
