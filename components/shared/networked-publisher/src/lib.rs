//! What the networked publishers (events-mqtt, events-redis, events-http) share. Their broker,
//! destination and credentials are Spin variables; what they send is the one wire message, signed
//! with `message_key`; and whatever goes wrong is `unavailable`: the receiver keeps the order
//! `accepted` and the sweeper announces it again, so a failure is never the client's fault.
//!
//! No message made here carries a variable's value: a password or the message key must not reach
//! a response or a log line through an error.

use std::cell::RefCell;

use order_domain::{Error, Order};
use order_messages::{MessageKey, PlacedOrder};

/// "Order placed" for `order`, signed with `key` (the `message_key` variable). An empty key is
/// `unavailable`: the order stays accepted and is never announced unsigned.
pub fn signed_message(order: &Order, key: &str) -> Result<Vec<u8>, Error> {
    let key = MessageKey::new(key)
        .map_err(|e| Error::Unavailable(format!("Spin variable message_key: {e}")))?;
    Ok(order_messages::encode(
        &PlacedOrder {
            id: order.id.clone(),
            placed_at: order.placed_at,
        },
        &key,
    ))
}

/// [`signed_message`] with the component's `message_key` variable.
#[cfg(target_arch = "wasm32")]
pub fn message(order: &Order) -> Result<Vec<u8>, Error> {
    signed_message(order, &required("message_key")?)
}

/// Maps a transport's error to `unavailable`, saying which step failed (`"Redis publish"`).
pub fn unavailable<E: std::fmt::Display>(step: &'static str) -> impl Fn(E) -> Error {
    move |e| Error::Unavailable(format!("{step} failed: {e}"))
}

/// A Spin variable the component cannot work without (a broker address, a topic).
#[cfg(target_arch = "wasm32")]
pub fn required(name: &str) -> Result<String, Error> {
    spin_sdk::variables::get(name).map_err(unavailable_variable(name))
}

/// A Spin variable that may be left out of the component's `variables` table (credentials, for a
/// broker that needs none): empty then.
#[cfg(target_arch = "wasm32")]
pub fn optional(name: &str) -> String {
    spin_sdk::variables::get(name).unwrap_or_default()
}

/// The error for a variable that cannot be read: its name and Spin's reason, never a value.
pub fn unavailable_variable<E: std::fmt::Display>(name: &str) -> impl Fn(E) -> Error + '_ {
    move |e| Error::Unavailable(format!("Spin variable {name}: {e}"))
}

/// One broker connection kept for the life of the component instance. Spin makes an instance
/// per request, and a sweep announces hundreds of orders in one: a connection (TCP and the
/// broker's handshake) per publish would cost most of the sweep's time.
///
/// A connection that failed is dropped. A failure on a connection that was kept from an earlier
/// publish (the broker may have closed it meanwhile) is tried once more on a new one; a new
/// connection that fails is not tried again. A resend can only duplicate a message, which
/// fulfilment treats as a no-op.
pub struct ConnectionCache<C> {
    kept: RefCell<Option<(String, C)>>,
}

impl<C> Default for ConnectionCache<C> {
    fn default() -> Self {
        ConnectionCache {
            kept: RefCell::new(None),
        }
    }
}

impl<C> ConnectionCache<C> {
    /// Runs `send` on the kept connection for `target` (whatever names the broker and the
    /// login), opening one with `open` when there is none or it was for another target.
    pub fn send<E>(
        &self,
        target: &str,
        open: impl Fn() -> Result<C, E>,
        send: impl Fn(&C) -> Result<(), E>,
    ) -> Result<(), E> {
        let kept = self.kept.borrow_mut().take();
        if let Some((kept_for, connection)) = kept {
            if kept_for == target && send(&connection).is_ok() {
                *self.kept.borrow_mut() = Some((kept_for, connection));
                return Ok(());
            }
        }
        let connection = open()?;
        send(&connection)?;
        *self.kept.borrow_mut() = Some((target.to_string(), connection));
        Ok(())
    }
}

/// [`ConnectionCache::send`] on a component's `thread_local!` cache; a failure is `unavailable`,
/// saying which `step` failed (`"Redis publish"`).
pub fn send_kept<C, E: std::fmt::Display>(
    cache: &'static std::thread::LocalKey<ConnectionCache<C>>,
    step: &'static str,
    target: &str,
    open: impl Fn() -> Result<C, E>,
    send: impl Fn(&C) -> Result<(), E>,
) -> Result<(), Error> {
    cache
        .with(|kept| kept.send(target, open, send))
        .map_err(unavailable(step))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn order(details: String) -> Order {
        Order {
            id: "0b0c7a34-7d5e-4f6a-9a43-5d1f0e2c9b11".into(),
            details,
            placed_at: 7,
            idempotency_key: Some("k".into()),
        }
    }

    #[test]
    fn the_message_is_the_signed_wire_format_without_the_details() {
        let order = order("tea".into());
        let payload = signed_message(&order, "secret").unwrap();
        let key = order_messages::MessageKey::new("secret").unwrap();
        let sent = order_messages::verify(&payload, &key).unwrap();
        assert_eq!((sent.id.as_str(), sent.placed_at), (order.id.as_str(), 7));
        assert!(!String::from_utf8(payload).unwrap().contains("tea"));
    }

    /// The largest valid details (16 KiB) and the most escaped ones (control characters, six
    /// bytes each in JSON) make the same small message.
    #[test]
    fn the_message_is_bounded_whatever_the_details() {
        for details in [
            "x".repeat(16 * 1024),
            "\u{1}".repeat(16 * 1024),
            "\"".repeat(16 * 1024),
            String::new(),
        ] {
            let len = signed_message(&order(details), "secret").unwrap().len();
            assert!(len <= order_messages::MAX_MESSAGE_BYTES, "{len} bytes");
        }
    }

    #[test]
    fn without_a_key_nothing_is_published() {
        let err = signed_message(&order("tea".into()), "").unwrap_err();
        assert!(
            matches!(&err, Error::Unavailable(m) if m.contains("message_key")),
            "{err:?}"
        );
    }

    #[test]
    fn failures_are_unavailable_and_name_the_step() {
        assert_eq!(
            unavailable("Redis publish")("connection refused"),
            Error::Unavailable("Redis publish failed: connection refused".into())
        );
        assert_eq!(
            unavailable_variable("orders_topic")("undefined"),
            Error::Unavailable("Spin variable orders_topic: undefined".into())
        );
    }

    /// A pretend broker: counts connections; a connection whose number is in `broken` fails
    /// every send, and while `down` nothing opens.
    #[derive(Default)]
    struct Broker {
        opened: Cell<u32>,
        sent: Cell<u32>,
        broken: RefCell<Vec<u32>>,
        down: Cell<bool>,
    }

    impl Broker {
        fn publish(&self, cache: &ConnectionCache<u32>, target: &str) -> Result<(), String> {
            cache.send(
                target,
                || {
                    if self.down.get() {
                        return Err("refused".to_string());
                    }
                    self.opened.set(self.opened.get() + 1);
                    Ok(self.opened.get())
                },
                |connection| {
                    if self.down.get() || self.broken.borrow().contains(connection) {
                        return Err(format!("connection {connection} failed"));
                    }
                    self.sent.set(self.sent.get() + 1);
                    Ok(())
                },
            )
        }
    }

    /// A step of a connection-cache case.
    #[derive(Clone, Copy)]
    enum Step {
        /// Publishes to a target this many times; each succeeds.
        Publish(&'static str, u32),
        /// Publishes to a target once; it fails with this error.
        Fails(&'static str, &'static str),
        /// Every send on the connection of this number fails from now on.
        Break(u32),
        /// The broker goes down (`true`) or comes back.
        Down(bool),
    }

    /// Each case: what happens, in order, then how many connections were opened and how many
    /// messages sent in all.
    #[test]
    fn a_connection_is_kept_replaced_and_reopened_as_publishes_need() {
        use Step::*;
        let cases: [(&str, &[Step], (u32, u32)); 5] = [
            (
                "one connection serves every publish of an instance",
                &[Publish("mqtt://b", 500)],
                (1, 500),
            ),
            (
                "a kept connection that failed is replaced at once",
                &[Publish("mqtt://b", 1), Break(1), Publish("mqtt://b", 2)],
                (2, 3),
            ),
            (
                "a new connection that fails is not tried twice; the next publish reconnects",
                &[
                    Break(1),
                    Fails("mqtt://b", "connection 1 failed"),
                    Publish("mqtt://b", 1),
                ],
                (2, 1),
            ),
            (
                "while the broker is down every publish fails, and then it recovers",
                &[
                    Publish("mqtt://b", 1),
                    Down(true),
                    Fails("mqtt://b", "refused"),
                    Fails("mqtt://b", "refused"),
                    Fails("mqtt://b", "refused"),
                    Down(false),
                    Publish("mqtt://b", 2),
                ],
                (2, 3),
            ),
            (
                "another target gets its own connection",
                &[Publish("mqtt://a", 1), Publish("mqtt://b", 1)],
                (2, 2),
            ),
        ];
        for (case, steps, counts) in cases {
            let (broker, cache) = (Broker::default(), ConnectionCache::default());
            for (n, step) in steps.iter().enumerate() {
                match *step {
                    Publish(target, times) => {
                        for _ in 0..times {
                            broker.publish(&cache, target).unwrap();
                        }
                    }
                    Fails(target, error) => {
                        let got = broker.publish(&cache, target).unwrap_err();
                        assert_eq!(got, error, "{case}: step {n}");
                    }
                    Break(connection) => broker.broken.borrow_mut().push(connection),
                    Down(down) => broker.down.set(down),
                }
            }
            assert_eq!((broker.opened.get(), broker.sent.get()), counts, "{case}");
        }
    }
}
