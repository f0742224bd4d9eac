//! CUSTOM (seed 003 §6.13): handlers an application registers by name. A request
//! `[CUSTOM, id, [name, body]]` goes to the handler named, whose answer becomes
//! `[ACK, id, CUSTOM, result]` or `[NACK, id, CUSTOM, reason]`; an unknown name is NACKed.

use super::value::Value;
use crate::wire::PeerId;
use std::collections::BTreeMap;

/// An application's handler: the sender (proven by its session) and the body in, a result or
/// a reason for refusing out.
pub type Handler = Box<dyn FnMut(PeerId, &Value) -> Result<Value, String> + Send>;

/// The registered handlers.
#[derive(Default)]
pub struct CustomHandlers {
    handlers: BTreeMap<String, Handler>,
}

impl CustomHandlers {
    /// Registers `handler` under `name`, replacing one registered before.
    pub fn register(&mut self, name: &str, handler: Handler) {
        self.handlers.insert(name.to_owned(), handler);
    }

    /// Removes the handler named `name`.
    pub fn unregister(&mut self, name: &str) {
        self.handlers.remove(name);
    }

    /// Runs the handler named `name`; `Err` names why (no such handler, or its refusal).
    pub fn call(&mut self, name: &str, from: PeerId, body: &Value) -> Result<Value, String> {
        match self.handlers.get_mut(name) {
            Some(handler) => handler(from, body),
            None => Err("no such handler".to_owned()),
        }
    }
}

impl std::fmt::Debug for CustomHandlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.handlers.keys()).finish()
    }
}
