//! The demo's event catalogue (assets/demo_catalogue.toml): which one-off events and entity streams
//! exist and how their data is made, checked once when it is parsed, and [`Traffic`], which draws
//! events from it.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{Map, Value};

use eventdeck::domain::event::{MAX_NAME_LEN, validate_event_type, validate_stream_id};
use eventdeck::domain::{EventCategory, EventSource, NewEvent};

/// The catalogue built into the binary.
const BUILTIN: &str = include_str!("../../../assets/demo_catalogue.toml");

/// Most entities of one stream in flight at once; keeps the generator's memory bounded.
const MAX_CONCURRENT: usize = 1000;

/// Share of stream picks that open a new entity while fewer than `concurrent` are in flight.
const NEW_ENTITY_SHARE: f64 = 0.35;

#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("the demo catalogue does not parse: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("the demo catalogue is invalid at {place}: {message}")]
    Invalid { place: String, message: String },
}

fn invalid(place: impl Into<String>, message: impl Into<String>) -> CatalogueError {
    CatalogueError::Invalid { place: place.into(), message: message.into() }
}

/// A checked catalogue: every kind and stream can produce events that ingest accepts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalogue {
    users: Vec<String>,
    #[serde(default)]
    tenants: Vec<String>,
    #[serde(default)]
    kinds: Vec<Kind>,
    #[serde(default)]
    streams: Vec<StreamDef>,
}

/// A one-off event.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Kind {
    #[serde(rename = "type")]
    event_type: String,
    source: EventSource,
    category: EventCategory,
    weight: u32,
    /// Share of these events that carry a user.
    #[serde(default)]
    user_share: f64,
    #[serde(default)]
    data: Template,
}

/// Entities whose events form the stream `entity:id`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamDef {
    entity: String,
    first_id: u64,
    source: EventSource,
    category: EventCategory,
    weight: u32,
    /// Entities in flight at once.
    concurrent: usize,
    steps: Vec<Step>,
    #[serde(default)]
    deleted: Option<Deleted>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    data: Template,
}

/// How entities end early: `share` of them get an `ENTITY.deleted` event instead of a later step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Deleted {
    share: f64,
    #[serde(default)]
    data: Template,
}

type Template = BTreeMap<String, Generator>;

/// How one data field gets its value.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Generator {
    /// The event's user id; the field is left out when the event has none.
    User,
    /// The entity's id (streams only).
    Entity,
    Value(Value),
    Pick(Vec<Value>),
    /// An integer in `[low, high]`.
    Range(i64, i64),
    /// An amount with two decimals in `[low, high]`.
    Money(f64, f64),
    /// The prefix followed by 8 random hex digits.
    Id(String),
}

impl Catalogue {
    /// The catalogue shipped in assets/.
    pub fn builtin() -> Result<Self, CatalogueError> {
        Self::parse(BUILTIN)
    }

    pub fn parse(text: &str) -> Result<Self, CatalogueError> {
        let catalogue: Catalogue = toml::from_str(text)?;
        catalogue.validate()?;
        Ok(catalogue)
    }

    fn validate(&self) -> Result<(), CatalogueError> {
        if self.users.is_empty() {
            return Err(invalid("users", "list at least one user id"));
        }
        for (place, name) in self.users.iter().map(|u| ("users", u)).chain(self.tenants.iter().map(|t| ("tenants", t)))
        {
            if name.is_empty() || name.len() > MAX_NAME_LEN {
                return Err(invalid(place, format!("`{name}` must be 1 to {MAX_NAME_LEN} characters")));
            }
        }
        if self.kinds.is_empty() && self.streams.is_empty() {
            return Err(invalid("kinds", "define at least one kind or stream"));
        }
        for (i, kind) in self.kinds.iter().enumerate() {
            let place = format!("kinds[{i}] ({})", kind.event_type);
            validate_event_type("type", &kind.event_type).map_err(|e| invalid(&place, e.to_string()))?;
            check_weight(&place, kind.weight)?;
            check_share(&place, "user_share", kind.user_share)?;
            check_template(&place, &kind.data, false)?;
        }
        for (i, stream) in self.streams.iter().enumerate() {
            let place = format!("streams[{i}] ({})", stream.entity);
            validate_stream_id("entity", &format!("{}:{}", stream.entity, stream.first_id))
                .map_err(|e| invalid(&place, e.to_string()))?;
            check_weight(&place, stream.weight)?;
            if !(1..=MAX_CONCURRENT).contains(&stream.concurrent) {
                return Err(invalid(&place, format!("concurrent must be between 1 and {MAX_CONCURRENT}")));
            }
            if stream.steps.is_empty() {
                return Err(invalid(&place, "list at least one step"));
            }
            for (j, step) in stream.steps.iter().enumerate() {
                let place = format!("{place}.steps[{j}] ({})", step.event_type);
                validate_event_type("type", &step.event_type).map_err(|e| invalid(&place, e.to_string()))?;
                check_template(&place, &step.data, true)?;
            }
            if let Some(deleted) = &stream.deleted {
                let place = format!("{place}.deleted");
                validate_event_type("type", &deleted_type(&stream.entity))
                    .map_err(|e| invalid(&place, e.to_string()))?;
                check_share(&place, "share", deleted.share)?;
                check_template(&place, &deleted.data, true)?;
            }
        }
        Ok(())
    }
}

fn check_weight(place: &str, weight: u32) -> Result<(), CatalogueError> {
    if (1..=1_000_000).contains(&weight) { Ok(()) } else { Err(invalid(place, "weight must be between 1 and 1000000")) }
}

fn check_share(place: &str, name: &str, share: f64) -> Result<(), CatalogueError> {
    if (0.0..=1.0).contains(&share) {
        Ok(())
    } else {
        Err(invalid(place, format!("{name} must be between 0.0 and 1.0")))
    }
}

fn check_template(place: &str, template: &Template, in_stream: bool) -> Result<(), CatalogueError> {
    for (field, generator) in template {
        let place = || format!("{place}.data.{field}");
        let problem = match generator {
            Generator::Entity if !in_stream => Some("\"entity\" is only available in stream steps".to_owned()),
            Generator::Pick(values) if values.is_empty() => Some("pick needs at least one value".to_owned()),
            Generator::Range(low, high) if low > high => Some(format!("range [{low}, {high}] is empty")),
            Generator::Money(low, high) if !(low.is_finite() && high.is_finite() && low <= high) => {
                Some(format!("money [{low}, {high}] is not a range of amounts"))
            }
            Generator::Id(prefix) if prefix.len() > 64 => Some("an id prefix must be at most 64 characters".into()),
            _ => None,
        };
        if let Some(message) = problem {
            return Err(invalid(place(), message));
        }
    }
    Ok(())
}

fn deleted_type(entity: &str) -> String {
    format!("{entity}.deleted")
}

/// xorshift64*: varied enough for synthetic traffic, and no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // xorshift must not start at zero; splitmix spreads small seeds over all bits.
        Self(splitmix64(seed).max(1))
    }

    /// Seeded from the clock: every demo run differs.
    pub fn from_clock() -> Self {
        // A clock before 1970 is harmless here: any seed will do.
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        Self::new(nanos)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `[0, n)`; 0 when `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// A number in `[low, high]`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high.saturating_sub(low).saturating_add(1))
    }

    /// A float in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// One step of splitmix64: a well-mixed 64-bit value from any input.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Generator {
    fn draw(&self, rng: &mut Rng, user: Option<&str>, entity: Option<&str>) -> Option<Value> {
        Some(match self {
            Generator::User => Value::from(user?),
            Generator::Entity => Value::from(entity?),
            Generator::Value(value) => value.clone(),
            Generator::Pick(values) => values.get(rng.below(values.len() as u64) as usize)?.clone(),
            Generator::Range(low, high) => {
                let span = (*high as i128 - *low as i128 + 1) as u128;
                let offset = match u64::try_from(span) {
                    Ok(span) => rng.below(span),
                    Err(_) => rng.next_u64(),
                };
                Value::from((*low as i128 + offset as i128) as i64)
            }
            Generator::Money(low, high) => Value::from(((low + (high - low) * rng.unit()) * 100.0).round() / 100.0),
            Generator::Id(prefix) => Value::from(format!("{prefix}{:08x}", rng.next_u64() as u32)),
        })
    }
}

fn fill(template: &Template, rng: &mut Rng, user: Option<&str>, entity: Option<&str>) -> Map<String, Value> {
    template.iter().filter_map(|(field, generator)| Some((field.clone(), generator.draw(rng, user, entity)?))).collect()
}

/// What a pick of the weighted table leads to.
#[derive(Debug, Clone, Copy)]
enum Source {
    Kind(usize),
    Stream(usize),
}

/// An entity in flight: where it is in its stream's steps.
#[derive(Debug, Clone)]
struct Entity {
    id: String,
    /// Steps emitted so far.
    step: usize,
    /// After this many steps the entity is deleted instead of going on.
    delete_after: Option<usize>,
    user: usize,
    correlation_id: String,
}

/// Draws events from a catalogue: one-off kinds by weight, and entity streams whose entities move
/// through their steps in order.
#[derive(Debug)]
pub struct Traffic {
    catalogue: Catalogue,
    rng: Rng,
    /// Cumulative weights, the last being the total.
    table: Vec<(u64, Source)>,
    /// Entities in flight, per stream.
    open: Vec<Vec<Entity>>,
    next_id: Vec<u64>,
}

impl Traffic {
    pub fn new(catalogue: Catalogue, rng: Rng) -> Self {
        let mut total = 0u64;
        let mut table = Vec::with_capacity(catalogue.kinds.len() + catalogue.streams.len());
        let kinds = catalogue.kinds.iter().enumerate().map(|(i, kind)| (kind.weight, Source::Kind(i)));
        let streams = catalogue.streams.iter().enumerate().map(|(i, stream)| (stream.weight, Source::Stream(i)));
        for (weight, source) in kinds.chain(streams) {
            total += u64::from(weight);
            table.push((total, source));
        }
        let open = catalogue.streams.iter().map(|s| Vec::with_capacity(s.concurrent)).collect();
        let next_id = catalogue.streams.iter().map(|s| s.first_id).collect();
        Self { catalogue, rng, table, open, next_id }
    }

    /// The next event; `None` only for a catalogue with nothing in it, which parsing refuses.
    pub fn next_event(&mut self) -> Option<NewEvent> {
        let total = self.table.last()?.0;
        let roll = self.rng.below(total);
        let (_, source) = self.table.get(self.table.partition_point(|(upto, _)| *upto <= roll))?;
        match *source {
            Source::Kind(i) => self.kind_event(i),
            Source::Stream(i) => self.stream_event(i),
        }
    }

    fn kind_event(&mut self, index: usize) -> Option<NewEvent> {
        let kind = self.catalogue.kinds.get(index)?;
        let user = self.rng.chance(kind.user_share).then(|| self.rng.below(self.catalogue.users.len() as u64) as usize);
        let mut event = self.catalogue.event(&kind.event_type, kind.source, kind.category, user);
        event.data = fill(&kind.data, &mut self.rng, event.user_id.as_deref(), None);
        Some(event)
    }

    /// Moves an entity of stream `index` one step on, opening a new one when there is room.
    fn stream_event(&mut self, index: usize) -> Option<NewEvent> {
        let Self { catalogue, rng, open, next_id, .. } = self;
        let def = catalogue.streams.get(index)?;
        let open = open.get_mut(index)?;
        let start = open.is_empty() || (open.len() < def.concurrent && rng.chance(NEW_ENTITY_SHARE));
        let position = if start {
            let id = next_id.get_mut(index)?;
            let delete_after = match &def.deleted {
                Some(deleted) if rng.chance(deleted.share) => Some(rng.between(1, def.steps.len() as u64) as usize),
                _ => None,
            };
            open.push(Entity {
                id: id.to_string(),
                step: 0,
                delete_after,
                user: rng.below(catalogue.users.len() as u64) as usize,
                correlation_id: format!("corr_{:012x}", rng.next_u64() >> 16),
            });
            *id += 1;
            open.len() - 1
        } else {
            rng.below(open.len() as u64) as usize
        };
        let entity = open.get_mut(position)?;
        let deleting = entity.delete_after == Some(entity.step);
        let (event_type, template) = match (&def.deleted, deleting) {
            (Some(deleted), true) => (deleted_type(&def.entity), &deleted.data),
            _ => {
                let step = def.steps.get(entity.step)?;
                (step.event_type.clone(), &step.data)
            }
        };
        let mut event = catalogue.event(&event_type, def.source, def.category, Some(entity.user));
        event.data = fill(template, rng, event.user_id.as_deref(), Some(&entity.id));
        event.stream_id = Some(format!("{}:{}", def.entity, entity.id));
        event.correlation_id = Some(entity.correlation_id.clone());
        entity.step += 1;
        let finished = deleting || (entity.step == def.steps.len() && entity.delete_after != Some(entity.step));
        if finished {
            open.swap_remove(position);
        }
        Some(event)
    }

    #[cfg(test)]
    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }
}

impl Catalogue {
    /// An event with the fields every demo event shares; `user` indexes `users`.
    fn event(&self, event_type: &str, source: EventSource, category: EventCategory, user: Option<usize>) -> NewEvent {
        let mut event = NewEvent::new(event_type);
        event.event_source = source;
        event.event_category = category;
        if let Some(user) = user {
            event.user_id = self.users.get(user).cloned();
            if !self.tenants.is_empty() {
                event.tenant_id = self.tenants.get(user % self.tenants.len()).cloned();
            }
        }
        event.metadata = Map::from_iter([("generator".to_owned(), Value::from("eventdeck demo"))]);
        event
    }

    /// Every event type the catalogue can produce, deletions included.
    #[cfg(test)]
    pub fn event_types(&self) -> Vec<String> {
        let kinds = self.kinds.iter().map(|k| k.event_type.clone());
        let steps = self.streams.iter().flat_map(|s| s.steps.iter().map(|step| step.event_type.clone()));
        let deleted = self.streams.iter().filter(|s| s.deleted.is_some()).map(|s| deleted_type(&s.entity));
        kinds.chain(steps).chain(deleted).collect()
    }

    /// The step types of the stream of `entity` in order, and its deletion type if it has one.
    #[cfg(test)]
    pub fn lifecycle(&self, entity: &str) -> Option<(Vec<String>, Option<String>)> {
        let stream = self.streams.iter().find(|s| s.entity == entity)?;
        let steps = stream.steps.iter().map(|s| s.event_type.clone()).collect();
        Some((steps, stream.deleted.as_ref().map(|_| deleted_type(entity))))
    }

    #[cfg(test)]
    pub fn users(&self) -> &[String] {
        &self.users
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;

    const SMALL: &str = r#"
users = ["u1", "u2"]
tenants = ["t1"]

[[kinds]]
type = "ping.sent"
source = "system"
category = "system"
weight = 1
[kinds.data]
n = { range = [-3, 3] }
price = { money = [1, 2] }
who = "user"
tag = { id = "x_" }

[[streams]]
entity = "order"
first_id = 7
source = "backend"
category = "order"
weight = 3
concurrent = 2
[[streams.steps]]
type = "order.created"
[streams.steps.data]
id = "entity"
[[streams.steps]]
type = "order.paid"
[streams.deleted]
share = 0.5
"#;

    fn with(replace: &str, by: &str) -> Result<Catalogue, CatalogueError> {
        assert!(SMALL.contains(replace), "{replace:?} not in the test catalogue");
        Catalogue::parse(&SMALL.replacen(replace, by, 1))
    }

    #[test]
    fn builtin_catalogue_is_realistic_in_size() {
        let catalogue = Catalogue::builtin().unwrap();
        assert_eq!(catalogue.users.len(), 20);
        assert!(catalogue.kinds.len() >= 15, "{} kinds", catalogue.kinds.len());
        assert!(catalogue.streams.iter().any(|s| s.entity == "order" && s.deleted.is_some()));
        let sources: HashSet<_> = catalogue.kinds.iter().map(|k| k.source).collect();
        let categories: HashSet<_> = catalogue.kinds.iter().map(|k| k.category).collect();
        assert!(sources.len() >= 5 && categories.len() >= 10, "{sources:?} {categories:?}");
    }

    #[test]
    fn invalid_catalogues_name_the_place() {
        let cases = [
            with("type = \"ping.sent\"", "type = \"ping..sent\""),
            with("weight = 1", "weight = 0"),
            with("n = { range = [-3, 3] }", "n = { range = [3, -3] }"),
            with("n = { range = [-3, 3] }", "n = { pick = [] }"),
            with("n = { range = [-3, 3] }", "n = \"entity\""),
            with("concurrent = 2", "concurrent = 0"),
            with("share = 0.5", "share = 1.5"),
        ];
        let places =
            ["kinds[0]", "kinds[0]", "kinds[0] (ping.sent).data.n", "data.n", "data.n", "streams[0]", "deleted"];
        for (result, place) in cases.into_iter().zip(places) {
            let message = result.unwrap_err().to_string();
            assert!(message.contains(place), "{message:?} should name {place}");
        }
        let unknown_source = with("source = \"system\"", "source = \"mainframe\"").unwrap_err();
        assert!(matches!(unknown_source, CatalogueError::Parse(_)), "{unknown_source}");
        assert!(with("[[kinds]]", "[[kind]]").is_err(), "unknown keys are refused");
        assert!(Catalogue::parse("users = []").is_err());
    }

    #[test]
    fn generators_stay_in_their_ranges() {
        let mut traffic = Traffic::new(Catalogue::parse(SMALL).unwrap(), Rng::new(1));
        let mut seen_n = HashSet::new();
        for _ in 0..400 {
            let event = traffic.next_event().unwrap();
            if event.event_type != "ping.sent" {
                continue;
            }
            let n = event.data["n"].as_i64().unwrap();
            assert!((-3..=3).contains(&n));
            seen_n.insert(n);
            let price = event.data["price"].as_f64().unwrap();
            assert!((1.0..=2.0).contains(&price) && ((price * 100.0).round() - price * 100.0).abs() < 1e-9);
            let tag = event.data["tag"].as_str().unwrap();
            assert!(tag.len() == 10 && tag.starts_with("x_"), "{tag}");
            // Kinds here carry no user, so the "user" field is left out.
            assert!(event.user_id.is_none() && !event.data.contains_key("who"));
        }
        assert_eq!(seen_n.len(), 7, "every value of the range comes up: {seen_n:?}");
    }

    #[test]
    fn entities_walk_their_steps_in_order_and_some_are_deleted() {
        let mut traffic = Traffic::new(Catalogue::parse(SMALL).unwrap(), Rng::new(2));
        let mut streams: HashMap<String, Vec<NewEvent>> = HashMap::new();
        for _ in 0..2000 {
            let event = traffic.next_event().unwrap();
            if let Some(stream) = event.stream_id.clone() {
                streams.entry(stream).or_default().push(event);
            }
        }
        assert!(traffic.open[0].len() <= 2, "at most `concurrent` entities in flight");
        let (mut completed, mut deleted) = (0, 0);
        for (stream, events) in &streams {
            let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
            let ok = matches!(
                types.as_slice(),
                ["order.created"]
                    | ["order.created", "order.paid"]
                    | ["order.created", "order.deleted"]
                    | ["order.created", "order.paid", "order.deleted"]
            );
            assert!(ok, "{stream}: {types:?}");
            let id = stream.strip_prefix("order:").unwrap();
            assert!(id.parse::<u64>().unwrap() >= 7);
            assert_eq!(events[0].data["id"], id, "the entity generator gives the entity id");
            assert!(events.iter().all(|e| e.user_id == events[0].user_id && e.user_id.is_some()));
            assert!(events.iter().all(|e| e.correlation_id == events[0].correlation_id));
            assert!(events.iter().all(|e| e.tenant_id.as_deref() == Some("t1")));
            completed += usize::from(types == ["order.created", "order.paid"]);
            deleted += usize::from(types.last() == Some(&"order.deleted"));
        }
        assert!(completed > 50 && deleted > 50, "{completed} completed, {deleted} deleted");
    }
}
