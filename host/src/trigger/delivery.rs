//! The one delivery path of the message triggers (Redis and MQTT).
//!
//! A trigger's loop owns the broker side (subscribe, receive, what a lost connection means) and
//! hands every message to a [`Sink`]. The app's sink is [`Dispatch`]: it routes a message to the
//! handlers subscribed to its channel or topic and calls each in a task of its own, where a
//! failure is logged and counted and never stops the loop. A [`Handler`] is the component side:
//! [`Guest`] makes a fresh instance and calls its handler export under the time limit; each
//! trigger only says which export that is and how it is called ([`Export`]).
//! The seam is there for the tests: a loop runs against a real broker with a recording sink, and
//! the dispatch runs with fake handlers, without an app or a broker.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Result;
use tokio::task::JoinHandle;
use wasmtime::component::{Instance, InstancePre};
use wasmtime::Store;

use crate::app::App;
use crate::outbound_http::ServiceChaining;
use crate::state::{ComponentCtx, HostState};

/// One message as a broker delivered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    /// The Redis channel or the MQTT topic it was published on.
    pub source: String,
    pub payload: Arc<[u8]>,
}

impl Message {
    pub(crate) fn new(source: impl Into<String>, payload: &[u8]) -> Message {
        Message {
            source: source.into(),
            payload: Arc::from(payload),
        }
    }
}

/// Where a trigger's loop hands each message, in the order the broker sent them. It must not
/// wait: the loop reads the next message only once `deliver` has returned.
pub(crate) trait Sink: Send + Sync + 'static {
    fn deliver(&self, message: Message);
}

/// The component side of a subscription: one call of its handler for one message.
pub(crate) trait Handler: Send + Sync + 'static {
    /// The component's id, for the logs.
    fn component(&self) -> &str;
    fn call(&self, message: &Message) -> impl Future<Output = Result<()>> + Send;
}

/// What a subscription listens to, as its broker matches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// A Redis channel: that name exactly.
    Channel(String),
    /// An MQTT topic filter, with `+` and `#` wildcards.
    Topic(String),
}

impl Route {
    fn takes(&self, source: &str) -> bool {
        match self {
            Route::Channel(channel) => channel == source,
            Route::Topic(filter) => rumqttc::matches(source, filter),
        }
    }
}

/// The app's [`Sink`]: every message to every handler whose route takes it, each call in a task
/// of its own (nanohost does not wait for one message's handlers before the next, where Spin's
/// triggers take one message at a time: host/README.md, differences).
pub(crate) struct Dispatch<H> {
    /// "Redis" or "MQTT", for the logs.
    trigger: &'static str,
    routes: Vec<(Route, Arc<H>)>,
    failures: Arc<AtomicU64>,
}

impl<H: Handler> Dispatch<H> {
    pub(crate) fn new(trigger: &'static str, routes: Vec<(Route, Arc<H>)>) -> Dispatch<H> {
        Dispatch {
            trigger,
            routes,
            failures: Arc::default(),
        }
    }

    /// Handler calls that failed so far (a trap, the time limit, or an error the handler
    /// returned).
    #[cfg(test)]
    pub(crate) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

impl<H: Handler> Sink for Dispatch<H> {
    fn deliver(&self, message: Message) {
        tracing::trace!(target: "nanohost::hop", key = &message.payload[..], "received");
        let message = Arc::new(message);
        for (route, handler) in &self.routes {
            if !route.takes(&message.source) {
                continue;
            }
            let (handler, message) = (handler.clone(), message.clone());
            let (trigger, failures) = (self.trigger, self.failures.clone());
            tokio::spawn(async move {
                if let Err(e) = handler.call(&message).await {
                    // As in Spin: the message is not retried, and the trigger goes on.
                    let failed = failures.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::error!(
                        component = handler.component(),
                        source = %message.source,
                        failed,
                        "{trigger} message handler failed: {e:#}"
                    );
                }
            });
        }
    }
}

/// Runs a trigger's loop: `Ok` is a shutdown, an error ends the app with its reason (a lost
/// broker, as on Spin), for the process manager to restart it.
pub(crate) fn spawn_loop(
    app: Arc<App>,
    listen: impl Future<Output = Result<()>> + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = listen.await {
            app.fail(format!("{e:#}"));
        }
    })
}

/// The store of one instance.
pub(crate) type HostStore = Store<HostState>;

/// A handler call's outcome: `Err` is a trap, `Ok(Err)` the error the handler returned.
pub(crate) type Handled = wasmtime::Result<Result<(), String>>;

/// A fresh instance of a component, in its store.
pub(crate) struct Fresh<'a> {
    pub store: &'a mut HostStore,
    pub instance: Instance,
}

/// What a message trigger calls in a component: its handler export, which the bindings' indices
/// (`RedisTriggerIndices`, `MqttTriggerIndices`) find in each fresh instance.
pub(crate) trait Export: Send + Sync + 'static {
    /// Calls `handle-message` with `message`.
    fn handle(&self, fresh: Fresh<'_>, message: &Message) -> impl Future<Output = Handled> + Send;
}

/// A component prepared for a trigger: the [`Handler`] that runs a fresh instance per message.
pub(crate) struct Guest<E> {
    app: Arc<App>,
    ctx: Arc<ComponentCtx>,
    chaining: ServiceChaining,
    pre: InstancePre<HostState>,
    export: E,
}

impl<E: Export> Guest<E> {
    /// Pre-instantiates component `id` (see [`App::prepare`]); `export` finds the handler or
    /// refuses a component without it.
    pub(crate) fn prepare(
        app: &Arc<App>,
        id: &str,
        export: impl FnOnce(&InstancePre<HostState>) -> wasmtime::Result<E>,
        expects: &str,
        chaining: &ServiceChaining,
    ) -> Result<Guest<E>> {
        let typed = |pre: InstancePre<HostState>| export(&pre).map(|export| (pre, export));
        let (ctx, (pre, export)) = app.prepare(id, typed, expects)?;
        Ok(Guest {
            app: app.clone(),
            ctx,
            chaining: chaining.clone(),
            pre,
            export,
        })
    }
}

impl<E: Export> Handler for Guest<E> {
    fn component(&self) -> &str {
        &self.ctx.id
    }

    /// One call on a fresh instance, under the app's time limit; the error a handler returns
    /// is a failure like a trap.
    async fn call(&self, message: &Message) -> Result<()> {
        let mut store = self.app.store(&self.ctx, &self.chaining);
        let call = async {
            let instance = self.pre.instantiate_async(&mut store).await?;
            let payload = &message.payload[..];
            let handle = tracing::trace_span!(target: "nanohost::hop", "handle", key = payload);
            let fresh = Fresh {
                store: &mut store,
                instance,
            };
            let r = self.export.handle(fresh, message).await;
            drop(handle);
            r
        };
        super::time_limited(&self.app, call)
            .await?
            .map_err(|e| anyhow::anyhow!("handler returned {e}"))
    }
}

#[cfg(test)]
mod tests {
    //! The dispatch with fake handlers: routing, payloads, failures, and independent calls.

    use std::time::Duration;

    use tokio::sync::mpsc;

    use super::*;

    /// A handler that reports each call and fails on the payload `fail`; `hang` never returns.
    struct Fake {
        name: &'static str,
        calls: mpsc::UnboundedSender<(&'static str, Message)>,
    }

    impl Handler for Fake {
        fn component(&self) -> &str {
            self.name
        }

        async fn call(&self, message: &Message) -> Result<()> {
            self.calls.send((self.name, message.clone())).unwrap();
            match &message.payload[..] {
                b"fail" => anyhow::bail!("the fake refuses it"),
                b"hang" => std::future::pending().await,
                _ => Ok(()),
            }
        }
    }

    type Calls = mpsc::UnboundedReceiver<(&'static str, Message)>;

    fn dispatch(routes: &[(&'static str, Route)]) -> (Dispatch<Fake>, Calls) {
        let (tx, rx) = mpsc::unbounded_channel();
        let routes = routes
            .iter()
            .map(|&(name, ref route)| {
                let fake = Fake {
                    name,
                    calls: tx.clone(),
                };
                (route.clone(), Arc::new(fake))
            })
            .collect();
        (Dispatch::new("test", routes), rx)
    }

    /// The next `n` calls, sorted (their tasks run in any order).
    async fn calls(rx: &mut Calls, n: usize) -> Vec<(&'static str, String, String)> {
        let mut got = Vec::new();
        for _ in 0..n {
            let (name, m) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("a call within 10 s")
                .unwrap();
            let payload = String::from_utf8(m.payload.to_vec()).unwrap();
            got.push((name, m.source, payload));
        }
        got.sort();
        got
    }

    /// Lets every spawned task run, then says whether any call is left over.
    async fn no_more(rx: &mut Calls) -> bool {
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        rx.try_recv().is_err()
    }

    /// `(route, message source, taken)`: a channel is one name, a topic filter is MQTT's.
    const ROUTES: &[(&str, &str, &str, bool)] = &[
        ("channel", "orders.placed", "orders.placed", true),
        ("channel", "orders.placed", "orders.placed.1", false),
        ("channel", "orders.*", "orders.placed", false),
        ("topic", "orders/placed", "orders/placed", true),
        ("topic", "orders/placed", "orders/placed/1", false),
        ("topic", "orders/+", "orders/1", true),
        ("topic", "orders/+", "orders/1/x", false),
        ("topic", "orders/#", "orders/1/x", true),
        ("topic", "#", "a/b", true),
        // Topics starting with `$` are the broker's own: wildcards at the start do not match.
        ("topic", "#", "$SYS/broker/uptime", false),
        ("topic", "+/broker/uptime", "$SYS/broker/uptime", false),
    ];

    #[tokio::test]
    async fn a_message_reaches_the_handlers_whose_route_takes_it() {
        for (kind, filter, source, taken) in ROUTES {
            let route = match *kind {
                "channel" => Route::Channel(filter.to_string()),
                _ => Route::Topic(filter.to_string()),
            };
            let (dispatch, mut rx) = dispatch(&[("c", route)]);
            dispatch.deliver(Message::new(*source, b"hello"));
            if *taken {
                let got = calls(&mut rx, 1).await;
                assert_eq!(got, [("c", source.to_string(), "hello".to_string())]);
            }
            assert!(
                no_more(&mut rx).await,
                "{kind} {filter:?} took {source:?} twice"
            );
        }
    }

    #[tokio::test]
    async fn every_subscriber_of_a_channel_gets_its_own_call() {
        let ch = || Route::Channel("orders.placed".into());
        let routes = [
            ("a", ch()),
            ("b", ch()),
            ("b", ch()),
            ("c", Route::Channel("x".into())),
        ];
        let (dispatch, mut rx) = dispatch(&routes);
        dispatch.deliver(Message::new("orders.placed", b"1"));
        let got = calls(&mut rx, 3).await;
        let names: Vec<_> = got.iter().map(|(name, _, _)| *name).collect();
        assert_eq!(names, ["a", "b", "b"]);
        assert!(no_more(&mut rx).await);
    }

    #[tokio::test]
    async fn a_failing_handler_is_counted_and_the_next_message_delivered() {
        let (dispatch, mut rx) = dispatch(&[("c", Route::Topic("t".into()))]);
        for payload in ["1", "fail", "2", "fail", "3"] {
            dispatch.deliver(Message::new("t", payload.as_bytes()));
        }
        let payloads: Vec<_> = calls(&mut rx, 5).await.into_iter().map(|c| c.2).collect();
        assert_eq!(payloads, ["1", "2", "3", "fail", "fail"]);
        // The count is taken when a call has ended, after it reported itself.
        for _ in 0..100 {
            if dispatch.failures() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(dispatch.failures(), 2);
    }

    #[tokio::test]
    async fn a_handler_that_never_returns_holds_up_no_other_message() {
        let (dispatch, mut rx) = dispatch(&[("c", Route::Channel("ch".into()))]);
        dispatch.deliver(Message::new("ch", b"hang"));
        dispatch.deliver(Message::new("ch", b"next"));
        let got = calls(&mut rx, 2).await;
        assert_eq!(got[0].2, "hang");
        assert_eq!(got[1].2, "next");
        assert_eq!(dispatch.failures(), 0);
    }
}

/// For the triggers' tests: an app's configuration, and a trigger's loop that delivers to a
/// channel, in order.
#[cfg(test)]
pub(crate) mod testing {
    use std::time::Duration;

    use tokio::sync::{mpsc, watch};

    use super::{Message, Result, Sink};
    use crate::expressions::Resolver;
    use crate::manifest::Manifest;
    use crate::spin_toml::SpinToml;

    /// An app's manifest with `application` lines and `triggers`, and its resolver over
    /// `variables` (name, default).
    pub(crate) fn app(
        variables: &[(&str, &str)],
        application: &str,
        triggers: &str,
    ) -> Result<(Manifest, Resolver)> {
        let mut toml = SpinToml::new("a", "/...", "c", "c.wasm");
        for (name, default) in variables {
            toml = toml.variable(name, &format!("{{ default = {default:?} }}"));
        }
        let text = toml.application(application).section(triggers).to_string();
        let manifest = Manifest::parse(&text)?;
        let resolver = Resolver::new(&manifest.variables, |_| None)?;
        Ok((manifest, resolver))
    }

    impl Sink for mpsc::UnboundedSender<Message> {
        fn deliver(&self, message: Message) {
            let _ = self.send(message);
        }
    }

    /// A loop running in a task of its own.
    pub(crate) struct Listening {
        messages: mpsc::UnboundedReceiver<Message>,
        stop: watch::Sender<bool>,
        ended: tokio::task::JoinHandle<Result<()>>,
    }

    impl Listening {
        /// Runs the loop `listen(sink, shutdown)`.
        pub(crate) fn spawn<L>(
            listen: impl FnOnce(mpsc::UnboundedSender<Message>, watch::Receiver<bool>) -> L,
        ) -> Listening
        where
            L: std::future::Future<Output = Result<()>> + Send + 'static,
        {
            let (sink, messages) = mpsc::unbounded_channel();
            let (stop, shutdown) = watch::channel(false);
            let ended = tokio::spawn(listen(sink, shutdown));
            Listening {
                messages,
                stop,
                ended,
            }
        }

        /// The next message delivered: its channel or topic, and its payload.
        pub(crate) async fn next(&mut self) -> (String, Vec<u8>) {
            let m = tokio::time::timeout(Duration::from_secs(30), self.messages.recv())
                .await
                .expect("no message in 30 s")
                .expect("the loop ended");
            (m.source, m.payload.to_vec())
        }

        /// How the loop ended, within 30 s.
        pub(crate) async fn ended(self) -> Result<()> {
            tokio::time::timeout(Duration::from_secs(30), self.ended)
                .await
                .expect("the loop ends within 30 s")
                .unwrap()
        }

        /// Shuts the loop down: a shutdown is no error.
        pub(crate) async fn stop(self) {
            self.stop.send(true).unwrap();
            self.ended().await.expect("a shutdown is no error");
        }
    }
}
