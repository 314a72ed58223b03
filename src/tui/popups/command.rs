//! The `:` command line, in the k9s manner: one line at the bottom, Tab completion, ↑/↓ through the
//! commands run before, and the closest command suggested for one it does not know. Parsing is pure;
//! `App` runs what it parses.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};

use super::filter::{FieldKey, FilterValues};
use crate::domain::{EventCategory, EventSource, EventStatus, Timestamp};
use crate::tui::action::TextEdit;
use crate::tui::panes::Pane;
use crate::tui::theme;

/// Commands kept for ↑/↓.
pub const HISTORY_LIMIT: usize = 100;

/// One command: its name, what it takes, what it does (for completion, the help and the README).
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub name: &'static str,
    pub args: &'static str,
    pub help: &'static str,
}

const fn spec(name: &'static str, args: &'static str, help: &'static str) -> Spec {
    Spec { name, args, help }
}

pub const COMMANDS: &[Spec] = &[
    spec("live", "", "the Live pane"),
    spec(
        "history",
        "[type=P] [source=S] [category=C] [status=S] [user=U] [stream=ID] [since=T] [until=T] [text=X]",
        "History with this filter (times: 15m, 2h, 7d ago, a day, or RFC 3339)",
    ),
    spec("stats", "", "the Statistics pane"),
    spec("dlq", "[groups|entries]", "the DLQ pane, as entries or grouped by cause"),
    spec("processors", "", "the Processors pane"),
    spec("subscriptions", "", "the Subscriptions pane"),
    spec("streams", "[PREFIX]", "the Streams pane: streams whose id starts with PREFIX (order:, users:u1)"),
    spec("cluster", "", "the Cluster pane: the instances sharing the store"),
    spec(
        "replay",
        "[filter as :history] [to=NAME]",
        "replay what the filter selects, to one subscription or processor: dry run first, then confirm",
    ),
    spec("retry", "group", "retry the selected DLQ group (asks first with the count)"),
    spec("discard", "group", "discard the selected DLQ group (asks first with the count)"),
    spec("export", "history FILE.jsonl", "write the events of the History filter to a file, one JSON a line"),
    spec("help", "", "the help overlay"),
    spec("q", "", "quit (also :quit)"),
    spec("quit", "", ""),
];

/// The filter keys `:history` and `:replay` take, and the form field each fills.
const FILTER_KEYS: &[(&str, FieldKey)] = &[
    ("type", FieldKey::Type),
    ("source", FieldKey::Source),
    ("category", FieldKey::Category),
    ("status", FieldKey::Status),
    ("user", FieldKey::User),
    ("stream", FieldKey::Stream),
    ("since", FieldKey::From),
    ("from", FieldKey::From),
    ("until", FieldKey::To),
    ("text", FieldKey::Text),
];

/// What a one-line prompt (not a command) is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptFor {
    /// Streams `/`: the id prefix to list.
    StreamPrefix,
    /// Streams `t`: the time to jump to.
    StreamTime,
}

/// A question answered on one line at the bottom, edited like the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub purpose: PromptFor,
    pub title: String,
    pub line: CommandLine,
}

/// What a command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Run {
    Pane(Pane),
    History(FilterValues),
    Dlq {
        groups: Option<bool>,
    },
    /// A filter and the name of a subscription or processor (`None`: everything that matches).
    Replay {
        values: FilterValues,
        target: Option<String>,
    },
    RetryGroup,
    DiscardGroup,
    ExportHistory {
        path: String,
    },
    Streams {
        prefix: String,
    },
    Help,
    Quit,
}

/// Names the console knows, for completing values.
#[derive(Debug, Clone, Default)]
pub struct Vocabulary {
    /// Subscription and processor names (`to=`).
    pub targets: Vec<String>,
    /// Event types seen in the statistics (`type=`).
    pub event_types: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandLine {
    pub input: String,
    /// In characters.
    pub cursor: usize,
    /// Why the last Enter was refused (with the closest command, when it was an unknown one).
    pub error: Option<String>,
    /// Where ↑/↓ stands in the history: `Some(i)` shows the i-th newest; `None` the line being typed.
    pub recall: Option<usize>,
    /// The line being typed before ↑ was pressed.
    pub draft: String,
    /// Candidates of the last Tab and which of them is in the line, so Tab again cycles.
    pub completions: Vec<String>,
    pub completion: usize,
    /// Where (in bytes) the word being completed starts.
    pub completion_start: usize,
}

/// What an edit asks of the command line's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineOutcome {
    Editing,
    Submit,
    Cancel,
}

impl CommandLine {
    fn byte(&self, chars: usize) -> usize {
        self.input.char_indices().nth(chars).map_or(self.input.len(), |(i, _)| i)
    }

    fn set(&mut self, text: String) {
        self.cursor = text.chars().count();
        self.input = text;
    }

    /// Applies one key; `history` is newest first.
    pub fn edit(&mut self, edit: TextEdit, history: &[String], vocabulary: &Vocabulary) -> LineOutcome {
        if !matches!(edit, TextEdit::Complete) {
            self.completions.clear();
        }
        if !matches!(edit, TextEdit::Earlier | TextEdit::Later | TextEdit::Submit) {
            self.recall = None;
        }
        match edit {
            TextEdit::Char(c) => {
                let at = self.byte(self.cursor);
                self.input.insert(at, c);
                self.cursor += 1;
                self.error = None;
            }
            TextEdit::Backspace if self.cursor > 0 => {
                let at = self.byte(self.cursor - 1);
                self.input.remove(at);
                self.cursor -= 1;
                self.error = None;
            }
            TextEdit::Backspace if self.input.is_empty() => return LineOutcome::Cancel,
            TextEdit::Delete if self.cursor < self.input.chars().count() => {
                let at = self.byte(self.cursor);
                self.input.remove(at);
            }
            TextEdit::Backspace | TextEdit::Delete => {}
            TextEdit::Left => self.cursor = self.cursor.saturating_sub(1),
            TextEdit::Right => self.cursor = (self.cursor + 1).min(self.input.chars().count()),
            TextEdit::Home => self.cursor = 0,
            TextEdit::End => self.cursor = self.input.chars().count(),
            TextEdit::Clear => self.set(String::new()),
            TextEdit::Complete | TextEdit::NextField => self.complete(vocabulary),
            TextEdit::PrevField => {}
            TextEdit::Earlier => {
                let next = self.recall.map_or(0, |i| i + 1);
                if let Some(line) = history.get(next) {
                    if self.recall.is_none() {
                        self.draft = self.input.clone();
                    }
                    self.recall = Some(next);
                    self.set(line.clone());
                }
            }
            TextEdit::Later => match self.recall {
                Some(0) => {
                    self.recall = None;
                    let draft = std::mem::take(&mut self.draft);
                    self.set(draft);
                }
                Some(i) => {
                    self.recall = Some(i - 1);
                    self.set(history.get(i - 1).cloned().unwrap_or_default());
                }
                None => {}
            },
            TextEdit::Submit => return LineOutcome::Submit,
            TextEdit::Cancel => return LineOutcome::Cancel,
        }
        LineOutcome::Editing
    }

    /// Tab: completes the word before the cursor; Tab again puts the next candidate in its place.
    fn complete(&mut self, vocabulary: &Vocabulary) {
        let at = self.byte(self.cursor);
        let before = &self.input[..at];
        let start = if self.completions.len() > 1 {
            self.completion = (self.completion + 1) % self.completions.len();
            self.completion_start.min(at)
        } else {
            let start = before.rfind(' ').map_or(0, |i| i + 1);
            let word = &before[start..];
            let first = before[..start].split_whitespace().next();
            self.completions = candidates(first, word, vocabulary);
            self.completion = 0;
            self.completion_start = start;
            if self.completions.is_empty() {
                return;
            }
            start
        };
        let chosen = self.completions[self.completion].clone();
        let rest = self.input[at..].to_owned();
        let mut line = self.input[..start].to_owned();
        line.push_str(&chosen);
        let cursor = line.chars().count();
        line.push_str(&rest);
        self.input = line;
        self.cursor = cursor;
    }
}

/// What can stand for `word`: a command name when it is the first word, else an argument of
/// `command` (`key=` names, then values after `=`). A candidate that ends a word carries its space.
pub fn candidates(command: Option<&str>, word: &str, vocabulary: &Vocabulary) -> Vec<String> {
    let Some(command) = command else {
        return COMMANDS
            .iter()
            .filter(|c| !c.help.is_empty() && c.name.starts_with(word))
            .map(|c| format!("{} ", c.name))
            .collect();
    };
    let words: Vec<String> = match resolve(command).map(|c| c.name) {
        Ok("history" | "replay") => match word.split_once('=') {
            None => {
                let mut keys: Vec<String> = FILTER_KEYS.iter().map(|(k, _)| format!("{k}=")).collect();
                if resolve(command).map(|c| c.name) == Ok("replay") {
                    keys.push("to=".to_owned());
                }
                keys
            }
            Some((key, _)) => {
                let values: Vec<String> = match key {
                    "to" => vocabulary.targets.clone(),
                    "type" => vocabulary.event_types.clone(),
                    "source" => EventSource::ALL.iter().map(|v| v.as_str().to_owned()).collect(),
                    "category" => EventCategory::ALL.iter().map(|v| v.as_str().to_owned()).collect(),
                    "status" => EventStatus::ALL.iter().map(|v| v.as_str().to_owned()).collect(),
                    "since" | "from" | "until" => ["15m", "1h", "2h", "1d", "7d"].map(str::to_owned).to_vec(),
                    _ => Vec::new(),
                };
                values.into_iter().map(|v| format!("{key}={v} ")).collect()
            }
        },
        Ok("dlq") => vec!["groups ".to_owned(), "entries ".to_owned()],
        Ok("retry" | "discard") => vec!["group ".to_owned()],
        Ok("export") => vec!["history ".to_owned()],
        _ => Vec::new(),
    };
    words.into_iter().filter(|w| w.starts_with(word)).collect()
}

/// The command a name means: its full name, or a prefix only one command starts with.
pub fn resolve(name: &str) -> Result<&'static Spec, String> {
    if let Some(exact) = COMMANDS.iter().find(|c| c.name == name) {
        return Ok(exact);
    }
    let starting: Vec<&Spec> = COMMANDS.iter().filter(|c| !c.help.is_empty() && c.name.starts_with(name)).collect();
    match starting.as_slice() {
        [one] => Ok(one),
        [] => {
            let closest = COMMANDS
                .iter()
                .filter(|c| !c.help.is_empty())
                .min_by_key(|c| distance(c.name, name))
                .map_or("help", |c| c.name);
            Err(format!("unknown command `:{name}`; did you mean `:{closest}`? (Tab completes, :help lists them)"))
        }
        many => Err(format!(
            "`:{name}` could be {}; type more of it",
            many.iter().map(|c| format!(":{}", c.name)).collect::<Vec<_>>().join(" or ")
        )),
    }
}

/// Edits (insert, delete, substitute) that turn `a` into `b`.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Parses a command line (without its `:`). The error says what is wrong and what is accepted.
pub fn parse(line: &str, now: Timestamp) -> Result<Run, String> {
    let mut words = line.split_whitespace();
    let Some(name) = words.next() else { return Err("type a command: Tab lists them".to_owned()) };
    let name = name.trim_start_matches(':');
    let spec = resolve(name)?;
    let args: Vec<&str> = words.collect();
    let no_args = |run: Run| {
        if args.is_empty() { Ok(run) } else { Err(format!("`:{}` takes nothing, not `{}`", spec.name, args.join(" "))) }
    };
    match spec.name {
        "live" => no_args(Run::Pane(Pane::Live)),
        "stats" => no_args(Run::Pane(Pane::Statistics)),
        "processors" => no_args(Run::Pane(Pane::Processors)),
        "subscriptions" => no_args(Run::Pane(Pane::Subscriptions)),
        "cluster" => no_args(Run::Pane(Pane::Cluster)),
        "streams" => match args.as_slice() {
            [] => Ok(Run::Streams { prefix: String::new() }),
            [prefix] => Ok(Run::Streams { prefix: (*prefix).to_owned() }),
            _ => Err("`:streams PREFIX` takes one prefix (stream ids have no spaces)".to_owned()),
        },
        "help" => no_args(Run::Help),
        "q" | "quit" => no_args(Run::Quit),
        "history" => Ok(Run::History(filter(&args, now, false)?.0)),
        "replay" => {
            let (values, target) = filter(&args, now, true)?;
            Ok(Run::Replay { values, target })
        }
        "dlq" => match args.as_slice() {
            [] => Ok(Run::Dlq { groups: None }),
            ["groups" | "group" | "g"] => Ok(Run::Dlq { groups: Some(true) }),
            ["entries" | "e"] => Ok(Run::Dlq { groups: Some(false) }),
            _ => Err(format!("`:dlq` takes `groups` or `entries`, not `{}`", args.join(" "))),
        },
        "retry" | "discard" => match args.as_slice() {
            ["group"] if spec.name == "retry" => Ok(Run::RetryGroup),
            ["group"] => Ok(Run::DiscardGroup),
            _ => Err(format!(
                "`:{} group` acts on the group selected in the DLQ's groups (`:dlq groups`); for entries use the DLQ's keys",
                spec.name
            )),
        },
        "export" => match args.as_slice() {
            ["history", path] => Ok(Run::ExportHistory { path: (*path).to_owned() }),
            _ => Err("`:export history FILE.jsonl` writes the events of the History filter to FILE".to_owned()),
        },
        other => Err(format!("`:{other}` is not available")),
    }
}

/// `key=value` words into filter values (checked by parsing them), and `to=` when `with_target`.
fn filter(args: &[&str], now: Timestamp, with_target: bool) -> Result<(FilterValues, Option<String>), String> {
    let mut values = FilterValues::default();
    let mut target = None;
    for arg in args {
        let Some((key, value)) = arg.split_once('=') else {
            return Err(format!("`{arg}` is not key=value; keys: {}", keys(with_target)));
        };
        if key == "to" && with_target {
            target = Some(value.to_owned());
            continue;
        }
        let Some((_, field)) = FILTER_KEYS.iter().find(|(k, _)| *k == key) else {
            return Err(format!("unknown key `{key}`; keys: {}", keys(with_target)));
        };
        values.set(*field, value);
    }
    values.parse(now)?;
    Ok((values, target))
}

fn keys(with_target: bool) -> String {
    let mut keys: Vec<&str> = FILTER_KEYS.iter().map(|(k, _)| *k).collect();
    if with_target {
        keys.push("to");
    }
    keys.join(", ")
}

/// A prompt: its question, then the line.
pub fn render_prompt(frame: &mut Frame, area: Rect, prompt: &Prompt) {
    if area.height < 3 {
        return;
    }
    let rect = Rect { x: area.x, y: area.y + area.height - 2, width: area.width, height: 2 };
    frame.render_widget(Clear, rect);
    let info = match &prompt.line.error {
        Some(error) => Line::styled(error.clone(), theme::error()),
        None => Line::from(vec![
            Span::styled(prompt.title.clone(), theme::key()),
            Span::styled("  · Enter · Esc", theme::muted()),
        ]),
    };
    frame.render_widget(Paragraph::new(vec![info, input_line(&prompt.line, "> ")]).style(theme::status_bar()), rect);
}

fn input_line(line: &CommandLine, lead: &'static str) -> Line<'static> {
    let chars: Vec<char> = line.input.chars().collect();
    let at = line.cursor.min(chars.len());
    let before: String = chars[..at].iter().collect();
    let mut rest = chars[at..].iter();
    let under = rest.next().map_or(" ".to_owned(), |c| c.to_string());
    Line::from(vec![
        Span::styled(lead, theme::key()),
        Span::raw(before),
        Span::styled(under, theme::selected()),
        Span::raw(rest.collect::<String>()),
    ])
}

/// Two rows at the bottom: the candidates, the error or the command's usage; then the line itself.
pub fn render(frame: &mut Frame, area: Rect, line: &CommandLine) {
    if area.height < 3 {
        return;
    }
    let rect = Rect { x: area.x, y: area.y + area.height - 2, width: area.width, height: 2 };
    frame.render_widget(Clear, rect);
    let info = if let Some(error) = &line.error {
        Line::styled(error.clone(), theme::error())
    } else if line.completions.len() > 1 {
        let spans: Vec<Span> = line
            .completions
            .iter()
            .enumerate()
            .flat_map(|(i, c)| {
                let style = if i == line.completion { theme::selected() } else { theme::muted() };
                [Span::styled(c.trim_end().to_owned(), style), Span::raw("  ")]
            })
            .collect();
        Line::from(spans)
    } else {
        let first = line.input.split_whitespace().next().unwrap_or_default();
        match resolve(first.trim_start_matches(':')) {
            Ok(spec) if !first.is_empty() => Line::from(vec![
                Span::styled(format!(":{} {}", spec.name, spec.args), theme::key()),
                Span::styled(format!("  {}", spec.help), theme::muted()),
            ]),
            _ => Line::styled("Tab completes · ↑/↓ earlier commands · Enter runs · Esc closes", theme::muted()),
        }
    };
    let chars: Vec<char> = line.input.chars().collect();
    let (before, rest): (String, String) = (
        chars[..line.cursor.min(chars.len())].iter().collect(),
        chars[line.cursor.min(chars.len())..].iter().collect(),
    );
    let mut under = rest.chars();
    let at = under.next().map_or(" ".to_owned(), String::from);
    let prompt = Line::from(vec![
        Span::styled(":", theme::key()),
        Span::raw(before),
        Span::styled(at, theme::selected()),
        Span::raw(under.collect::<String>()),
    ]);
    frame.render_widget(Paragraph::new(vec![info, prompt]).style(theme::status_bar()), rect);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_edits() {
        assert_eq!(distance("dlq", "dlq"), 0);
        assert_eq!(distance("dlq", "dql"), 2);
        assert_eq!(distance("history", "histroy"), 2);
        assert_eq!(distance("", "abc"), 3);
    }

    #[test]
    fn names_resolve_by_prefix_and_unknown_ones_get_the_closest() {
        assert_eq!(resolve("hist").unwrap().name, "history");
        assert_eq!(resolve("q").unwrap().name, "q");
        assert!(resolve("re").unwrap_err().contains(":replay or :retry"));
        assert!(resolve("dql").unwrap_err().contains("did you mean `:dlq`"));
        assert!(resolve("histroy").unwrap_err().contains("did you mean `:history`"));
    }
}
