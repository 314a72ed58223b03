//! The Subscriptions pane: each webhook subscription's name, URL, patterns, state and dead letters;
//! toggling, deleting (confirmed), and details with its latest delivery attempts.

use std::collections::HashMap;
use std::sync::Arc;

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};

use crate::domain::{Subscription, SubscriptionId};
use crate::service::Error;
use crate::tui::action::{Command, SubscriptionDetail};
use crate::tui::app::App;
use crate::tui::effects::Effect;
use crate::tui::popups::detail::{pretty, section};
use crate::tui::popups::{Confirm, Detail, DetailKey, PendingOp, Popup};
use crate::tui::theme;
use crate::tui::widgets::cursor::ListCursor;
use crate::tui::widgets::format::count;

#[derive(Debug, Default)]
pub struct SubscriptionsState {
    pub items: Vec<Arc<Subscription>>,
    /// Dead letters per subscription, as of the last load.
    pub dlq_counts: HashMap<SubscriptionId, u64>,
    pub cursor: ListCursor,
    pub loaded: bool,
    pub error: Option<String>,
}

impl App {
    pub(crate) fn subscriptions_loaded(
        &mut self,
        list: Result<Vec<Arc<Subscription>>, Error>,
        dlq_counts: HashMap<SubscriptionId, u64>,
    ) {
        match list {
            Ok(items) => {
                self.subscriptions.items = items;
                self.subscriptions.dlq_counts = dlq_counts;
                self.subscriptions.loaded = true;
                self.subscriptions.error = None;
                let rows = self.list_rows();
                self.subscriptions.cursor.clamp(self.subscriptions.items.len(), rows);
            }
            Err(error) => {
                self.subscriptions.error = Some(error.to_string());
                self.error("subscriptions", error);
            }
        }
    }

    pub(crate) fn subscription_updated(&mut self, result: Result<Arc<Subscription>, Error>) {
        match result {
            Ok(subscription) => {
                let state = if subscription.enabled { "on" } else { "off (pending deliveries cancelled)" };
                self.notify(format!("subscription {} is {state}", subscription.subscriber_name));
                let id = subscription.subscription_id;
                if let Some(slot) = self.subscriptions.items.iter_mut().find(|s| s.subscription_id == id) {
                    *slot = subscription;
                }
            }
            Err(error) => self.error("update subscription", error),
        }
    }

    pub(crate) fn subscription_deleted(&mut self, id: SubscriptionId, result: Result<(), Error>) {
        match result {
            Ok(()) => {
                if let Some(i) = self.subscriptions.items.iter().position(|s| s.subscription_id == id) {
                    let removed = self.subscriptions.items.remove(i);
                    self.notify(format!("subscription {} deleted", removed.subscriber_name));
                }
                self.subscriptions.dlq_counts.remove(&id);
                let rows = self.list_rows();
                self.subscriptions.cursor.clamp(self.subscriptions.items.len(), rows);
            }
            Err(error) => self.error("delete subscription", error),
        }
    }

    pub(crate) fn subscriptions_command(&mut self, command: Command) -> Vec<Effect> {
        let rows = self.list_rows();
        let len = self.subscriptions.items.len();
        if self.subscriptions.cursor.navigate(command, len, rows) {
            return Vec::new();
        }
        match command {
            Command::Refresh => return self.poll_subscriptions(),
            Command::Toggle => {
                if let Some(s) = self.subscriptions.items.get(self.subscriptions.cursor.selected) {
                    return vec![Effect::UpdateSubscription { id: s.subscription_id, enabled: !s.enabled }];
                }
            }
            Command::Delete => {
                if let Some(s) = self.subscriptions.items.get(self.subscriptions.cursor.selected) {
                    let message = format!(
                        "Delete subscription {} ({})? 1 subscription is removed and its pending deliveries are cancelled.",
                        s.subscriber_name, s.callback_url
                    );
                    let op = PendingOp::DeleteSubscription(s.subscription_id);
                    self.popup =
                        Some(Popup::Confirm(Confirm { title: "Delete 1 subscription".to_owned(), message, op }));
                }
            }
            Command::Open => {
                if let Some(s) = self.subscriptions.items.get(self.subscriptions.cursor.selected).cloned() {
                    let title = format!("Subscription {} · {}", s.subscriber_name, s.subscription_id);
                    self.popup =
                        Some(Popup::Detail(Detail::loading(title, DetailKey::Subscription(s.subscription_id))));
                    return vec![Effect::SubscriptionDetail(s)];
                }
            }
            _ => {}
        }
        Vec::new()
    }
}

/// The detail view's sections: the subscription, its dead-letter count and its latest attempts.
pub fn detail_sections(detail: &SubscriptionDetail) -> Vec<(&'static str, String)> {
    vec![
        ("subscription", pretty(detail.subscription.as_ref())),
        ("dead_letters", section(&detail.dead_letters)),
        ("recent_attempts", section(&detail.attempts)),
    ]
}

/// `order.> payment.>`, or `*` for every type.
pub fn patterns(subscription: &Subscription) -> String {
    let mut parts: Vec<String> = subscription.event_types.iter().map(|p| p.to_string()).collect();
    if parts.is_empty() {
        parts.push("*".to_owned());
    }
    parts.extend(subscription.event_sources.iter().map(|s| format!("source={s}")));
    parts.extend(subscription.event_categories.iter().map(|c| format!("category={c}")));
    parts.join(" ")
}

pub fn title(app: &App) -> String {
    let items = &app.subscriptions.items;
    let enabled = items.iter().filter(|s| s.enabled).count() as u64;
    format!("Subscriptions · {} ({} on)", count(items.len() as u64), count(enabled))
}

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let state = &app.subscriptions;
    let block = super::block(title(app));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if state.items.is_empty() {
        let text = match (&state.error, state.loaded) {
            (Some(error), _) => Line::styled(format!("cannot load subscriptions: {error}"), theme::error()),
            (None, false) => Line::styled("loading…", theme::muted()),
            (None, true) => Line::raw(
                "No subscriptions yet. Create one with POST /api/v1/events/subscriptions (see the README), or run `eventdeck demo`.",
            ),
        };
        frame.render_widget(Paragraph::new(text), inner);
        return;
    }
    let rows = usize::from(inner.height.saturating_sub(1));
    let range = state.cursor.window(state.items.len(), rows);
    let start = range.start;
    let table_rows: Vec<Row> = state.items[range]
        .iter()
        .map(|s| {
            let dead = state.dlq_counts.get(&s.subscription_id).copied();
            let on = match (&s.disabled_reason, s.enabled) {
                (_, true) => "on".to_owned(),
                (Some(reason), false) => format!("off: {reason}"),
                (None, false) => "off".to_owned(),
            };
            Row::new(vec![
                Cell::from(s.subscriber_name.clone()),
                Cell::from(s.callback_url.clone()),
                Cell::from(patterns(s)),
                Cell::from(on).style(theme::enabled(s.enabled)),
                Cell::from(dead.map_or("?".to_owned(), count)).style(if dead.unwrap_or(0) > 0 {
                    theme::warning()
                } else {
                    ratatui::style::Style::new()
                }),
            ])
        })
        .collect();
    let widths =
        [Constraint::Min(18), Constraint::Fill(3), Constraint::Fill(2), Constraint::Length(14), Constraint::Length(6)];
    let header = Row::new(["Name", "URL", "Patterns", "State", "DLQ"]).style(theme::header());
    let table = Table::new(table_rows, widths).header(header).row_highlight_style(theme::selected()).column_spacing(1);
    let mut table_state = TableState::default().with_selected(Some(state.cursor.selected.saturating_sub(start)));
    frame.render_stateful_widget(table, inner, &mut table_state);
}
