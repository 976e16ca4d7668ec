//! Each message on the orders channel becomes one `fulfilment.fulfil` call.

mod api {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "nano:orders/redis-listener",
    });
}

use api::nano::orders::fulfilment;
use bytes::Bytes;
use spin_sdk::redis_component;

#[redis_component]
fn on_message(message: Bytes) -> anyhow::Result<()> {
    // A message that cannot be processed is logged and dropped: failing would only make the
    // trigger log it again, and Redis pub/sub never redelivers.
    match order_messages::decode(&message) {
        Ok(order) => match fulfilment::fulfil(&order.id) {
            Ok(_) => {}
            Err(e) => eprintln!("order {} not fulfilled: {e:?}", order.id),
        },
        Err(refused) => eprintln!("dropped a message: {refused}"),
    }
    Ok(())
}
