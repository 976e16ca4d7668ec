//! The order app's wire contract as data: `testing/contract/cases.toml` (its header says what a case
//! holds), read here for the Rust runners (host/tests/order_app.rs, bench/src/monolith.rs). Each
//! runner sends the requests its own way; [`Run::step`] (async) or [`Run::step_blocking`] asks
//! until the answer holds, so the three runners (the third is deploy/shim/shim_check.py) share the
//! cases, what they mean and how long an `eventually` step is asked again.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

/// The table's text, compiled in (cargo rebuilds the runners when it changes).
pub const CASES_TOML: &str = include_str!("../cases.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    case: Vec<Case>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    /// The app must store nothing while answering it.
    #[serde(default)]
    pub stores_nothing: bool,
    pub step: Vec<Step>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub request: Request,
    pub expect: Expect,
    /// Order ids to take from the answer: name -> JSON pointer.
    #[serde(default)]
    pub capture: BTreeMap<String, String>,
    /// A networked shape may need time to hold it (the composed app holds it at once).
    #[serde(default)]
    pub eventually: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub status: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub error: Option<String>,
    #[serde(default)]
    pub body: BTreeMap<String, toml::Value>,
    #[serde(default)]
    pub empty_body: bool,
}

/// Every case of the table. Panics on a table that does not parse: that is a bug of the table,
/// and every runner should stop at it.
pub fn cases() -> Vec<Case> {
    let table: Table = toml::from_str(CASES_TOML)
        .unwrap_or_else(|e| panic!("testing/contract/cases.toml does not parse: {e}"));
    table.case
}

/// A request ready to send: every `{...}` filled in.
#[derive(Clone, Debug)]
pub struct Sent {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// An answer as a runner received it.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    /// Names in any case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One case in progress: the values its steps captured so far.
pub struct Run {
    vars: HashMap<String, String>,
}

impl Run {
    /// `key` is what `{key}` stands for: an idempotency key no earlier run of this app used.
    pub fn new(key: &str) -> Run {
        Run {
            vars: HashMap::from([("key".to_string(), key.to_string())]),
        }
    }

    pub fn request(&self, step: &Step) -> Sent {
        let r = &step.request;
        Sent {
            method: r.method.clone(),
            path: self.fill(&r.path),
            headers: (r.headers.iter())
                .map(|(n, v)| (n.clone(), self.fill(v)))
                .collect(),
            body: self.fill(&r.body).into_bytes(),
        }
    }

    /// Sends the step's request with `send` until its answer holds: an `eventually` step is asked
    /// again after each `pause` until `patience` has passed since the first ask, any other step
    /// once. The answer that held, or why the last one broke the contract (a [`Broken`], which `E`
    /// must carry), or the error `send` gave.
    pub async fn step<E, Sending, Pausing>(
        &mut self,
        step: &Step,
        patience: Duration,
        mut send: impl FnMut(Sent) -> Sending,
        mut pause: impl FnMut() -> Pausing,
    ) -> Result<Answer, E>
    where
        E: From<Broken>,
        Sending: Future<Output = Result<Answer, E>>,
        Pausing: Future<Output = ()>,
    {
        let deadline = Instant::now() + patience;
        loop {
            let answer = send(self.request(step)).await?;
            match self.check(step, &answer) {
                Ok(()) => return Ok(answer),
                Err(_) if step.eventually && Instant::now() < deadline => pause().await,
                Err(broken) => return Err(Broken(broken).into()),
            }
        }
    }

    /// [`Run::step`] for a runner that sends and pauses by blocking its thread (no executor: every
    /// await inside is ready at once).
    pub fn step_blocking<E: From<Broken>>(
        &mut self,
        step: &Step,
        patience: Duration,
        mut send: impl FnMut(&Sent) -> Result<Answer, E>,
        pause: Duration,
    ) -> Result<Answer, E> {
        let stepped = self.step(
            step,
            patience,
            |sent| std::future::ready(send(&sent)),
            || {
                std::thread::sleep(pause);
                std::future::ready(())
            },
        );
        match pin!(stepped).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(result) => result,
            Poll::Pending => unreachable!("a blocking send and pause never wait on a future"),
        }
    }

    /// Checks `answer` against the step and takes its captures; the error says what differs.
    pub fn check(&mut self, step: &Step, answer: &Answer) -> Result<(), String> {
        let e = &step.expect;
        let text = String::from_utf8_lossy(&answer.body);
        let shown: String = text.chars().take(300).collect();
        let what = format!(
            "{} {} -> {} {shown:?}",
            step.request.method,
            self.fill(&step.request.path),
            answer.status
        );
        if answer.status != e.status {
            return Err(format!("{what}: want status {}", e.status));
        }
        let json = if e.empty_body {
            if !answer.body.is_empty() {
                return Err(format!("{what}: want no body"));
            }
            Value::Null
        } else {
            if answer.header("content-type") != Some("application/json") {
                return Err(format!(
                    "{what}: content-type {:?}, want application/json",
                    answer.header("content-type")
                ));
            }
            serde_json::from_slice(&answer.body).map_err(|e| format!("{what}: not JSON: {e}"))?
        };
        for (name, pointer) in &step.capture {
            let id = json.pointer(pointer).and_then(Value::as_str).unwrap_or("");
            if !is_order_id(id) {
                return Err(format!(
                    "{what}: {pointer} {id:?} is not a lowercase UUID v4"
                ));
            }
            self.vars.insert(name.clone(), id.to_string());
        }
        for (name, value) in &e.headers {
            let want = self.fill(value);
            if answer.header(name) != Some(want.as_str()) {
                return Err(format!(
                    "{what}: header {name} {:?}, want {want:?}",
                    answer.header(name)
                ));
            }
        }
        if let Some(needle) = &e.error {
            let message = json["error"].as_str().unwrap_or_default().to_lowercase();
            if !message.contains(&needle.to_lowercase()) {
                return Err(format!("{what}: want an error that mentions {needle:?}"));
            }
        }
        for (pointer, value) in &e.body {
            let want = self.fill_json(serde_json::to_value(value).expect("TOML is JSON"));
            if json.pointer(pointer) != Some(&want) {
                return Err(format!("{what}: {pointer} want {want}"));
            }
        }
        Ok(())
    }

    fn fill_json(&self, value: Value) -> Value {
        match value {
            Value::String(s) => Value::String(self.fill(&s)),
            other => other,
        }
    }

    /// `{name}`, `{name:upper}` and `{c*N}` filled in.
    pub fn fill(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find('{') {
            let Some(len) = rest[start..].find('}') else {
                break;
            };
            let inner = &rest[start + 1..start + len];
            out.push_str(&rest[..start]);
            match self.expand(inner) {
                Some(value) => {
                    out.push_str(&value);
                    rest = &rest[start + len + 1..];
                }
                // Not a placeholder: keep the brace, look again after it.
                None => {
                    out.push('{');
                    rest = &rest[start + 1..];
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// None leaves the braces as they are (JSON in a body has braces of its own).
    fn expand(&self, inner: &str) -> Option<String> {
        if let Some((c, n)) = inner.split_once('*') {
            let mut chars = c.chars();
            if let (Some(c), None, Ok(n)) = (chars.next(), chars.next(), n.parse::<usize>()) {
                return Some(c.to_string().repeat(n));
            }
        }
        match inner.split_once(':') {
            Some((name, "upper")) => self.vars.get(name).map(|v| v.to_uppercase()),
            _ => self.vars.get(inner).cloned(),
        }
    }
}

/// An answer that breaks the contract: what differs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broken(pub String);

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Broken {}

/// An order id as the app hands it out: a UUID v4 in lowercase, hyphenated form.
pub fn is_order_id(id: &str) -> bool {
    uuid::Uuid::try_parse(id).is_ok_and(|u| {
        u.get_version() == Some(uuid::Version::Random) && u.hyphenated().to_string() == id
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_parses_and_every_case_has_steps() {
        let cases = cases();
        assert!(cases.len() > 20);
        for case in &cases {
            assert!(!case.step.is_empty(), "{}", case.name);
        }
    }

    #[test]
    fn fills_captures_keys_and_repeats_and_leaves_json_braces() {
        let mut run = Run::new("k-1");
        run.vars.insert("id".into(), "ab-c".into());
        assert_eq!(run.fill("/order/{id}"), "/order/ab-c");
        assert_eq!(run.fill("{id:upper}|{key}"), "AB-C|k-1");
        assert_eq!(run.fill(r#"{"details": "{x*3}"}"#), r#"{"details": "xxx"}"#);
        assert_eq!(run.fill("{not json"), "{not json");
    }

    #[test]
    fn order_ids_are_lowercase_hyphenated_v4_uuids() {
        assert!(is_order_id("6f1d2c3b-4a59-4e68-b7a6-958473625140"));
        for not in [
            "6F1D2C3B-4A59-4E68-B7A6-958473625140",
            "6f1d2c3b4a594e68b7a6958473625140",
            "6f1d2c3b-4a59-1e68-b7a6-958473625140",
            "not-a-uuid",
            "",
        ] {
            assert!(!is_order_id(not), "{not}");
        }
    }

    #[test]
    fn an_answer_that_breaks_a_step_is_reported() {
        let step = cases()
            .into_iter()
            .find(|c| c.name == "GET /order is 405, allow POST")
            .unwrap()
            .step
            .remove(0);
        let answer = |status, allow: &str, body: &str| Answer {
            status,
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("allow".into(), allow.into()),
            ],
            body: body.as_bytes().to_vec(),
        };
        let good = r#"{"error": "this resource only answers POST"}"#;
        let mut run = Run::new("k");
        assert_eq!(run.check(&step, &answer(405, "POST", good)), Ok(()));
        assert!(run.check(&step, &answer(400, "POST", good)).is_err());
        assert!(run.check(&step, &answer(405, "GET", good)).is_err());
        assert!(run
            .check(&step, &answer(405, "POST", r#"{"error": "no"}"#))
            .is_err());
        assert!(run.check(&step, &answer(405, "POST", "not json")).is_err());
    }

    fn step(eventually: bool) -> Step {
        let text = format!(
            "request = {{ method = \"GET\", path = \"/x\" }}\n\
             expect = {{ status = 204, empty_body = true }}\n\
             eventually = {eventually}"
        );
        toml::from_str(&text).unwrap()
    }

    /// Answers with each status of `statuses` in turn (the last one for ever), counting the asks.
    fn app(statuses: &[u16]) -> impl FnMut(&Sent) -> Result<Answer, Broken> + '_ {
        let mut asked = 0;
        move |_| {
            let status = statuses[asked.min(statuses.len() - 1)];
            asked += 1;
            Ok(Answer {
                status,
                headers: Vec::new(),
                body: Vec::new(),
            })
        }
    }

    #[test]
    fn an_eventually_step_is_asked_again_until_it_holds_within_its_patience() {
        let patience = Duration::from_secs(10);
        let held = Run::new("k").step_blocking(
            &step(true),
            patience,
            app(&[404, 404, 204]),
            Duration::ZERO,
        );
        assert_eq!(held.map(|a| a.status), Ok(204));
    }

    #[test]
    fn a_step_that_does_not_hold_in_time_or_at_once_is_broken() {
        let never = [404];
        let late = Run::new("k").step_blocking(
            &step(true),
            Duration::from_millis(30),
            app(&never),
            Duration::from_millis(5),
        );
        assert!(late.unwrap_err().0.contains("want status 204"));
        for (eventually, patience) in [(false, Duration::from_secs(10)), (true, Duration::ZERO)] {
            let mut asks = 0;
            let mut counted = app(&[404, 204]);
            let once = Run::new("k").step_blocking(
                &step(eventually),
                patience,
                |sent| {
                    asks += 1;
                    counted(sent)
                },
                Duration::ZERO,
            );
            assert!(
                once.is_err(),
                "eventually {eventually}, patience {patience:?}"
            );
            assert_eq!(asks, 1, "eventually {eventually}, patience {patience:?}");
        }
    }

    #[test]
    fn a_send_error_ends_the_step() {
        #[derive(Debug, PartialEq)]
        enum Failed {
            Send,
            Broken,
        }
        impl From<Broken> for Failed {
            fn from(_: Broken) -> Failed {
                Failed::Broken
            }
        }
        let failed = Run::new("k").step_blocking(
            &step(true),
            Duration::from_secs(10),
            |_| Err(Failed::Send),
            Duration::ZERO,
        );
        assert_eq!(failed.map(|a| a.status), Err(Failed::Send));
    }
}
