//! Each signed message on the orders channel becomes one `fulfilment.fulfil` call.

mod api {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "nano:orders/redis-listener",
    });
}

use api::nano::orders::fulfilment;
use bytes::Bytes;
use order_messages::MessageKey;
use spin_sdk::redis_component;

#[redis_component]
fn on_message(message: Bytes) -> anyhow::Result<()> {
    // A message that cannot be processed (unsigned, badly signed, malformed) is logged and
    // dropped: failing would only make the trigger log it again, and Redis pub/sub never
    // redelivers. Without the key nothing is fulfilled; the order app's sweep announces the
    // order again once the key is set.
    let key = match MessageKey::from_variable(spin_sdk::variables::get("message_key")) {
        Ok(key) => key,
        Err(e) => {
            eprintln!("dropped a message: {e}");
            return Ok(());
        }
    };
    match order_messages::verify(&message, &key) {
        Ok(order) => match fulfilment::fulfil(&order.id) {
            Ok(_) => {}
            Err(e) => eprintln!("order {} not fulfilled: {e:?}", order.id),
        },
        Err(refused) => eprintln!("dropped a message: {refused}"),
    }
    Ok(())
}
