//! Prints structured log lines (built in `gateway::log`) to the console,
//! where `wrangler tail` and Workers Logs pick them up: one JSON object per
//! line, at the console level matching the line's level.

use std::rc::Rc;

use wasm_bindgen::JsCast;
use worker::Env;

use crate::env;
use gateway::log::{Event, Level, LogLine};
use gateway::redact::Redactor;

pub fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}

thread_local! {
    /// Built once per isolate: bindings and secrets are fixed for the life
    /// of an isolate (a new deployment or secret starts new isolates), and
    /// reading them all costs tens of calls into JS on every line.
    static REDACTOR: std::cell::RefCell<Option<Rc<Redactor>>> =
        const { std::cell::RefCell::new(None) };
    /// `LOG_LEVEL`, read with the redactor.
    static THRESHOLD: std::cell::Cell<Level> = const { std::cell::Cell::new(Level::Info) };
}

/// The redactor for this deployment's secrets: the known secret variables
/// and every binding whose name looks like one.
pub fn redactor(env: &Env) -> Rc<Redactor> {
    if let Some(r) = REDACTOR.with(|c| c.borrow().clone()) {
        return r;
    }
    let names: Vec<String> = js_sys::Object::keys(env.unchecked_ref::<js_sys::Object>())
        .iter()
        .filter_map(|k| k.as_string())
        .collect();
    THRESHOLD.with(|t| t.set(Level::threshold(env::lookup(env, "LOG_LEVEL").as_deref())));
    let r = Rc::new(Redactor::from_vars(
        names.iter().map(String::as_str),
        |name| env::lookup(env, name),
    ));
    REDACTOR.with(|c| *c.borrow_mut() = Some(r.clone()));
    r
}

/// Prints one line, redacted with this deployment's secrets.
pub fn emit(env: &Env, level: Level, event: Event) {
    write(&redactor(env), level, event);
}

/// Prints one line with a redactor already at hand.
pub fn write(redactor: &Redactor, level: Level, event: Event) {
    if level < THRESHOLD.with(|t| t.get()) {
        return;
    }
    let line = LogLine::new(now_ms(), level, event).render(redactor);
    match level {
        Level::Info => worker::console_log!("{line}"),
        Level::Warn => worker::console_warn!("{line}"),
        Level::Error => worker::console_error!("{line}"),
    }
}

/// A free-form notice (`what` names the place, `message` says what happened).
pub fn notice(env: &Env, level: Level, what: &str, message: impl Into<String>) {
    emit(
        env,
        level,
        Event::Notice {
            what: what.into(),
            message: message.into(),
        },
    );
}
