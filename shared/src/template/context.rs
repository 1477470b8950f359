//! The data templates are evaluated against.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, OnceLock};

use jmespath::{Rcvar, Variable};
use serde_json::Value;

use super::convert::to_variable;
use super::path::{walk, Step, NULL};

/// The evaluation context: the namespaces (`params`, `env`, `step`, `item`, …) of one
/// evaluation site, built once and reused for every template evaluated there.
///
/// Plain paths read the JSON data directly. The JMESPath form of the data is built only when
/// an expression needs the interpreter, at most once per namespace, and shared by every
/// context derived with [`Context::with_namespace`] (so a fan-out over many items converts
/// the step outputs once, not once per item). Cloning is cheap.
#[derive(Clone)]
pub struct Context {
    root: Root,
    var: OnceLock<Rcvar>,
}

#[derive(Clone)]
enum Root {
    /// An object root, split into its namespaces so they can be shared.
    Namespaces(Vec<(String, Arc<Slot>)>),
    /// Any other root (only [`Context::from_value`] and [`Context::new`] produce one).
    Value(Arc<Slot>),
}

/// One value with its JMESPath form, built on first use.
struct Slot {
    value: Value,
    var: OnceLock<Rcvar>,
}

impl Slot {
    fn new(value: Value) -> Arc<Slot> {
        Arc::new(Slot {
            value,
            var: OnceLock::new(),
        })
    }

    fn var(&self) -> &Rcvar {
        self.var.get_or_init(|| to_variable(&self.value))
    }
}

impl Context {
    /// A context whose root is `root`, normally an object holding the namespaces.
    pub fn new(root: &Value) -> Context {
        Context::from_value(root.clone())
    }

    /// Like [`Context::new`], taking ownership of the root instead of copying it.
    pub fn from_value(root: Value) -> Context {
        match root {
            Value::Object(map) => Context::from_slots(
                map.into_iter()
                    .map(|(name, value)| (name, Slot::new(value)))
                    .collect(),
            ),
            other => Context::from_root(Root::Value(Slot::new(other))),
        }
    }

    /// A context made of the given namespaces; a repeated name keeps its last value.
    pub fn from_namespaces<'a>(ns: impl IntoIterator<Item = (&'a str, Value)>) -> Context {
        let mut slots: Vec<(String, Arc<Slot>)> = Vec::new();
        for (name, value) in ns {
            set(&mut slots, name, Slot::new(value));
        }
        Context::from_slots(slots)
    }

    /// This context with one namespace added or replaced (`item`, `item_index`, `approval`);
    /// the other namespaces are shared, not copied.
    pub fn with_namespace(&self, name: &str, value: Value) -> Context {
        let mut slots = match &self.root {
            Root::Namespaces(slots) => slots.clone(),
            // A non-object root has no fields, so nothing of it is visible any more.
            Root::Value(_) => Vec::new(),
        };
        set(&mut slots, name, Slot::new(value));
        Context::from_slots(slots)
    }

    fn from_slots(slots: Vec<(String, Arc<Slot>)>) -> Context {
        Context::from_root(Root::Namespaces(slots))
    }

    fn from_root(root: Root) -> Context {
        Context {
            root,
            var: OnceLock::new(),
        }
    }

    /// The value at a plain path, borrowed unless the path is the whole root.
    pub(super) fn lookup(&self, steps: &[Step]) -> Cow<'_, Value> {
        match (&self.root, steps.split_first()) {
            (Root::Value(slot), _) => Cow::Borrowed(walk(&slot.value, steps)),
            (Root::Namespaces(slots), Some((Step::Field(name), rest))) => Cow::Borrowed(
                slots
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(&NULL, |(_, slot)| walk(&slot.value, rest)),
            ),
            (Root::Namespaces(_), Some((Step::Index(_), _))) => Cow::Borrowed(&NULL),
            (Root::Namespaces(slots), None) => Cow::Owned(Value::Object(
                slots
                    .iter()
                    .map(|(name, slot)| (name.clone(), slot.value.clone()))
                    .collect(),
            )),
        }
    }

    /// Whether the JMESPath form has been built (tests check that plain paths never need it).
    #[cfg(test)]
    pub(super) fn is_converted(&self) -> bool {
        self.var.get().is_some()
    }

    /// The whole context in JMESPath form, built on first use.
    pub(super) fn variable(&self) -> &Rcvar {
        self.var.get_or_init(|| match &self.root {
            Root::Value(slot) => slot.var().clone(),
            Root::Namespaces(slots) => Rcvar::new(Variable::Object(
                slots
                    .iter()
                    .map(|(name, slot)| (name.clone(), slot.var().clone()))
                    .collect(),
            )),
        })
    }
}

fn set(slots: &mut Vec<(String, Arc<Slot>)>, name: &str, slot: Arc<Slot>) {
    match slots.iter_mut().find(|(n, _)| n == name) {
        Some(entry) => entry.1 = slot,
        None => slots.push((name.to_string(), slot)),
    }
}

/// Shows the namespace names only: the data may hold secrets.
impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.root {
            Root::Namespaces(slots) => f
                .debug_struct("Context")
                .field(
                    "namespaces",
                    &slots.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
                )
                .finish(),
            Root::Value(_) => f.debug_struct("Context").finish_non_exhaustive(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(name: &str) -> Step {
        Step::Field(name.into())
    }

    #[test]
    fn namespaces_are_looked_up_and_replaced() {
        let base = Context::from_namespaces([("params", json!({"a": 1})), ("step", json!({}))]);
        let with_item = base.with_namespace("item", json!("x"));
        assert_eq!(*with_item.lookup(&[field("item")]), json!("x"));
        assert_eq!(*with_item.lookup(&[field("params"), field("a")]), json!(1));
        assert_eq!(*base.lookup(&[field("item")]), Value::Null);
        let replaced = with_item.with_namespace("item", json!("y"));
        assert_eq!(*replaced.lookup(&[field("item")]), json!("y"));
        assert_eq!(
            *replaced.lookup(&[]),
            json!({"params": {"a": 1}, "step": {}, "item": "y"})
        );
        assert_eq!(*replaced.lookup(&[Step::Index(0)]), Value::Null);
    }

    #[test]
    fn derived_contexts_share_converted_namespaces() {
        let base = Context::from_namespaces([("step", json!({"a": [1, 2]}))]);
        let one = base.with_namespace("item", json!(1));
        let two = base.with_namespace("item", json!(2));
        let step_of = |c: &Context| c.variable().get_field("step");
        assert!(Rcvar::ptr_eq(&step_of(&one), &step_of(&two)));
    }

    #[test]
    fn non_object_roots() {
        let c = Context::new(&json!([1, 2]));
        assert_eq!(*c.lookup(&[Step::Index(1)]), json!(2));
        assert_eq!(*c.lookup(&[field("a")]), Value::Null);
        assert_eq!(format!("{c:?}"), "Context { .. }");
    }

    #[test]
    fn debug_hides_values() {
        let c = Context::new(&json!({"env": {"KEY": "s3cret"}}));
        assert_eq!(format!("{c:?}"), r#"Context { namespaces: ["env"] }"#);
    }
}
